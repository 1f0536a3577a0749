-- The sample database behind config/quickstart.toml: a small blog, shaped like a D1 database that
-- wrangler migrated (it has a d1_migrations table). config/sample.sqlite is built from this file with
--   sqlite3 config/sample.sqlite < config/sample.sql
CREATE TABLE IF NOT EXISTS "d1_migrations"(
		id         INTEGER PRIMARY KEY AUTOINCREMENT,
		name       TEXT UNIQUE,
		applied_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP NOT NULL
);
CREATE TABLE authors (
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL,
  email TEXT UNIQUE
);
CREATE TABLE posts (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  author_id INTEGER NOT NULL REFERENCES authors(id),
  title TEXT NOT NULL,
  body TEXT,
  rating REAL,
  cover BLOB,
  published_at TEXT
);
CREATE TABLE comments (
  id INTEGER PRIMARY KEY,
  post_id INTEGER NOT NULL REFERENCES posts(id) ON DELETE CASCADE,
  body TEXT NOT NULL
);
CREATE INDEX comments_by_post ON comments(post_id);
CREATE VIEW post_summaries AS
  SELECT p.id, p.title, a.name AS author, (SELECT count(*) FROM comments c WHERE c.post_id = p.id) AS comments
  FROM posts p JOIN authors a ON a.id = p.author_id;
INSERT INTO d1_migrations (name, applied_at) VALUES ('0001_init.sql', '2026-11-01 10:00:00');
INSERT INTO d1_migrations (name, applied_at) VALUES ('0002_comments.sql', '2026-11-15 10:00:00');
INSERT INTO authors VALUES (1, 'Ada', 'ada@example.com'), (2, 'Grace O''Hara', NULL);
INSERT INTO posts (author_id, title, body, rating, cover, published_at) VALUES
  (1, 'Hello, D1', 'First line
second line', 4.5, X'89504e470d0a1a0a', '2026-11-02'),
  (2, 'Quotes "and" ''apostrophes''', 'Windows line' || char(13) || char(10) || 'ending', 3.0, NULL, NULL),
  (1, 'Unicode ✓ 日本語 🚀', 'semi; colons; inside', -0.25, X'', '2026-11-20');
INSERT INTO comments VALUES (1, 1, 'Nice!'), (2, 1, 'Thanks; really.'), (3, 3, 'こんにちは');

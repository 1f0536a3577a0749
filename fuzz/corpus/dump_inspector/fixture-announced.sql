�-- d1vault's shared test fixture: every kind of schema object and value a D1 export must carry.
-- It loads with sqlite3, rusqlite's execute_batch, D1's import and `wrangler d1 execute --file`
-- (no BEGIN/COMMIT, no _cf_ names, every statement far below 100 KB).
-- `comments` references `posts`, which is created after it: D1's dump order then puts comment rows
-- before the `posts` table exists (workers-sdk#5683), which an FK-enforcing import refuses.
PRAGMA defer_foreign_keys=TRUE;

CREATE TABLE comments (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  post_id INTEGER NOT NULL REFERENCES posts(id) ON DELETE CASCADE,
  body TEXT NOT NULL
);

CREATE TABLE "authors" (
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL,
  email TEXT UNIQUE
);

CREATE TABLE posts (
  id INTEGER PRIMARY KEY,
  author_id INTEGER REFERENCES "authors"(id),
  title TEXT NOT NULL,
  body TEXT,
  score REAL,
  cover BLOB
);

CREATE TABLE measurements (
  id INTEGER PRIMARY KEY,
  label TEXT,
  value REAL,
  raw BLOB
);

CREATE TABLE empty_table (
  id INTEGER PRIMARY KEY,
  note TEXT
);

CREATE TABLE "order items" (
  "select" TEXT,
  "quote""d" INTEGER
);

CREATE TABLE IF NOT EXISTS "d1_migrations"(
		id         INTEGER PRIMARY KEY AUTOINCREMENT,
		name       TEXT UNIQUE,
		applied_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP NOT NULL
);

CREATE INDEX idx_posts_author ON posts(author_id);

CREATE TRIGGER posts_score_floor AFTER UPDATE OF score ON posts
BEGIN
  UPDATE posts SET score = CASE WHEN new.score < 0 THEN 0 ELSE new.score END
    WHERE id = new.id AND new.score < 0;
  DELETE FROM comments WHERE post_id = new.id AND body = ';';
END;

CREATE VIEW post_summary AS
  SELECT p.id, p.title, a.name AS author, count(c.id) AS comment_count
  FROM posts p LEFT JOIN "authors" a ON a.id = p.author_id LEFT JOIN comments c ON c.post_id = p.id
  GROUP BY p.id;

INSERT INTO "authors" (id, name, email) VALUES
  (1, 'Ada O''Brien', 'ada@example.com'),
  (2, 'Bo "the Quill" Chen', NULL),
  (3, '李小龍 🐉', 'li@example.cn');

INSERT INTO posts (id, author_id, title, body, score, cover) VALUES
  (1, 1, 'Hello; world', 'first line
second line', 0.1, X'00ff'),
  (2, 2, 'Carriage', 'windows' || char(13) || char(10) || 'line endings' || char(13), -2.5, X''),
  (3, 3, 'Unicode 😀 日本語', '-- not a comment /* nor this */ ; still text', 1e300, NULL),
  (4, NULL, 'Quotes '' and "double" and `back`', '', 3.0, X'000102fdfeff'),
  (5, 1, 'Backslash n: \n literal', 'tab	and \r and \n literal
plus newline', NULL, zeroblob(0));

INSERT INTO comments (post_id, body) VALUES
  (1, 'great; post'),
  (1, 'it''s fine'),
  (3, ';'),
  (4, 'emoji 🎉 ok');
DELETE FROM comments WHERE id = 4;
INSERT INTO comments (post_id, body) VALUES (2, 'after a delete, AUTOINCREMENT skips 4');

INSERT INTO measurements (id, label, value, raw) VALUES
  (1, 'tenth', 0.1, X'00'),
  (2, 'negative', -2.5, X'ff'),
  (3, 'huge', 1e300, X'00ff00ff'),
  (4, 'integral real', 3.0, NULL),
  (5, 'tiny', 1e-7, X''),
  (6, 'big', 1e21, X'7f'),
  (7, NULL, NULL, NULL),
  (8, 'max int in real column', 123456789.125, X'0a0d27'),
  (9, 'third', 0.30000000000000004, X'3b');

INSERT INTO "order items" ("select", "quote""d") VALUES ('from', 9007199254740993), (NULL, -9223372036854775808);

INSERT INTO "d1_migrations" (name, applied_at) VALUES
  ('0001_init.sql', '2026-11-01 10:00:00'),
  ('0002_add_comments.sql', '2026-11-02 11:30:00');

-- The benchmark database of scripts/bench-backup and scripts/bench-restore: one table of :rows rows with
-- mixed INTEGER, REAL (some NULL), short and long TEXT (random hex, quotes, a newline every 1,000 rows,
-- non-ASCII text), about 330 bytes per row in D1's export format. `:rows` is replaced by the scripts.
.output /dev/null
PRAGMA journal_mode=OFF;
.output
PRAGMA synchronous=OFF;
CREATE TABLE events (
  id INTEGER PRIMARY KEY,
  user_id INTEGER NOT NULL,
  kind TEXT NOT NULL,
  amount REAL,
  title TEXT,
  body TEXT,
  score INTEGER,
  created_at TEXT NOT NULL
);
BEGIN;
WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < :rows)
INSERT INTO events
SELECT i,
       (i * 7919) % 100003,
       CASE i % 5 WHEN 0 THEN 'purchase' WHEN 1 THEN 'refund' WHEN 2 THEN 'login' WHEN 3 THEN 'logout' ELSE 'view' END,
       CASE WHEN i % 7 = 0 THEN NULL ELSE ((i * 37) % 100000) / 100.0 END,
       CASE WHEN i % 100 = 0 THEN 'O''Brien''s order ' || i ELSE 'Order number ' || i || ' for customer ' || ((i * 7919) % 100003) END,
       'session ' || lower(hex(randomblob(16))) || ' visited /products/' || (i % 5000) || '?ref=campaign-' || (i % 97)
         || ' using Mozilla/5.0 (X11; Linux x86_64) with note ' || lower(hex(randomblob(8)))
         || CASE WHEN i % 1000 = 0 THEN char(10) || 'second line, unicode é 日本' ELSE '' END,
       abs(random()) % 1000000,
       strftime('%Y-%m-%dT%H:%M:%fZ', 1700000000 + i * 3, 'unixepoch')
FROM c;
COMMIT;

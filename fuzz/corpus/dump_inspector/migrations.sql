ÅPRAGMA defer_foreign_keys=TRUE;
CREATE TABLE d1_migrations(id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT UNIQUE, applied_at TIMESTAMP);
INSERT INTO "d1_migrations" VALUES(1,'0001_init.sql','2024-01-01 00:00:00');

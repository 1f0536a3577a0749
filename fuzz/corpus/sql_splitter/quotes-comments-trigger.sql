INSERT INTO "t" VALUES('it''s; fine', X'00ff', -1.5e3);
-- comment; here
/* block; */ CREATE TABLE x(a TEXT DEFAULT ';');
CREATE TRIGGER tr AFTER INSERT ON x BEGIN UPDATE x SET a='b'; END;

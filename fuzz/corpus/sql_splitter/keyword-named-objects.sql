
CREATE TABLE "trigger" (temp INT, explain TEXT, [create] TEXT, `end` INT);
EXPLAIN CREATE TRIGGER x AFTER INSERT ON "trigger" BEGIN SELECT 1; END;
CREATE TEMPORARY TRIGGER "end" AFTER INSERT ON "trigger" WHEN NEW.temp > 0 BEGIN UPDATE "trigger" SET explain = 'end', end = 1; INSERT INTO "trigger" (temp) VALUES (CASE NEW.end WHEN 1 THEN 2 END); END
;
BEGIN; END; SELECT temp, end FROM "trigger";

PRAGMA defer_foreign_keys=TRUE;
CREATE TABLE ev (id INTEGER PRIMARY KEY, begin INT, start INT, end INT, "case" TEXT DEFAULT 'END;', CHECK (end >= start));
INSERT INTO "ev" ("id","begin","start","end","case") VALUES(1,1,2,3,'a;END;');
CREATE TRIGGER ev_end AFTER INSERT ON ev BEGIN UPDATE ev SET end = NEW.start + 1 WHERE id = NEW.id; END;
CREATE TRIGGER ev_begin AFTER UPDATE ON ev WHEN NEW.begin > 0 BEGIN SELECT CASE WHEN NEW.end THEN 1 END; END /* ; */ ;
CREATE TEMP TRIGGER t3 BEFORE DELETE ON ev BEGIN DELETE FROM ev WHERE "end" = OLD.begin; -- END;
END;
CREATE VIEW v AS SELECT begin, end, CASE WHEN end > begin THEN 'a;b' END AS e FROM ev;
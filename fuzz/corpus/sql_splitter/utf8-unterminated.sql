INSERT INTO t VALUES('été 😀');
SELECT 'unterminated
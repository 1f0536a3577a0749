//! Recognises what a statement does from its leading tokens, without a full SQL parser.

use super::lexer::{Lexer, Token};

/// What kind of statement a piece of SQL is, with the object it names where that matters.
///
/// Names are unquoted and without a schema prefix (`main."t"` gives `t`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatementKind {
    /// `CREATE [TEMP] TABLE [IF NOT EXISTS] name ...`.
    CreateTable {
        /// The table created.
        name: String,
    },
    /// `CREATE [UNIQUE] INDEX [IF NOT EXISTS] name ...`.
    CreateIndex {
        /// The index created.
        name: String,
    },
    /// `CREATE [TEMP] TRIGGER [IF NOT EXISTS] name ...`.
    CreateTrigger {
        /// The trigger created.
        name: String,
    },
    /// `CREATE [TEMP] VIEW [IF NOT EXISTS] name ...`.
    CreateView {
        /// The view created.
        name: String,
    },
    /// `CREATE VIRTUAL TABLE [IF NOT EXISTS] name USING ...`.
    CreateVirtualTable {
        /// The virtual table created.
        name: String,
    },
    /// `INSERT [OR ...] INTO table ...` or `REPLACE INTO table ...`.
    Insert {
        /// The table the rows go into.
        table: String,
    },
    /// Any `PRAGMA`.
    Pragma,
    /// `DELETE FROM table ...`.
    DeleteFrom {
        /// The table rows are deleted from.
        table: String,
    },
    /// `BEGIN`, `COMMIT`, `END`, `ROLLBACK`, `SAVEPOINT` or `RELEASE`.
    Transaction,
    /// Anything else (queries, updates, drops, alters, ...).
    Other,
}

/// Reads an optionally schema-qualified object name: `name` or `schema.name`.
fn object_name(lexer: &mut Lexer<'_>) -> Option<String> {
    let first = lexer.next_opt()?.name()?.to_owned();
    let mut peek = lexer.clone();
    if peek.next_opt() == Some(Token::Punct('.')) {
        lexer.next_opt();
        return lexer.next_opt()?.name().map(str::to_owned);
    }
    Some(first)
}

/// Skips `IF NOT EXISTS` when present.
fn skip_if_not_exists(lexer: &mut Lexer<'_>) {
    let mut peek = lexer.clone();
    if peek.next_opt().is_some_and(|t| t.is_kw("IF"))
        && peek.next_opt().is_some_and(|t| t.is_kw("NOT"))
        && peek.next_opt().is_some_and(|t| t.is_kw("EXISTS"))
    {
        *lexer = peek;
    }
}

/// Classifies one statement by its leading keywords, so the backup's checks, the restore and the emulator
/// sort statements alike without a full SQL parser.
pub fn classify(stmt: &str) -> StatementKind {
    classify_inner(stmt).unwrap_or(StatementKind::Other)
}

fn classify_inner(stmt: &str) -> Option<StatementKind> {
    let mut lexer = Lexer::new(stmt);
    let first = lexer.next_opt()?;
    let Token::Word(first) = first else {
        return Some(StatementKind::Other);
    };
    let kind = match first.to_ascii_uppercase().as_str() {
        "BEGIN" | "COMMIT" | "END" | "ROLLBACK" | "SAVEPOINT" | "RELEASE" => {
            StatementKind::Transaction
        }
        "PRAGMA" => StatementKind::Pragma,
        "DELETE" => {
            if !lexer.next_opt()?.is_kw("FROM") {
                return Some(StatementKind::Other);
            }
            StatementKind::DeleteFrom {
                table: object_name(&mut lexer)?,
            }
        }
        "INSERT" | "REPLACE" => {
            let mut t = lexer.next_opt()?;
            if t.is_kw("OR") {
                lexer.next_opt()?;
                t = lexer.next_opt()?;
            }
            if !t.is_kw("INTO") {
                return Some(StatementKind::Other);
            }
            StatementKind::Insert {
                table: object_name(&mut lexer)?,
            }
        }
        "CREATE" => {
            let mut t = lexer.next_opt()?;
            if t.is_kw("TEMP") || t.is_kw("TEMPORARY") || t.is_kw("UNIQUE") {
                t = lexer.next_opt()?;
            }
            let make: fn(String) -> StatementKind = if t.is_kw("TABLE") {
                |name| StatementKind::CreateTable { name }
            } else if t.is_kw("INDEX") {
                |name| StatementKind::CreateIndex { name }
            } else if t.is_kw("TRIGGER") {
                |name| StatementKind::CreateTrigger { name }
            } else if t.is_kw("VIEW") {
                |name| StatementKind::CreateView { name }
            } else if t.is_kw("VIRTUAL") {
                if !lexer.next_opt()?.is_kw("TABLE") {
                    return Some(StatementKind::Other);
                }
                |name| StatementKind::CreateVirtualTable { name }
            } else {
                return Some(StatementKind::Other);
            };
            skip_if_not_exists(&mut lexer);
            make(object_name(&mut lexer)?)
        }
        _ => StatementKind::Other,
    };
    Some(kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_creates_with_quoting_schema_and_if_not_exists() {
        // Proves names come out unquoted and without schema for every CREATE form.
        let cases = [
            (
                "CREATE TABLE t (a)",
                StatementKind::CreateTable { name: "t".into() },
            ),
            (
                "create table if not exists \"we\"\"ird\" (a)",
                StatementKind::CreateTable {
                    name: "we\"ird".into(),
                },
            ),
            (
                "CREATE TEMP TABLE main.[x y](a)",
                StatementKind::CreateTable { name: "x y".into() },
            ),
            (
                "/* c */ CREATE UNIQUE INDEX IF NOT EXISTS `ix` ON t(a)",
                StatementKind::CreateIndex { name: "ix".into() },
            ),
            (
                "CREATE TRIGGER main.\"trg\" AFTER INSERT ON t BEGIN SELECT 1; END",
                StatementKind::CreateTrigger { name: "trg".into() },
            ),
            (
                "CREATE VIEW v AS SELECT 1",
                StatementKind::CreateView { name: "v".into() },
            ),
            (
                "CREATE VIRTUAL TABLE IF NOT EXISTS docs USING fts5(body)",
                StatementKind::CreateVirtualTable {
                    name: "docs".into(),
                },
            ),
        ];
        for (sql, kind) in cases {
            assert_eq!(classify(sql), kind, "{sql}");
        }
    }

    #[test]
    fn classifies_inserts_deletes_pragmas_and_transactions() {
        // Proves the non-CREATE kinds, including INSERT OR REPLACE and quoted table names.
        assert_eq!(
            classify("INSERT INTO \"t\" VALUES(1);"),
            StatementKind::Insert { table: "t".into() }
        );
        assert_eq!(
            classify("insert or replace into main.t(a) values (1)"),
            StatementKind::Insert { table: "t".into() }
        );
        assert_eq!(
            classify("REPLACE INTO t VALUES(1)"),
            StatementKind::Insert { table: "t".into() }
        );
        assert_eq!(
            classify("DELETE FROM sqlite_sequence;"),
            StatementKind::DeleteFrom {
                table: "sqlite_sequence".into()
            }
        );
        assert_eq!(
            classify("PRAGMA defer_foreign_keys=TRUE;"),
            StatementKind::Pragma
        );
        for sql in [
            "BEGIN TRANSACTION;",
            "COMMIT;",
            "END",
            "ROLLBACK",
            "SAVEPOINT a",
            "RELEASE a",
        ] {
            assert_eq!(classify(sql), StatementKind::Transaction, "{sql}");
        }
        assert_eq!(classify("SELECT 1"), StatementKind::Other);
        assert_eq!(classify("UPDATE t SET a = 1"), StatementKind::Other);
        assert_eq!(classify(""), StatementKind::Other);
    }
}

//! D1's SQL dump format, shared by d1vault and the D1 emulator.
//!
//! D1's export writes one plain SQL script (its shape is in `docs/d1-dump-format.md`); d1vault reads it back
//! for checks and restores, and the emulator (and d1vault's local SQLite source) writes it. Everything the
//! two sides must agree on lives here, defined once:
//!
//! * [`StatementSplitter`]: an incremental statement splitter that finds the boundaries SQLite finds, for
//!   dumps of any size.
//! * [`classify`]: a light statement classifier (schema, row, pragma, transaction control ...).
//! * [`parse_insert`], [`quote_value`]: the single-row `INSERT` statements the dump holds and the quoting
//!   rules they follow.
//! * [`write_dump`]: the one writer of the format, from a SQLite connection.
//! * [`DumpOptions`]: the one type for D1's `dump_options` (what an export contains).
//! * [`limits`]: D1's limits that shape a dump (statement length, database and import size).
//! * [`ScratchSchema`]: a schema-only, locked-down SQLite in memory that proves statements load.
//!
//! Everything but the writer and the scratch schema is pure (no I/O).

mod classify;
mod insert;
mod lexer;
pub mod limits;
mod number;
mod options;
mod scratch;
mod splitter;
mod writer;

pub use classify::{StatementKind, classify};
pub use insert::{
    InsertStatement, SqlValue, insert_head, parse_insert, quote_identifier, quote_value,
};
pub use number::format_js_number;
pub use options::DumpOptions;
pub use scratch::{ScratchSchema, split_statements_by_sqlite};
pub use splitter::{StatementSplitter, split_statements, split_statements_stepwise};
pub use writer::{DumpError, DumpSummary, TableRows, write_dump};

/// Why SQL text could not be split into statements.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SqlError {
    /// The input is not UTF-8; SQL dumps are always UTF-8 text, so the file is damaged or not a dump.
    #[error(
        "the SQL text is not valid UTF-8 (at byte {offset}); the file is damaged or is not a SQL dump"
    )]
    InvalidUtf8 {
        /// Byte offset in the whole input where the invalid sequence starts.
        offset: u64,
    },
    /// A statement grew beyond the configured limit (D1 refuses statements over 100,000 bytes).
    #[error("a statement starting with {start:?} is longer than {limit} bytes")]
    StatementTooLong {
        /// The first characters of the offending statement, to find it in the file.
        start: String,
        /// The configured limit in bytes.
        limit: usize,
    },
    /// The input ended inside a string, quoted identifier or block comment.
    #[error("the SQL text ends inside an unterminated {what}")]
    Unterminated {
        /// What was left open: "string", "quoted identifier" or "block comment".
        what: &'static str,
    },
}

/// The keywords and names of a statement in order (quoted identifiers unquoted); string literals, numbers
/// and punctuation are left out. Used to spot forbidden names such as D1's reserved `_cf_` prefix.
pub fn words(stmt: &str) -> Vec<String> {
    let mut lexer = lexer::Lexer::new(stmt);
    let mut out = Vec::new();
    while let Ok(Some(token)) = lexer.next_token() {
        if let lexer::Token::Word(w) | lexer::Token::Ident(w) = token {
            out.push(w);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn words_skip_strings_and_unquote_names() {
        // Proves names are found in every quoting style and string contents are ignored.
        assert_eq!(
            super::words("SELECT \"_cf_x\", [a b] FROM main.t WHERE c = '_cf_no' -- _cf_comment"),
            vec!["SELECT", "_cf_x", "a b", "FROM", "main", "t", "WHERE", "c"]
        );
    }
}

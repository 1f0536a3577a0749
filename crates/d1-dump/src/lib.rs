//! D1's SQL dump format, shared by d1vault and the D1 emulator.
//!
//! D1's export writes one plain SQL script (its shape is in `docs/d1-dump-format.md`); d1vault reads it back
//! for checks and restores, and the emulator (and d1vault's local SQLite source) writes it. Everything the
//! two sides must agree on lives here, defined once.
//!
//! # Layout
//!
//! * `splitter`: [`StatementSplitter`], an incremental statement splitter that finds the boundaries SQLite
//!   finds, for dumps of any size ([`split_statements`] for text in memory, [`SqlError`] when it cannot).
//! * `lexer`: the small SQLite tokenizer under the classifier and the INSERT parser; [`words`] for names.
//! * `classify`: [`classify`], a light statement classifier (schema, row, pragma, transaction control ...).
//! * `insert`: [`parse_insert`], [`SqlValue`], [`quote_identifier`], [`insert_head`]: the single-row
//!   `INSERT` statements the dump holds and the quoting rules they follow.
//! * `number`: JavaScript's number-to-text conversion, which D1's dumper applies to every real.
//! * `writer`: [`write_dump`] ([`write_dump_with`] for virtual tables), the one writer of the format, from a SQLite connection.
//! * `virtual_table`: [`parse_virtual_table`], [`VirtualTable`], [`FtsContent`]: what a `CREATE VIRTUAL
//!   TABLE` says and what a dump holds for it.
//! * `options`: [`DumpOptions`], the one type for D1's `dump_options` (what an export contains).
//! * [`limits`]: D1's statement-length limit, which shapes a dump.
//! * `scratch`: [`ScratchSchema`], a schema-only, locked-down SQLite in memory that proves statements load.
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
mod virtual_table;
mod writer;

pub use classify::{StatementKind, classify};
pub use insert::{
    InsertStatement, SqlValue, insert_head, parse_insert, parse_quoted, quote_identifier,
    row_statement,
};
pub use lexer::words;
pub use options::DumpOptions;
pub use scratch::{ScratchSchema, split_statements_by_sqlite};
pub use splitter::{SqlError, StatementSplitter, split_statements, split_statements_stepwise};
pub use virtual_table::{
    FTS5, FtsContent, VirtualTable, VirtualTableRows, is_rebuild, parse_virtual_table,
    rebuild_statement,
};
pub use writer::{
    DumpError, DumpSummary, TableRows, VirtualTables, complete_virtual_table, write_dump,
    write_dump_with,
};

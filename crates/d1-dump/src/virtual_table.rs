//! Virtual tables in a dump: what their `CREATE VIRTUAL TABLE` text says (module, arguments, FTS5's
//! `content=` option) and what a dump holds for each (`docs/d1-dump-format.md`, "Virtual tables").
//!
//! D1's own export refuses any virtual table; d1vault completes the dump itself, for FTS5 tables only. The
//! writer (local SQLite sources), the backup's inspector, the restore and `verify` all read a definition
//! through [`parse_virtual_table`], so they agree on which tables are FTS5 and how their contents come back.

/// The one module whose virtual tables a dump may hold.
pub const FTS5: &str = "fts5";

/// A `CREATE VIRTUAL TABLE name USING module(args)` statement, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VirtualTable {
    /// The table's name, unquoted.
    pub name: String,
    /// The module, lowercased (`fts5`, `rtree`, ...).
    pub module: String,
    /// The module arguments, as written between the parentheses (trimmed, quotes kept).
    pub args: Vec<String>,
}

/// Where an FTS5 table's rows live, from its `content=` option; it decides what the dump holds for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FtsContent {
    /// No `content=` option: FTS5 keeps the rows itself; the dump holds them as rows with their rowid.
    Contentful,
    /// `content=TABLE`: the rows live in that table; the dump holds the `'rebuild'` command, after the
    /// table's rows.
    External {
        /// The content table, unquoted.
        table: String,
    },
    /// `content=''`: FTS5 keeps only the index; its rows cannot be read back, so a dump cannot hold them.
    Contentless,
}

/// One virtual table of a dump, as the dump summary and the manifest report it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VirtualTableRows {
    /// The table's name.
    pub name: String,
    /// Its module (`fts5`).
    pub module: String,
    /// Its rows, as `SELECT count(*)` on the table counts them (for an external-content table: the rows of
    /// its content table that the `'rebuild'` indexes).
    pub rows: u64,
}

/// The statement a dump holds for an external-content FTS5 table `name`: FTS5's command to index its
/// content table, `INSERT INTO "name" ("name") VALUES('rebuild');`. The one place it is spelled.
pub fn rebuild_statement(name: &str) -> String {
    format!(
        "{}('rebuild');",
        crate::insert_head(name, Some(std::slice::from_ref(&name.to_owned())))
    )
}

/// Whether `insert` is FTS5's `'rebuild'` command on `table` (its one column is the table's own name,
/// its one value the text `rebuild`), not a row.
pub fn is_rebuild(insert: &crate::InsertStatement, table: &str) -> bool {
    let command_column = insert
        .columns
        .as_deref()
        .is_some_and(|c| c.len() == 1 && c[0].eq_ignore_ascii_case(table));
    command_column
        && matches!(insert.values.as_slice(),
            [crate::SqlValue::Text(command)] if command.eq_ignore_ascii_case("rebuild"))
}

impl VirtualTable {
    /// Whether the module is FTS5.
    pub fn is_fts5(&self) -> bool {
        self.module == FTS5
    }

    /// The value of option `key` (`content`, `tokenize`, ...), unquoted, if the arguments set it.
    pub fn option(&self, key: &str) -> Option<String> {
        self.args.iter().find_map(|arg| {
            let (k, v) = split_option(arg)?;
            k.eq_ignore_ascii_case(key).then(|| unquote(v))
        })
    }

    /// For an FTS5 table: where its rows live.
    pub fn fts_content(&self) -> FtsContent {
        match self.option("content") {
            None => FtsContent::Contentful,
            Some(table) if table.is_empty() => FtsContent::Contentless,
            Some(table) => FtsContent::External { table },
        }
    }
}

/// Reads a `CREATE VIRTUAL TABLE [IF NOT EXISTS] [schema.]name USING module[(args)]` statement; `None` when
/// `sql` is not one.
pub fn parse_virtual_table(sql: &str) -> Option<VirtualTable> {
    let name = match crate::classify(sql) {
        crate::StatementKind::CreateVirtualTable { name } => name,
        _ => return None,
    };
    let upper = sql.to_ascii_uppercase();
    // The first USING outside quotes: a quoted table name may contain the word.
    let using = find_outside_quotes(sql, &upper, "USING")?;
    let rest = sql[using + "USING".len()..].trim_start();
    let module_end = rest
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(rest.len());
    let module = rest[..module_end].to_ascii_lowercase();
    if module.is_empty() {
        return None;
    }
    let after = rest[module_end..].trim_start();
    let args = match after.strip_prefix('(') {
        Some(inner) => split_args(inner),
        None => Vec::new(),
    };
    Some(VirtualTable { name, module, args })
}

/// The byte offset of `word` (uppercase) as a whole word outside quotes in `sql` (`upper` is its
/// uppercase copy).
fn find_outside_quotes(sql: &str, upper: &str, word: &str) -> Option<usize> {
    let bytes = sql.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            q @ (b'\'' | b'"' | b'`') => i = skip_quoted(bytes, i, q),
            b'[' => i = skip_quoted(bytes, i, b']'),
            _ => {
                let boundary_before = i == 0 || !is_word_byte(bytes[i - 1]);
                let end = i + word.len();
                if boundary_before
                    && upper.as_bytes().get(i..end) == Some(word.as_bytes())
                    && bytes.get(end).is_none_or(|b| !is_word_byte(*b))
                {
                    return Some(i);
                }
                i += 1;
            }
        }
    }
    None
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80
}

/// The index after the quoted run starting at `start` (whose closing quote is `close`; doubled closing
/// quotes stay inside).
fn skip_quoted(bytes: &[u8], start: usize, close: u8) -> usize {
    let mut i = start + 1;
    while i < bytes.len() {
        if bytes[i] == close {
            if close != b']' && bytes.get(i + 1) == Some(&close) {
                i += 2;
                continue;
            }
            return i + 1;
        }
        i += 1;
    }
    bytes.len()
}

/// The comma-separated arguments up to the closing parenthesis, each trimmed.
fn split_args(inner: &str) -> Vec<String> {
    let bytes = inner.as_bytes();
    let mut args = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            q @ (b'\'' | b'"' | b'`') => {
                i = skip_quoted(bytes, i, q);
                continue;
            }
            b'[' => {
                i = skip_quoted(bytes, i, b']');
                continue;
            }
            b'(' => depth += 1,
            b')' if depth == 0 => {
                args.push(inner[start..i].trim().to_owned());
                return args.into_iter().filter(|a| !a.is_empty()).collect();
            }
            b')' => depth -= 1,
            b',' if depth == 0 => {
                args.push(inner[start..i].trim().to_owned());
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    args.push(inner[start..].trim().to_owned());
    args.into_iter().filter(|a| !a.is_empty()).collect()
}

/// `key = value` when `arg` is an option (an `=` outside quotes).
fn split_option(arg: &str) -> Option<(&str, &str)> {
    let bytes = arg.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            q @ (b'\'' | b'"' | b'`') => {
                i = skip_quoted(bytes, i, q);
                continue;
            }
            b'[' => {
                i = skip_quoted(bytes, i, b']');
                continue;
            }
            b'=' => return Some((arg[..i].trim(), arg[i + 1..].trim())),
            _ => {}
        }
        i += 1;
    }
    None
}

/// A value without its quotes (`'a''b'` is `a'b`, `[x]` is `x`); a bare word as it is.
fn unquote(value: &str) -> String {
    let mut chars = value.chars();
    match (chars.next(), value.chars().last()) {
        (Some(open @ ('\'' | '"' | '`')), Some(close)) if close == open && value.len() >= 2 => {
            let inner = &value[1..value.len() - 1];
            let doubled: String = [open, open].iter().collect();
            inner.replace(&doubled, &open.to_string())
        }
        (Some('['), Some(']')) if value.len() >= 2 => value[1..value.len() - 1].to_owned(),
        _ => value.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_module_arguments_and_content_option() {
        // Proves the module, the arguments (with quoted commas and parentheses) and the three kinds of
        // FTS5 content are read from the stored definition, whatever the quoting.
        let t = parse_virtual_table(
            "CREATE VIRTUAL TABLE \"posts using\" USING FTS5(title, body, content='posts', \
             content_rowid=\"id\", tokenize = 'unicode61 remove_diacritics 2, x')",
        )
        .unwrap();
        assert_eq!(t.name, "posts using");
        assert_eq!(t.module, "fts5");
        assert!(t.is_fts5());
        assert_eq!(t.args.len(), 5);
        assert_eq!(
            t.fts_content(),
            FtsContent::External {
                table: "posts".into()
            }
        );
        assert_eq!(t.option("content_rowid").as_deref(), Some("id"));
        assert_eq!(
            t.option("tokenize").as_deref(),
            Some("unicode61 remove_diacritics 2, x")
        );
        let plain = parse_virtual_table("CREATE VIRTUAL TABLE notes USING fts5(body)").unwrap();
        assert_eq!(plain.fts_content(), FtsContent::Contentful);
        let none =
            parse_virtual_table("CREATE VIRTUAL TABLE idx USING fts5(body, content='')").unwrap();
        assert_eq!(none.fts_content(), FtsContent::Contentless);
        let quoted =
            parse_virtual_table("CREATE VIRTUAL TABLE x USING fts5(a, content=[o'k t])").unwrap();
        assert_eq!(
            quoted.fts_content(),
            FtsContent::External {
                table: "o'k t".into()
            }
        );
        let rtree =
            parse_virtual_table("CREATE VIRTUAL TABLE geo USING rtree(id, x0, x1)").unwrap();
        assert_eq!(rtree.module, "rtree");
        assert!(parse_virtual_table("CREATE TABLE t (a)").is_none());
    }

    #[test]
    fn the_rebuild_command_reads_back_as_itself_and_rows_do_not() {
        // Proves the written 'rebuild' statement is recognised, and a row of an ordinary one-column table
        // or another command is not.
        let stmt = rebuild_statement("posts \"fts\"");
        assert_eq!(
            stmt,
            "INSERT INTO \"posts \"\"fts\"\"\" (\"posts \"\"fts\"\"\") VALUES('rebuild');"
        );
        let insert = crate::parse_insert(&stmt).unwrap();
        assert!(is_rebuild(&insert, "posts \"fts\""));
        let other = crate::parse_insert("INSERT INTO \"t\" (\"t\") VALUES('optimize');").unwrap();
        assert!(!is_rebuild(&other, "t"));
        let row = crate::parse_insert("INSERT INTO \"t\" (\"rowid\",\"t\") VALUES(1,'rebuild');")
            .unwrap();
        assert!(!is_rebuild(&row, "t"));
    }
}

//! Restores larger than one D1 import (D1 takes 5 GB per import; a database may hold 10 GB): which
//! imports, in which order. The rows are spooled in runs that each belong to one table and fit one import;
//! the runs are then ordered parent tables first (by the schema's foreign keys, read by SQLite itself from
//! the dump's `CREATE TABLE` statements) and packed into as few imports as fit, because D1 checks foreign
//! keys at the end of every import. Pure, apart from an in-memory SQLite database for the schema.

use std::collections::{BTreeMap, BTreeSet};

/// One table's rows at `start..end` of the spooled rows part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RowRun {
    /// The table the rows go into.
    pub(crate) table: String,
    /// Where they begin in the rows part.
    pub(crate) start: u64,
    /// Where they end.
    pub(crate) end: u64,
}

impl RowRun {
    fn len(&self) -> u64 {
        self.end - self.start
    }
}

/// The tables of `create_tables` (the dump's `CREATE TABLE` statements, in dump order), parents before
/// the tables whose foreign keys reference them; tables in a cycle of references keep their dump order
/// after the others (D1 may then refuse an import, which the restore reports). A schema SQLite cannot
/// read leaves the dump order.
pub(crate) fn parents_first(create_tables: &[String]) -> Vec<String> {
    let dump_order = table_names(create_tables);
    let Ok(parents) = references(create_tables, &dump_order) else {
        return dump_order;
    };
    let mut placed: Vec<String> = Vec::new();
    let mut left: Vec<String> = dump_order.clone();
    loop {
        let ready: Vec<String> = left
            .iter()
            .filter(|t| {
                parents.get(*t).is_none_or(|ps| {
                    ps.iter()
                        .all(|p| p == *t || placed.contains(p) || !left.contains(p))
                })
            })
            .cloned()
            .collect();
        if ready.is_empty() {
            placed.extend(left);
            return placed;
        }
        left.retain(|t| !ready.contains(t));
        placed.extend(ready);
        if left.is_empty() {
            return placed;
        }
    }
}

/// The names the statements create, as SQLite reads them.
fn table_names(create_tables: &[String]) -> Vec<String> {
    let Ok(conn) = schema_db(create_tables) else {
        return Vec::new();
    };
    let Ok(mut stmt) =
        conn.prepare("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY rowid")
    else {
        return Vec::new();
    };
    stmt.query_map([], |row| row.get::<_, String>(0))
        .map(|rows| rows.filter_map(Result::ok).collect())
        .unwrap_or_default()
}

/// Each table's parent tables (those its foreign keys reference), by `PRAGMA foreign_key_list`.
fn references(
    create_tables: &[String],
    tables: &[String],
) -> rusqlite::Result<BTreeMap<String, BTreeSet<String>>> {
    let conn = schema_db(create_tables)?;
    let mut parents = BTreeMap::new();
    for table in tables {
        let mut stmt = conn.prepare("SELECT \"table\" FROM pragma_foreign_key_list(?1)")?;
        let referenced: BTreeSet<String> = stmt
            .query_map([table], |row| row.get::<_, String>(0))?
            .filter_map(Result::ok)
            .collect();
        parents.insert(table.clone(), referenced);
    }
    Ok(parents)
}

/// An in-memory database holding the tables `create_tables` create (no rows, nothing enforced).
fn schema_db(create_tables: &[String]) -> rusqlite::Result<rusqlite::Connection> {
    let conn = rusqlite::Connection::open_in_memory()?;
    for sql in create_tables {
        conn.execute_batch(sql)?;
    }
    Ok(conn)
}

/// The runs grouped into imports of at most `budget` bytes each, tables in `order` (runs of tables not in
/// it, such as `sqlite_sequence`, last, in spool order). A run never spans two imports.
pub(crate) fn pack(runs: &[RowRun], order: &[String], budget: u64) -> Vec<Vec<RowRun>> {
    let rank = |table: &str| order.iter().position(|t| t == table).unwrap_or(order.len());
    let mut sorted: Vec<(usize, usize, &RowRun)> = runs
        .iter()
        .enumerate()
        .map(|(i, r)| (rank(&r.table), i, r))
        .collect();
    sorted.sort_by_key(|(rank, i, _)| (*rank, *i));
    let mut imports: Vec<Vec<RowRun>> = Vec::new();
    let mut size = 0;
    for (_, _, run) in sorted {
        match imports.last_mut() {
            Some(current) if size + run.len() <= budget => {
                current.push(run.clone());
                size += run.len();
            }
            _ => {
                imports.push(vec![run.clone()]);
                size = run.len();
            }
        }
    }
    imports
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(table: &str, start: u64, end: u64) -> RowRun {
        RowRun {
            table: table.into(),
            start,
            end,
        }
    }

    #[test]
    fn parent_tables_come_before_the_tables_that_reference_them() {
        // Proves the order follows foreign keys, not dump order; a self-reference is no cycle; a real
        // cycle keeps dump order after the rest.
        let schema = [
            "CREATE TABLE comments (id INTEGER PRIMARY KEY, post_id INTEGER REFERENCES posts(id))",
            "CREATE TABLE posts (id INTEGER PRIMARY KEY, author_id INTEGER REFERENCES authors(id), parent INTEGER REFERENCES posts(id))",
            "CREATE TABLE authors (id INTEGER PRIMARY KEY)",
            "CREATE TABLE a (id INTEGER PRIMARY KEY, b INTEGER REFERENCES b(id))",
            "CREATE TABLE b (id INTEGER PRIMARY KEY, a INTEGER REFERENCES a(id))",
        ]
        .map(String::from);
        assert_eq!(
            parents_first(&schema),
            ["authors", "posts", "comments", "a", "b"]
        );
    }

    #[test]
    fn runs_are_packed_in_table_order_without_exceeding_the_budget() {
        // Proves runs are ordered by table rank (spool order within a table), packed greedily, never
        // split, and a run of a table outside the order goes last.
        let runs = [
            run("comments", 0, 40),
            run("posts", 40, 100),
            run("posts", 100, 150),
            run("sqlite_sequence", 150, 160),
            run("authors", 160, 170),
        ];
        let order = ["authors".to_string(), "posts".into(), "comments".into()];
        let imports = pack(&runs, &order, 80);
        let tables: Vec<Vec<&str>> = imports
            .iter()
            .map(|i| i.iter().map(|r| r.table.as_str()).collect())
            .collect();
        assert_eq!(
            tables,
            [
                vec!["authors", "posts"],
                vec!["posts"],
                vec!["comments", "sqlite_sequence"]
            ]
        );
        assert!(
            imports
                .iter()
                .all(|i| i.iter().map(RowRun::len).sum::<u64>() <= 80)
        );
    }
}

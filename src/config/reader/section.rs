//! Where a value was written: a table of the document with the keys it accepts ([`Section`], [`Schema`]),
//! and a value read from it with its position ([`At`]).

use toml_edit::{Item, TableLike};

/// The keys one table of the file accepts and the tables that may be nested in it. Each table's schema is
/// declared once: the unknown-key check reads it, every read of a key is checked against it (in debug
/// builds), and the documentation test walks it from the root.
#[derive(Debug)]
pub(crate) struct Schema {
    /// The table's key in its parent (`daemon`, `database`, `retention`); empty for the document root.
    pub(crate) name: &'static str,
    /// Every key the table accepts, in groups (storage: common, S3, filesystem), in the order that
    /// unknown-key messages list them.
    pub(crate) keys: &'static [&'static [&'static str]],
    /// The tables that may appear under one of `keys`.
    pub(crate) tables: &'static [&'static Schema],
}

impl Schema {
    /// Whether `key` is one of the keys this table accepts.
    pub(crate) fn accepts(&self, key: &str) -> bool {
        self.keys.iter().any(|group| group.contains(&key))
    }
}

/// A value read from the file, with the byte offset where it was written and its dotted key, so that
/// checks across keys (jitter against window, level against compression) can point at the right place.
#[derive(Debug, Clone)]
pub(crate) struct At<T> {
    /// The value, parsed.
    pub(crate) value: T,
    /// Byte offset of the value in the file.
    pub(crate) offset: usize,
    /// Dotted key, as in messages.
    pub(crate) key: String,
}

/// Re-wraps a parsed value with the position of the text it came from.
pub(crate) fn with<T, U>(at: At<T>, value: U) -> At<U> {
    At {
        value,
        offset: at.offset,
        key: at.key,
    }
}

/// A table of the file being read (a `[section]`, an inline table or one `[[database]]`).
#[derive(Clone, Copy)]
pub(crate) struct Section<'t> {
    /// Dotted name used as the key prefix in messages; empty for the root.
    pub(crate) name: &'t str,
    /// Byte offset of the table's header, used for problems about missing keys.
    pub(crate) offset: usize,
    /// The table as parsed.
    pub(crate) table: &'t dyn TableLike,
    /// The keys it accepts.
    pub(crate) schema: &'static Schema,
}

impl<'t> Section<'t> {
    /// The dotted key of `key` in this table, as in messages.
    pub(crate) fn key_path(&self, key: &str) -> String {
        if self.name.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.name)
        }
    }

    /// Offset of the key itself (for unknown keys), falling back to the table header.
    pub(crate) fn key_offset(&self, key: &str) -> usize {
        self.table
            .key(key)
            .and_then(|k| k.span())
            .map_or(self.offset, |s| s.start)
    }

    /// The item at `key` with the offset of its value.
    pub(crate) fn get(&self, key: &str) -> Option<(&'t Item, usize)> {
        self.assert_declared(key);
        let item = self.table.get(key)?;
        let offset = item
            .span()
            .map_or_else(|| self.key_offset(key), |s| s.start);
        Some((item, offset))
    }

    /// Whether the file sets `key` in this table.
    pub(crate) fn contains(&self, key: &str) -> bool {
        self.assert_declared(key);
        self.table.contains_key(key)
    }

    /// A key read but not declared in the table's schema would never pass the unknown-key check (and
    /// would be missing from the documentation test): a programming error, caught by every debug test.
    fn assert_declared(&self, key: &str) {
        debug_assert!(
            self.schema.accepts(key),
            "`{key}` is read from [{}] but not declared in its schema",
            self.schema.name
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static SCHEMA: Schema = Schema {
        name: "t",
        keys: &[&["a"], &["b"]],
        tables: &[],
    };

    fn with_section(f: impl FnOnce(Section<'_>)) {
        let document = toml_edit::Document::parse("a = 1\nc = 2").unwrap();
        f(Section {
            name: "t",
            offset: 0,
            table: document.as_table(),
            schema: &SCHEMA,
        });
    }

    #[test]
    fn declared_keys_are_read() {
        // Proves keys of every group are accepted and read, and a declared but absent key is just absent.
        with_section(|section| {
            assert!(section.get("a").is_some());
            assert!(!section.contains("b"));
            assert!(SCHEMA.accepts("b") && !SCHEMA.accepts("c"));
        });
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "not declared in its schema")]
    fn reading_an_undeclared_key_is_caught_in_debug_builds() {
        // Proves a key the schema does not declare cannot be read unnoticed: the unknown-key check would
        // refuse it in every file, so reading it is a programming error.
        with_section(|section| {
            let _ = section.get("c");
        });
    }
}

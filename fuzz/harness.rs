//! The fuzz targets' bodies, shared by the cargo-fuzz binaries (`fuzz/fuzz_targets/*.rs`) and the stable
//! replay test (`tests/it/faults/fuzz_replay.rs`), so both exercise exactly the same code and properties.
//! Each function panics only when a property of d1vault breaks (a panic inside d1vault counts too).
#![allow(dead_code)]

use std::path::Path;

use d1_dump::{
    StatementSplitter, classify, parse_insert, split_statements_by_sqlite,
    split_statements_stepwise,
};
use d1vault::pipeline::inspect::DumpInspector;
use d1vault::repository::manifest::Manifest;

/// Cuts `data` into chunks whose lengths come from the first byte, so that one input also exercises
/// chunk boundaries inside multi-byte characters, quotes and comments.
fn chunks(data: &[u8]) -> (u8, Vec<&[u8]>) {
    let Some((&seed, rest)) = data.split_first() else {
        return (0, Vec::new());
    };
    let step = usize::from(seed % 17) + 1;
    (seed, rest.chunks(step).collect())
}

/// Statements (or the error) the splitter produces for `parts` fed one after another.
fn split(parts: &[&[u8]]) -> Result<(Vec<String>, Option<String>), String> {
    let mut splitter = StatementSplitter::with_max_len(64 * 1024);
    let mut statements = Vec::new();
    for part in parts {
        splitter
            .push(part, &mut |s: &str| statements.push(s.to_string()))
            .map_err(|e| e.to_string())?;
    }
    let rest = splitter.finish().map_err(|e| e.to_string())?;
    Ok((statements, rest))
}

/// The splitter never panics, gives the same statements however the input is chunked, cuts them where
/// SQLite's own parser does, and every statement it yields can be classified and (if an INSERT) parsed
/// without panicking.
pub(crate) fn sql_splitter(data: &[u8]) {
    let (_, parts) = chunks(data);
    let whole: Vec<u8> = parts.concat();
    let at_once = split(&[&whole]);
    let chunked = split(&parts);
    match (&at_once, &chunked) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "statements depend on how the input was chunked"),
        (Err(_), Err(_)) => {}
        _ => panic!("the verdict depends on chunking: whole {at_once:?}, chunked {chunked:?}"),
    }
    // The fast paths (whole runs, statement starts) split exactly as the character-by-character state
    // machine does. (Inputs longer than the length limit could fail only in the limited splitter.)
    if let Ok(text) = std::str::from_utf8(&whole)
        && whole.len() <= 64 * 1024
    {
        let fast = at_once.clone().map(|(mut statements, rest)| {
            statements.extend(rest);
            statements
        });
        let stepped = split_statements_stepwise(text).map_err(|e| e.to_string());
        assert_eq!(
            fast, stepped,
            "the fast paths split differently from stepping"
        );
    }
    // SQLite's own parser (prepare and tail) reads the same statements, as far as it accepts the text.
    // Left out: text with NUL (SQLite stops reading there), text the splitter refuses (SQLite ends an
    // unterminated comment at the end of the input; a dump that does is truncated), and text with a vertical
    // tab: sqlite3_complete(), which the splitter follows, reads it as a word character, while SQLite's
    // tokenizer rejects it outside quotes, or, before a trailing comment, reads no statement at all. No dump
    // holds one outside a quoted value, and the backup's load proof refuses any that does.
    if let (Ok(text), Ok((statements, rest))) = (std::str::from_utf8(&whole), &at_once)
        && whole.len() <= 64 * 1024
        && !text.contains('\0')
        && !text.contains('\u{b}')
    {
        let mut ours: Vec<&str> = statements.iter().map(|s| s.trim_end()).collect();
        ours.extend(rest.as_deref().map(str::trim_end));
        let (sqlite, stopped) = split_statements_by_sqlite(text);
        let sqlite: Vec<&str> = sqlite.iter().map(|s| s.trim_end()).collect();
        match &stopped {
            None => assert_eq!(ours, sqlite, "SQLite splits differently"),
            Some(why) => assert!(
                ours.get(..sqlite.len()) == Some(&sqlite[..]),
                "SQLite splits differently before it stopped ({why}): ours {ours:?}, SQLite {sqlite:?}"
            ),
        }
    }
    if let Ok((statements, _)) = at_once {
        for statement in &statements {
            let _ = classify(statement);
            let _ = parse_insert(statement);
        }
    }
}

/// Verdict of the dump inspector over `parts`: the report's table/row summary, or the error text.
fn inspect(parts: &[&[u8]], announced: Option<u64>) -> Result<String, String> {
    let mut inspector = DumpInspector::new(announced, "d1_migrations");
    for part in parts {
        inspector.push(part).map_err(|e| e.to_string())?;
    }
    inspector
        .finish()
        .map(|report| format!("{report:?}"))
        .map_err(|e| e.to_string())
}

/// The dump inspector never panics and reaches the same verdict (accept with the same report, or refuse)
/// however the download is chunked, with and without an announced length.
pub(crate) fn dump_inspector(data: &[u8]) {
    let (seed, parts) = chunks(data);
    let whole: Vec<u8> = parts.concat();
    let announced = if seed & 0x80 != 0 {
        Some(whole.len() as u64)
    } else {
        None
    };
    let at_once = inspect(&[&whole], announced);
    let chunked = inspect(&parts, announced);
    assert_eq!(
        at_once.is_ok(),
        chunked.is_ok(),
        "verdict depends on chunking: {at_once:?} vs {chunked:?}"
    );
    if let (Ok(a), Ok(b)) = (&at_once, &chunked) {
        assert_eq!(a, b, "report depends on chunking");
    }
    // A body shorter than announced is never accepted.
    if !whole.is_empty() {
        let short = inspect(&[&whole[..whole.len() - 1]], Some(whole.len() as u64));
        assert!(short.is_err(), "a truncated body was accepted: {short:?}");
    }
}

/// Parsing never panics, and a manifest that parses survives its own serialization unchanged.
pub(crate) fn manifest(data: &[u8]) {
    if let Ok(parsed) = Manifest::from_json(data) {
        let again = Manifest::from_json(&parsed.to_json()).expect("a written manifest parses");
        assert_eq!(
            parsed, again,
            "a manifest changed through to_json/from_json"
        );
    }
}

/// The configuration loader never panics, and every error it reports names the file.
pub(crate) fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let env = |name: &str| match name {
        "CLOUDFLARE_API_TOKEN" => Some("fuzz-token".to_string()),
        "CLOUDFLARE_ACCOUNT_ID" => Some("0123456789abcdef0123456789abcdef".to_string()),
        _ => None,
    };
    let path = Path::new("/nonexistent/d1vault-fuzz/d1vault.toml");
    if let Err(errors) = d1vault::config::load_str(text, path, &env) {
        let shown = errors.to_string();
        assert!(!shown.is_empty(), "an empty error report");
        // Only a leak if the token came from the environment: the fuzzer learns the literal text (from
        // the loader's redaction search) and may write it into the file itself.
        if !text.contains("fuzz-token") {
            assert!(
                !shown.contains("fuzz-token"),
                "a secret reached an error message: {shown}"
            );
        }
    }
}

//! An incremental SQL statement splitter.
//!
//! Dumps can be many gigabytes, so the splitter takes the input in chunks of bytes and holds only the
//! statement it is currently reading. It decides where a statement ends exactly as SQLite's own
//! `sqlite3_complete()` does (`docs/d1-dump-format.md`, "Statement boundaries"): a small state machine over tokens (`;`, whitespace and comments,
//! the bare words `EXPLAIN`, `CREATE`, `TEMP`/`TEMPORARY`, `TRIGGER`, `END`, and everything else). Quoted
//! tokens (`'...'` with `''`, `"..."`, `` `...` ``, `[...]`) and comments (`--`, `/* */`) are never keywords
//! and hide semicolons. Inside `CREATE [TEMP] TRIGGER`, only a `;` followed (after whitespace and comments)
//! by the bare word `END` and another `;` ends the statement; `BEGIN`, `CASE` and columns named `end`,
//! `begin` or `case` do not matter, because SQLite accepts those words as identifiers.

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

/// Where the splitter is inside the SQL text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Ordinary SQL text.
    Normal,
    /// Saw `-` in normal text; a second `-` starts a line comment.
    Dash,
    /// Saw `/` in normal text; a `*` starts a block comment.
    Slash,
    /// Inside a quoted token that ends with the given character.
    Quoted(char),
    /// Saw the closing quote character; a second one is an escaped quote (not for `]`).
    QuoteEnd(char),
    /// Inside `-- ...` up to the end of the line.
    LineComment,
    /// Inside `/* ... */`.
    BlockComment,
    /// Inside a block comment, just after a `*`.
    BlockCommentStar,
}

/// Where the current statement is in `sqlite3_complete()`'s state machine, which decides
/// which `;` ends a statement. Whitespace and comments never change it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Between statements (`sqlite3_complete()`'s INVALID and START states): no token of a statement read yet.
    Start,
    /// An ordinary statement: the next `;` ends it.
    Normal,
    /// Read `EXPLAIN` (and possibly more words): a `CREATE` may still follow.
    Explain,
    /// Read `CREATE` (and possibly `TEMP`/`TEMPORARY`): a `TRIGGER` may follow.
    Create,
    /// Inside a `CREATE TRIGGER` statement: semicolons do not end it by themselves.
    Trigger,
    /// Inside a trigger, just after a `;`: an `END` may follow.
    Semi,
    /// Inside a trigger, read `;` then `END`: a `;` now ends the statement.
    End,
}

/// A token as `sqlite3_complete()` classifies it. Whitespace and comments are left out (they never change
/// the [`Phase`]), and so is `;`, which [`StatementSplitter::normal`] handles since it may end the statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    /// The bare word `EXPLAIN`.
    Explain,
    /// The bare word `CREATE`.
    Create,
    /// The bare word `TEMP` or `TEMPORARY`.
    Temp,
    /// The bare word `TRIGGER`.
    Trigger,
    /// The bare word `END`.
    End,
    /// Any other word, a quoted token, or punctuation.
    Other,
}

impl Token {
    /// The token a bare word is, given in upper case (`None`: too long to be a keyword).
    fn of_word(word: Option<&str>) -> Token {
        match word {
            Some("EXPLAIN") => Token::Explain,
            Some("CREATE") => Token::Create,
            Some("TEMP" | "TEMPORARY") => Token::Temp,
            Some("TRIGGER") => Token::Trigger,
            Some("END") => Token::End,
            _ => Token::Other,
        }
    }

    /// The token a bare word is, in any case; no allocation (a dump's every statement starts with one).
    fn of_word_any_case(word: &str) -> Token {
        const KEYWORDS: [(&str, Token); 6] = [
            ("CREATE", Token::Create),
            ("END", Token::End),
            ("EXPLAIN", Token::Explain),
            ("TEMP", Token::Temp),
            ("TEMPORARY", Token::Temp),
            ("TRIGGER", Token::Trigger),
        ];
        KEYWORDS
            .iter()
            .find(|(keyword, _)| word.eq_ignore_ascii_case(keyword))
            .map_or(Token::Other, |&(_, token)| token)
    }
}

impl Phase {
    /// `sqlite3_complete()`'s transition table, for every token but `;`.
    fn after(self, token: Token) -> Phase {
        use Phase::*;
        match (self, token) {
            (Start, Token::Explain) => Explain,
            (Start | Explain, Token::Create) => Create,
            (Start, _) => Normal,
            (Normal, _) => Normal,
            (Explain, Token::Other) => Explain,
            (Explain, _) => Normal,
            (Create, Token::Temp) => Create,
            (Create, Token::Trigger) => Trigger,
            (Create, _) => Normal,
            (Trigger, _) => Trigger,
            (Semi, Token::End) => End,
            (Semi | End, _) => Trigger,
        }
    }

    /// Whether words no longer matter until the next `;`, so that whole runs of text can be copied without
    /// looking at them (see [`StatementSplitter::inert_run`]).
    fn words_are_inert(self) -> bool {
        matches!(self, Phase::Normal | Phase::Trigger)
    }
}

/// Longest keyword the splitter needs to recognise (`TEMPORARY`); longer words are never keywords.
const MAX_KEYWORD_LEN: usize = 9;

/// The bytes that matter in the ordinary text of a plain statement: quote openers, the `;` that ends it, and
/// the first characters of comments. Everything else extends the statement unchanged; a table lookup per
/// byte keeps that scan a tight loop.
const PLAIN_STOPS: [bool; 256] = {
    let mut stops = [false; 256];
    let mut i = 0;
    let bytes = b"'\"`[;-/";
    while i < bytes.len() {
        stops[bytes[i] as usize] = true;
        i += 1;
    }
    stops
};

/// An ASCII byte that continues a word (SQLite's identifier characters, as [`StatementSplitter::normal`]
/// sees them).
fn is_ascii_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$'
}

/// The position of `needle` in `haystack`. Most quoted tokens in a dump are short (column names, small
/// values), where a plain loop beats memchr's set-up; the rest of a long token still gets memchr.
fn find_byte(needle: u8, haystack: &[u8]) -> Option<usize> {
    const SHORT: usize = 16;
    let (head, tail) = haystack.split_at(haystack.len().min(SHORT));
    match head.iter().position(|&b| b == needle) {
        Some(found) => Some(found),
        None => memchr::memchr(needle, tail).map(|found| SHORT + found),
    }
}

/// Splits SQL text, fed in arbitrary byte chunks, into complete statements.
///
/// Each statement is handed to the callback with its terminating `;`, without the whitespace and comments
/// that preceded it. Comments inside a statement are kept (SQLite ignores them). Empty statements (a lone
/// `;`) are dropped.
#[derive(Debug)]
pub struct StatementSplitter {
    state: State,
    /// Where the current statement is in `sqlite3_complete()`'s state machine.
    phase: Phase,
    /// The statement read so far (empty until its first significant character).
    current: String,
    /// The word being read in normal text, upper-cased; `None` once it is too long to be a keyword.
    word: Option<String>,
    /// Whether a word is being read.
    in_word: bool,
    /// Bytes of a UTF-8 character split across chunks.
    pending: Vec<u8>,
    /// Bytes consumed so far, for error offsets.
    offset: u64,
    /// Largest statement accepted, in bytes.
    max_len: Option<usize>,
}

impl Default for StatementSplitter {
    fn default() -> Self {
        Self::new()
    }
}

impl StatementSplitter {
    /// A splitter with no limit on statement length.
    pub fn new() -> Self {
        StatementSplitter {
            state: State::Normal,
            phase: Phase::Start,
            current: String::new(),
            word: Some(String::new()),
            in_word: false,
            pending: Vec::new(),
            offset: 0,
            max_len: None,
        }
    }

    /// A splitter that fails with [`SqlError::StatementTooLong`] once a statement exceeds `limit` bytes,
    /// which also bounds its memory (D1 itself refuses statements over 100,000 bytes).
    pub fn with_max_len(limit: usize) -> Self {
        StatementSplitter {
            max_len: Some(limit),
            ..Self::new()
        }
    }

    /// Feeds the next chunk of input; calls `on_statement` for every statement completed by it.
    pub fn push(
        &mut self,
        chunk: &[u8],
        on_statement: &mut dyn FnMut(&str),
    ) -> Result<(), SqlError> {
        let mut input = chunk;
        // Complete a character split across the previous chunk boundary.
        if !self.pending.is_empty() {
            while !input.is_empty() && self.pending.len() < 4 {
                self.pending.push(input[0]);
                input = &input[1..];
                match std::str::from_utf8(&self.pending) {
                    Ok(text) => {
                        let text = text.to_owned();
                        let consumed = self.pending.len() as u64;
                        self.pending.clear();
                        self.feed(&text, on_statement)?;
                        self.offset += consumed;
                        break;
                    }
                    Err(e) if e.error_len().is_some() => {
                        return Err(SqlError::InvalidUtf8 {
                            offset: self.offset,
                        });
                    }
                    Err(_) => {}
                }
            }
            if !self.pending.is_empty() {
                return if input.is_empty() {
                    Ok(())
                } else {
                    Err(SqlError::InvalidUtf8 {
                        offset: self.offset,
                    })
                };
            }
        }
        match std::str::from_utf8(input) {
            Ok(text) => {
                self.feed(text, on_statement)?;
                self.offset += input.len() as u64;
            }
            Err(e) => {
                let valid = e.valid_up_to();
                // `valid_up_to` guarantees this prefix is valid UTF-8.
                let text = std::str::from_utf8(&input[..valid]).expect("valid prefix");
                self.feed(text, on_statement)?;
                self.offset += valid as u64;
                if e.error_len().is_some() {
                    return Err(SqlError::InvalidUtf8 {
                        offset: self.offset,
                    });
                }
                // An incomplete character at the end of the chunk: wait for the rest.
                self.pending.extend_from_slice(&input[valid..]);
            }
        }
        Ok(())
    }

    /// Ends the input: returns the text after the last `;` if it holds anything but whitespace and comments.
    pub fn finish(mut self) -> Result<Option<String>, SqlError> {
        if !self.pending.is_empty() {
            return Err(SqlError::InvalidUtf8 {
                offset: self.offset,
            });
        }
        match self.state {
            State::Quoted(q) => {
                return Err(SqlError::Unterminated {
                    what: if q == '\'' {
                        "string"
                    } else {
                        "quoted identifier"
                    },
                });
            }
            State::BlockComment | State::BlockCommentStar if !self.current.is_empty() => {
                return Err(SqlError::Unterminated {
                    what: "block comment",
                });
            }
            State::Dash | State::Slash => {
                let c = if self.state == State::Dash { '-' } else { '/' };
                self.current.push(c);
            }
            _ => {}
        }
        let rest = std::mem::take(&mut self.current);
        if rest.trim().is_empty() {
            Ok(None)
        } else {
            Ok(Some(rest))
        }
    }

    fn feed(&mut self, text: &str, on_statement: &mut dyn FnMut(&str)) -> Result<(), SqlError> {
        let mut rest = text;
        while let Some(c) = rest.chars().next() {
            if self.between_statements() {
                let start = self.statement_start(rest)?;
                if start > 0 {
                    rest = &rest[start..];
                    continue;
                }
            }
            let run = self.inert_run(rest);
            if run > 0 {
                self.keep_str(&rest[..run])?;
                rest = &rest[run..];
                continue;
            }
            self.step(c, on_statement)?;
            rest = &rest[c.len_utf8()..];
        }
        Ok(())
    }

    /// Whether the splitter is between statements: nothing kept yet, in ordinary text, no word begun.
    fn between_statements(&self) -> bool {
        self.current.is_empty()
            && self.state == State::Normal
            && self.phase == Phase::Start
            && !self.in_word
    }

    /// Between statements, consumes in one go what [`Self::step`] would consume one character at a time:
    /// the whitespace before a statement (dropped), or its leading word (kept, moving the statement's
    /// [`Phase`] on) when an ASCII character that cannot continue the word follows it inside `text`.
    /// Returns the bytes consumed; 0 leaves the text to the general path. A dump has millions of statements, and their
    /// first few characters were most of what still went through `step`.
    fn statement_start(&mut self, text: &str) -> Result<usize, SqlError> {
        let bytes = text.as_bytes();
        let blank = bytes.iter().take_while(|b| b.is_ascii_whitespace()).count();
        if blank > 0 {
            return Ok(blank);
        }
        let word = bytes.iter().take_while(|&&b| is_ascii_word_byte(b)).count();
        match bytes.get(word) {
            Some(&next) if word > 0 && next.is_ascii() && !is_ascii_word_byte(next) => {
                // What `end_word` decides for a statement's first word.
                self.phase = Phase::Start.after(Token::of_word_any_case(&text[..word]));
                self.keep_str(&text[..word])?;
                Ok(word)
            }
            _ => Ok(0),
        }
    }

    /// Consumes the longest prefix of `text` that only extends the current statement, updating the state
    /// as it goes, and returns its length; the caller keeps that text. Every other character goes through
    /// [`Self::step`]. Copying such runs in one go, instead of character by character, is what makes
    /// splitting a multi-gigabyte dump cheap.
    ///
    /// Inside a quoted token, the run goes up to its closing quote. Where words no longer matter until the
    /// next `;` (an ordinary statement, or a trigger body away from its semicolons: see
    /// [`Phase::words_are_inert`]), the run also crosses ordinary text and whole quoted tokens (the rows of
    /// a dump), stopping only at a `;` or a possible comment start.
    fn inert_run(&mut self, text: &str) -> usize {
        let bytes = text.as_bytes();
        // Every byte that changes the state is ASCII, so every position returned is a character boundary.
        let plain = self.phase.words_are_inert();
        let mut state = self.state;
        let mut at = 0;
        while at < bytes.len() {
            match state {
                State::Quoted(q) => match find_byte(q as u8, &bytes[at..]) {
                    Some(offset) if plain => {
                        at += offset + 1;
                        state = if q == ']' {
                            State::Normal
                        } else {
                            State::QuoteEnd(q)
                        };
                    }
                    // Outside plain statements, the closing quote goes through `step` (words matter).
                    Some(offset) => {
                        at += offset;
                        break;
                    }
                    None => at = bytes.len(),
                },
                State::QuoteEnd(q) if plain => {
                    if bytes[at] == q as u8 {
                        at += 1;
                        state = State::Quoted(q);
                    } else {
                        state = State::Normal;
                    }
                }
                State::Normal if plain => {
                    match bytes[at..]
                        .iter()
                        .position(|&b| PLAIN_STOPS[usize::from(b)])
                    {
                        None => at = bytes.len(),
                        Some(offset) => {
                            at += offset;
                            match bytes[at] {
                                b'\'' | b'"' | b'`' => {
                                    state = State::Quoted(char::from(bytes[at]));
                                    at += 1;
                                }
                                b'[' => {
                                    state = State::Quoted(']');
                                    at += 1;
                                }
                                _ => break, // `;` or a possible comment start
                            }
                        }
                    }
                }
                _ => break,
            }
        }
        self.state = state;
        at
    }

    /// Appends a run of significant text to the current statement (see [`Self::inert_run`]).
    fn keep_str(&mut self, run: &str) -> Result<(), SqlError> {
        self.current.push_str(run);
        self.check_len()
    }

    fn check_len(&self) -> Result<(), SqlError> {
        if let Some(limit) = self.max_len
            && self.current.len() > limit
        {
            return Err(SqlError::StatementTooLong {
                start: self.current.chars().take(60).collect(),
                limit,
            });
        }
        Ok(())
    }

    /// Appends a significant character to the current statement.
    fn keep(&mut self, c: char) -> Result<(), SqlError> {
        self.current.push(c);
        self.check_len()
    }

    fn step(&mut self, c: char, on_statement: &mut dyn FnMut(&str)) -> Result<(), SqlError> {
        match self.state {
            State::Quoted(q) => {
                self.keep(c)?;
                if c == q {
                    self.state = if q == ']' {
                        State::Normal
                    } else {
                        State::QuoteEnd(q)
                    };
                }
                Ok(())
            }
            State::QuoteEnd(q) => {
                if c == q {
                    self.keep(c)?;
                    self.state = State::Quoted(q);
                    Ok(())
                } else {
                    // Anything after the closing quote is ordinary text, a comment start included.
                    self.state = State::Normal;
                    self.step(c, on_statement)
                }
            }
            State::LineComment => {
                if c == '\n' {
                    self.state = State::Normal;
                    self.normal(c, on_statement)?;
                } else if !self.current.is_empty() {
                    self.keep(c)?;
                }
                Ok(())
            }
            State::BlockComment | State::BlockCommentStar => {
                if !self.current.is_empty() {
                    self.keep(c)?;
                }
                self.state = match (self.state, c) {
                    (State::BlockCommentStar, '/') => State::Normal,
                    (_, '*') => State::BlockCommentStar,
                    _ => State::BlockComment,
                };
                Ok(())
            }
            State::Dash => {
                if c == '-' {
                    self.end_word();
                    if !self.current.is_empty() {
                        self.keep('-')?;
                        self.keep('-')?;
                    }
                    self.state = State::LineComment;
                    Ok(())
                } else {
                    self.state = State::Normal;
                    self.normal('-', on_statement)?;
                    self.step(c, on_statement)
                }
            }
            State::Slash => {
                if c == '*' {
                    self.end_word();
                    if !self.current.is_empty() {
                        self.keep('/')?;
                        self.keep('*')?;
                    }
                    self.state = State::BlockComment;
                    Ok(())
                } else {
                    self.state = State::Normal;
                    self.normal('/', on_statement)?;
                    self.step(c, on_statement)
                }
            }
            State::Normal => match c {
                '-' => {
                    self.state = State::Dash;
                    Ok(())
                }
                '/' => {
                    self.state = State::Slash;
                    Ok(())
                }
                _ => self.normal(c, on_statement),
            },
        }
    }

    /// Handles a character of ordinary SQL text (not a possible comment start).
    fn normal(&mut self, c: char, on_statement: &mut dyn FnMut(&str)) -> Result<(), SqlError> {
        // `sqlite3_complete()`'s identifier characters: ASCII letters, digits, `_`, `$`, and every non-ASCII character.
        let is_word_char = c.is_ascii_alphanumeric() || c == '_' || c == '$' || !c.is_ascii();
        if is_word_char {
            if !self.in_word {
                self.in_word = true;
                self.word = Some(String::new());
            }
            if let Some(word) = &mut self.word {
                if word.len() < MAX_KEYWORD_LEN {
                    word.push(c.to_ascii_uppercase());
                } else {
                    self.word = None;
                }
            }
            return self.keep(c);
        }
        self.end_word();
        match c {
            '\'' | '"' | '`' => {
                self.phase = self.phase.after(Token::Other);
                self.state = State::Quoted(c);
                self.keep(c)
            }
            '[' => {
                self.phase = self.phase.after(Token::Other);
                self.state = State::Quoted(']');
                self.keep(c)
            }
            ';' => match self.phase {
                // Inside a trigger only `; END ;` ends the statement.
                Phase::Trigger | Phase::Semi => {
                    self.phase = Phase::Semi;
                    self.keep(c)
                }
                Phase::Start | Phase::Normal | Phase::Explain | Phase::Create | Phase::End => {
                    if !self.current.is_empty() {
                        self.keep(c)?;
                        on_statement(&self.current);
                    }
                    self.current.clear();
                    self.phase = Phase::Start;
                    Ok(())
                }
            },
            // `sqlite3_complete()`'s whitespace; any other character (`\v` included) is a token of its own.
            ' ' | '\t' | '\n' | '\r' | '\x0c' => {
                if self.current.is_empty() {
                    Ok(())
                } else {
                    self.keep(c)
                }
            }
            c => {
                self.phase = self.phase.after(Token::Other);
                self.keep(c)
            }
        }
    }

    /// Finishes the word being read, moving the statement's [`Phase`] on by the token it is.
    fn end_word(&mut self) {
        if !self.in_word {
            return;
        }
        self.in_word = false;
        let word = self.word.take();
        self.phase = self.phase.after(Token::of_word(word.as_deref()));
    }
}

/// Splits `sql` one character at a time through the state machine alone, without the fast paths of
/// [`StatementSplitter::push`]: the reference those fast paths must agree with (unit tests and the fuzz
/// harness compare them).
#[doc(hidden)]
pub fn split_statements_stepwise(sql: &str) -> Result<Vec<String>, SqlError> {
    let mut statements = Vec::new();
    let mut splitter = StatementSplitter::new();
    for c in sql.chars() {
        splitter.step(c, &mut |s| statements.push(s.to_owned()))?;
    }
    statements.extend(splitter.finish()?);
    Ok(statements)
}

/// Splits a whole SQL text already in memory (a migration, a `/query` body) into statements; a trailing
/// statement without `;` is included as is.
pub fn split_statements(sql: &str) -> Result<Vec<String>, SqlError> {
    let mut statements = Vec::new();
    let mut splitter = StatementSplitter::new();
    splitter.push(sql.as_bytes(), &mut |s| statements.push(s.to_owned()))?;
    if let Some(rest) = splitter.finish()? {
        statements.push(rest);
    }
    Ok(statements)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(sql: &str) -> Vec<String> {
        split_statements(sql).unwrap()
    }

    #[test]
    fn splits_simple_statements_and_trims_leading_whitespace() {
        // Proves statements keep their `;`, lose leading whitespace, and empty statements vanish.
        assert_eq!(
            split("SELECT 1;\n\n  SELECT 2 ;;\nSELECT 3"),
            vec!["SELECT 1;", "SELECT 2 ;", "SELECT 3"]
        );
    }

    #[test]
    fn semicolons_in_strings_identifiers_and_comments_do_not_split() {
        // Proves quotes of every kind, escaped quotes and comments hide semicolons.
        let sql = "INSERT INTO t VALUES('a;b''c;');\n-- a comment; with semicolon\nSELECT \"x;y\", `p;q`, [r;s] /* c;d */ FROM t;";
        assert_eq!(
            split(sql),
            vec![
                "INSERT INTO t VALUES('a;b''c;');",
                "SELECT \"x;y\", `p;q`, [r;s] /* c;d */ FROM t;"
            ]
        );
    }

    #[test]
    fn leading_comments_are_dropped_and_trailing_comments_are_not_a_statement() {
        // Proves comments between statements belong to no statement and `finish` ignores them.
        let mut out = Vec::new();
        let mut s = StatementSplitter::new();
        s.push(
            b"/* head; */ -- x;\nSELECT 1; -- tail;\n/* end */ ",
            &mut |st| out.push(st.to_owned()),
        )
        .unwrap();
        assert_eq!(out, vec!["SELECT 1;"]);
        assert_eq!(s.finish().unwrap(), None);
    }

    #[test]
    fn trigger_bodies_keep_their_semicolons() {
        // Proves `CREATE TRIGGER ... BEGIN ...; ...; END;` (with CASE ... END inside) is one statement.
        let trigger = "CREATE TEMP TRIGGER IF NOT EXISTS \"trg\" AFTER INSERT ON t BEGIN\n  UPDATE t SET x = CASE WHEN new.y > 0 THEN 1 ELSE 2 END;\n  DELETE FROM u WHERE 'END;' = 'x';\nEND;";
        let sql = format!("BEGIN TRANSACTION;\n{trigger}\nSELECT CASE WHEN 1 THEN 2 END;\nCOMMIT;");
        assert_eq!(
            split(&sql),
            vec![
                "BEGIN TRANSACTION;".to_owned(),
                trigger.to_owned(),
                "SELECT CASE WHEN 1 THEN 2 END;".to_owned(),
                "COMMIT;".to_owned()
            ]
        );
    }

    #[test]
    fn keywords_used_as_names_do_not_move_statement_boundaries() {
        // Proves the cases of issue 14: a trigger body setting a column named `end`, a WHEN clause on a
        // column named `begin`, CASE ... END, and `END` inside quotes or comments, split as SQLite does.
        let statements = [
            "CREATE TABLE ev (id INTEGER PRIMARY KEY, begin INT, start INT, end INT, CHECK (end >= start));",
            "CREATE TRIGGER ev_end AFTER INSERT ON ev BEGIN UPDATE ev SET end = NEW.start + 1 WHERE id = NEW.id; END;",
            "CREATE TRIGGER ev_begin AFTER UPDATE ON ev WHEN NEW.begin > 0 BEGIN SELECT CASE WHEN NEW.end THEN 1 END; END;",
            "CREATE TEMP TRIGGER t3 BEFORE DELETE ON ev BEGIN SELECT 'END;'; DELETE FROM ev WHERE \"end\" = 1; END /* ; */ ;",
            "EXPLAIN CREATE TRIGGER t4 AFTER INSERT ON ev BEGIN SELECT 1; END;",
            "CREATE TRIGGER t5 AFTER INSERT ON ev BEGIN SELECT 1; -- END;\n SELECT end FROM ev; END\n;",
            "CREATE VIEW v AS SELECT begin, end, CASE WHEN end > begin THEN 'a;b' END AS e FROM ev;",
            "SELECT begin FROM ev;",
            "END;",
        ];
        let sql = statements.join("\n");
        assert_eq!(split(&sql), statements);
        assert_eq!(split_statements_stepwise(&sql).unwrap(), statements);
        let (sqlite, stopped) = crate::split_statements_by_sqlite(&sql);
        assert_eq!(stopped, None);
        assert_eq!(sqlite, statements);
    }

    /// A generator of scripts SQLite accepts, full of the words and shapes that decide statement
    /// boundaries: columns and names spelt like keywords, triggers with WHEN clauses and CASE ... END,
    /// views, CHECK constraints, quotes that hold `;` and `END`, comments everywhere between tokens.
    struct Scripts {
        rng: rand::rngs::StdRng,
        counter: usize,
    }

    impl Scripts {
        /// Whitespace or a comment, put between any two tokens.
        fn gap(&mut self) -> &'static str {
            use rand::Rng;
            const GAPS: &[&str] = &[
                "\n",
                "\t",
                "  ",
                "/* ; END; */",
                " -- ; END;x\n",
                "\r\n",
                "/**/",
                " /* end */\n",
                " --\n",
            ];
            if self.rng.random_bool(0.75) {
                " "
            } else {
                GAPS[self.rng.random_range(0..GAPS.len())]
            }
        }

        /// `template`'s space-separated tokens, joined by random gaps, bare words in random case.
        fn render(&mut self, template: &str) -> String {
            use rand::Rng;
            let mut out = String::new();
            for (i, token) in template.split(' ').enumerate() {
                if i > 0 {
                    let gap = self.gap();
                    out.push_str(gap);
                }
                if token.chars().all(|c| c.is_ascii_alphabetic()) {
                    for c in token.chars() {
                        out.push(if self.rng.random_bool(0.5) {
                            c.to_ascii_uppercase()
                        } else {
                            c.to_ascii_lowercase()
                        });
                    }
                } else {
                    out.push_str(token);
                }
            }
            out
        }

        fn pick<'a>(&mut self, items: &'a [String]) -> &'a str {
            use rand::Rng;
            &items[self.rng.random_range(0..items.len())]
        }

        fn script(&mut self) -> String {
            use rand::Rng;
            const TABLE_NAMES: &[&str] = &[
                "ev",
                "end",
                "begin",
                "\"case\"",
                "[create]",
                "`trigger`",
                "\"explain\"",
                "\"temp\"",
            ];
            const TRIGGER_NAMES: &[&str] =
                &["trg", "\"end\"", "[begin]", "`case`", "trigger", "temp"];
            let mut tables: Vec<String> = Vec::new();
            let mut views: Vec<String> = Vec::new();
            let mut parts: Vec<String> = Vec::new();
            if self.rng.random_bool(0.5) {
                parts.push("PRAGMA defer_foreign_keys=TRUE;".to_owned());
            }
            for _ in 0..self.rng.random_range(1..4) {
                self.counter += 1;
                let base = TABLE_NAMES[self.rng.random_range(0..TABLE_NAMES.len())];
                let name = if tables.is_empty() && self.counter.is_multiple_of(3) {
                    base.to_owned()
                } else {
                    suffixed(base, self.counter)
                };
                let autoincrement = if self.rng.random_bool(0.3) {
                    "AUTOINCREMENT"
                } else {
                    ""
                };
                parts.push(self.render(&format!(
                    "CREATE TABLE {name} ( id INTEGER PRIMARY KEY {autoincrement} , begin INT , end INT \
                     CHECK ( end >= begin OR end IS NULL ) , \"case\" TEXT DEFAULT 'it''s;END;' , [create] TEXT , \
                     `trigger` INT , temp INT , explain TEXT , \"when\" TEXT , CHECK ( \"case\" <> 'END' ) ) ;"
                )));
                tables.push(name);
            }
            for _ in 0..self.rng.random_range(3..12) {
                self.counter += 1;
                let n = self.counter;
                let t = self.pick(&tables).to_owned();
                let u = self.pick(&tables).to_owned();
                let trg = suffixed(
                    TRIGGER_NAMES[self.rng.random_range(0..TRIGGER_NAMES.len())],
                    n,
                );
                let template = match self.rng.random_range(0..16) {
                    0 => format!(
                        "CREATE TRIGGER {trg} AFTER INSERT ON {t} BEGIN UPDATE {t} SET end = NEW.begin + 1 \
                         WHERE id = NEW.id ; END ;"
                    ),
                    1 => format!(
                        "CREATE TEMP TRIGGER {trg} BEFORE UPDATE OF end ON {t} WHEN NEW.begin > 0 BEGIN SELECT \
                         CASE WHEN NEW.end > 0 THEN 1 ELSE 0 END ; INSERT INTO {u} ( begin , end , \"case\" ) \
                         VALUES ( NEW.begin , CASE NEW.end WHEN 1 THEN 2 END , 'x;END;' ) ; END ;"
                    ),
                    2 => format!(
                        "CREATE TEMPORARY TRIGGER IF NOT EXISTS {trg} AFTER DELETE ON {t} FOR EACH ROW WHEN \
                         CASE OLD.end WHEN 1 THEN 1 ELSE 0 END BEGIN DELETE FROM {u} WHERE end = OLD.begin ; \
                         UPDATE {u} SET temp = 1 , trigger = 2 , explain = 'end' WHERE begin IN ( SELECT end \
                         FROM {t} ) ; END ;"
                    ),
                    3 => format!(
                        "CREATE TRIGGER {trg} BEFORE INSERT ON {t} BEGIN UPDATE {u} SET begin = begin + 1 , \
                         end = end - 1 WHERE begin < end ; SELECT begin , end , [create] FROM {u} ; END ;"
                    ),
                    4 if !views.is_empty() => {
                        let v = self.pick(&views).to_owned();
                        format!(
                            "CREATE TRIGGER {trg} INSTEAD OF INSERT ON {v} BEGIN INSERT INTO {t} ( begin , end ) \
                             VALUES ( NEW.b , NEW.e ) ; END ;"
                        )
                    }
                    4 | 5 => {
                        let v = format!("\"view{n}\"");
                        views.push(v.clone());
                        format!(
                            "CREATE VIEW {v} ( b , e , c ) AS SELECT begin , end , CASE WHEN end > begin THEN \
                             'a;b' ELSE \"case\" END FROM {t} WHERE explain IS NOT 'END;' ;"
                        )
                    }
                    6 => format!(
                        "INSERT INTO {t} ( begin , end , \"case\" , [create] ) VALUES ( 1 , 2 , \
                         'it''s;END;CREATE' , \"end\" ) ;"
                    ),
                    7 => format!("UPDATE {t} SET end = end + 1 , begin = 0 WHERE temp IS NULL ;"),
                    8 => format!(
                        "SELECT begin , end , [create] FROM {t} WHERE \"when\" = 'then;end' ;"
                    ),
                    9 => format!("EXPLAIN SELECT * FROM {t} ;"),
                    10 => format!("EXPLAIN QUERY PLAN SELECT end FROM {t} WHERE begin = 1 ;"),
                    11 => format!("CREATE INDEX \"ix{n}\" ON {t} ( end , begin ) WHERE end > 0 ;"),
                    12 => ";".to_owned(),
                    13 => "BEGIN ; END ;".to_owned(),
                    14 => format!(
                        "CREATE TRIGGER {trg} AFTER UPDATE ON {t} WHEN NEW.end IS NOT OLD.end AND CASE WHEN \
                         NEW.begin THEN 1 END BEGIN SELECT RAISE ( IGNORE ) WHERE NEW.end = 'END;' ; END ;"
                    ),
                    _ => format!("DELETE FROM {t} WHERE end IN ( SELECT begin FROM {u} ) ;"),
                };
                parts.push(self.render(&template));
            }
            let mut script = String::new();
            for part in parts {
                let gap = self.gap();
                script.push_str(&part);
                script.push_str(gap);
            }
            script
        }
    }

    /// `name` with `n` appended inside its quotes (a fresh name spelt like the keyword).
    fn suffixed(name: &str, n: usize) -> String {
        match name.chars().next() {
            Some(q @ ('"' | '`' | '[')) => {
                let inner = &name[1..name.len() - 1];
                let close = if q == '[' { ']' } else { q };
                format!("{q}{inner}{n}{close}")
            }
            _ => format!("{name}{n}"),
        }
    }

    #[test]
    fn statements_are_the_ones_sqlite_reads_in_generated_scripts() {
        // Proves, against SQLite itself (prepare and tail, through rusqlite's Batch), that the splitter
        // cuts every generated script exactly where SQLite does, and that no prefix ending at a `;`
        // inside a statement is complete for either of them.
        use rand::SeedableRng;
        let mut scripts = Scripts {
            rng: rand::rngs::StdRng::seed_from_u64(14),
            counter: 0,
        };
        for _ in 0..100 {
            let script = scripts.script();
            let ours = split(&script);
            let (sqlite, stopped) = crate::split_statements_by_sqlite(&script);
            assert_eq!(
                stopped, None,
                "SQLite refused a generated script:\n{script}"
            );
            assert_eq!(ours, sqlite, "split differently from SQLite:\n{script}");
            assert_eq!(split_statements_stepwise(&script).unwrap(), ours);
            // No `;` inside a statement ends it, for SQLite or for the splitter: cut there and followed by
            // text that closes any comment and is no token (`@` alone), SQLite reads only the statements
            // before it. (Without that text SQLite would end a statement at the end of the input, inside
            // a comment.)
            let mut at = 0;
            for (index, statement) in ours.iter().enumerate() {
                let start = at + script[at..].find(statement.as_str()).unwrap();
                at = start + statement.len();
                for (offset, _) in statement[..statement.len() - 1].match_indices(';') {
                    let cut = format!("{}\n*/ @", &script[..start + offset + 1]);
                    let (sqlite, stopped) = crate::split_statements_by_sqlite(&cut);
                    assert_eq!(sqlite.len(), index, "SQLite: {cut}");
                    assert!(
                        stopped.is_some(),
                        "SQLite took an incomplete statement: {cut}"
                    );
                    let mut complete = 0;
                    StatementSplitter::new()
                        .push(cut.as_bytes(), &mut |_| complete += 1)
                        .unwrap();
                    assert_eq!(complete, index, "splitter: {cut}");
                }
            }
        }
    }

    #[test]
    fn operators_that_look_like_comment_starts_are_kept() {
        // Proves a lone `-` or `/` is ordinary text, including at the very end of the input.
        assert_eq!(
            split("SELECT 4-2, 4/2;SELECT -1"),
            vec!["SELECT 4-2, 4/2;", "SELECT -1"]
        );
        assert_eq!(split("SELECT 1 -"), vec!["SELECT 1 -"]);
    }

    #[test]
    fn every_chunk_boundary_gives_the_same_statements() {
        // Proves state survives chunk boundaries at every byte offset, including inside UTF-8 characters.
        let sql = "CREATE TABLE \"t;\" (a TEXT); -- c;\nINSERT INTO \"t;\" VALUES('é😀;''x');/* ; */\nCREATE TRIGGER tr AFTER INSERT ON \"t;\" BEGIN SELECT CASE 1 WHEN 1 THEN 'a;' END; END;\nSELECT [a;b], `c;d` FROM x; SELECT 1";
        let expected = split(sql);
        assert_eq!(expected.len(), 5);
        let bytes = sql.as_bytes();
        for cut in 0..=bytes.len() {
            for cut2 in cut..=bytes.len().min(cut + 3) {
                let mut out = Vec::new();
                let mut s = StatementSplitter::new();
                for part in [&bytes[..cut], &bytes[cut..cut2], &bytes[cut2..]] {
                    s.push(part, &mut |st| out.push(st.to_owned())).unwrap();
                }
                if let Some(rest) = s.finish().unwrap() {
                    out.push(rest);
                }
                assert_eq!(out, expected, "cut at {cut}/{cut2}");
            }
        }
    }

    #[test]
    fn copying_inert_runs_gives_what_stepping_every_character_gives() {
        // Proves the fast path (runs inside quotes and plain statements copied whole) splits exactly as the
        // character-by-character state machine does, on text that exercises every state.
        let sql = "PRAGMA defer_foreign_keys=TRUE;\nCREATE TABLE \"a;b\" (x TEXT, [y;z] INT, `q` BLOB);\n\
            INSERT INTO \"a;b\" VALUES('it''s; -- not /* a */ comment',[1;2],X'00ff', 4-2, 8/2, -1);\n\
            INSERT INTO t VALUES(1) -- trailing; comment\n; /* lead; */ INSERT INTO t VALUES('é😀;');\n\
            CREATE TRIGGER tr AFTER INSERT ON t BEGIN UPDATE t SET x = CASE WHEN 1 THEN ';' END; END;\n\
            CREATE TEMP VIEW v AS SELECT \"x\"\"y\" FROM t;\n\
            CREATE TRIGGER tq AFTER DELETE ON t BEGIN SELECT 'a'-- b; END;\n'/*'; END; SELECT 1";
        let stepped = split_statements_stepwise(sql).unwrap();
        assert_eq!(stepped.len(), 9, "{stepped:#?}");
        assert_eq!(split(sql), stepped);
    }

    #[test]
    fn one_byte_at_a_time_works() {
        // Proves the splitter copes with the smallest possible chunks.
        let sql = "SELECT '日本;語'; SELECT 2;";
        let mut out = Vec::new();
        let mut s = StatementSplitter::new();
        for b in sql.as_bytes() {
            s.push(std::slice::from_ref(b), &mut |st| out.push(st.to_owned()))
                .unwrap();
        }
        assert_eq!(out, vec!["SELECT '日本;語';", "SELECT 2;"]);
    }

    #[test]
    fn invalid_utf8_is_an_error_with_its_offset() {
        // Proves invalid bytes are refused, whether inside a chunk or split across chunks.
        let mut s = StatementSplitter::new();
        let err = s
            .push(b"SELECT 1; SELECT '\xff';", &mut |_| {})
            .unwrap_err();
        assert_eq!(err, SqlError::InvalidUtf8 { offset: 18 });

        let mut s = StatementSplitter::new();
        s.push(b"SELECT '\xe6", &mut |_| {}).unwrap();
        let err = s.push(b"A'", &mut |_| {}).unwrap_err();
        assert_eq!(err, SqlError::InvalidUtf8 { offset: 8 });

        let mut s = StatementSplitter::new();
        s.push(b"SELECT '\xe6\x97", &mut |_| {}).unwrap();
        assert!(matches!(s.finish(), Err(SqlError::InvalidUtf8 { .. })));
    }

    #[test]
    fn unterminated_string_is_an_error_and_incomplete_statement_is_returned() {
        // Proves `finish` reports an open string, and returns trailing text without `;`.
        let mut s = StatementSplitter::new();
        s.push(b"SELECT 'abc", &mut |_| {}).unwrap();
        assert_eq!(s.finish(), Err(SqlError::Unterminated { what: "string" }));

        let mut s = StatementSplitter::new();
        s.push(b"SELECT 1;\n  INSERT INTO t VALUES(1)\n", &mut |_| {})
            .unwrap();
        assert_eq!(
            s.finish().unwrap().as_deref(),
            Some("INSERT INTO t VALUES(1)\n")
        );
    }

    #[test]
    fn statement_length_limit_is_enforced() {
        // Proves the optional limit bounds a statement's size.
        let mut s = StatementSplitter::with_max_len(20);
        s.push(b"SELECT 1;", &mut |_| {}).unwrap();
        let err = s
            .push(b"SELECT 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa';", &mut |_| {})
            .unwrap_err();
        assert!(matches!(err, SqlError::StatementTooLong { limit: 20, .. }));
    }
}

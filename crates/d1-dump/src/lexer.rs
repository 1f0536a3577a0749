//! A small SQLite tokenizer for one statement, enough to classify statements, parse dump INSERTs and list a
//! statement's names ([`words`]).

/// One SQL token; whitespace and comments are skipped.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Token {
    /// A bare word: keyword or unquoted identifier.
    Word(String),
    /// A quoted identifier (`"..."`, `` `...` `` or `[...]`), unquoted.
    Ident(String),
    /// A `'...'` string literal, unquoted.
    Str(String),
    /// An `X'..'` blob literal.
    Blob(Vec<u8>),
    /// A numeric literal as written.
    Number(String),
    /// `||`.
    Concat,
    /// Any other single character.
    Punct(char),
}

impl Token {
    /// Whether this token is the bare keyword `kw` (case-insensitive).
    pub(crate) fn is_kw(&self, kw: &str) -> bool {
        matches!(self, Token::Word(w) if w.eq_ignore_ascii_case(kw))
    }

    /// The name this token spells when used as an identifier (bare, quoted, or a string used as a name).
    pub(crate) fn name(&self) -> Option<&str> {
        match self {
            Token::Word(w) | Token::Ident(w) | Token::Str(w) => Some(w),
            _ => None,
        }
    }
}

/// Reads the tokens of one statement; cloning it gives a cheap look-ahead.
#[derive(Debug, Clone)]
pub(crate) struct Lexer<'a> {
    rest: &'a str,
}

impl<'a> Lexer<'a> {
    pub(crate) fn new(sql: &'a str) -> Self {
        Lexer { rest: sql }
    }

    fn skip_space_and_comments(&mut self) {
        loop {
            let trimmed = self.rest.trim_start();
            if let Some(after) = trimmed.strip_prefix("--") {
                self.rest = after.find('\n').map_or("", |i| &after[i + 1..]);
            } else if let Some(after) = trimmed.strip_prefix("/*") {
                self.rest = after.find("*/").map_or("", |i| &after[i + 2..]);
            } else {
                self.rest = trimmed;
                return;
            }
        }
    }

    /// Reads a quoted token body that ends at `close`, with doubled `close` as an escape when `doubled`.
    fn quoted(&mut self, close: char, doubled: bool) -> Option<String> {
        let mut out = String::new();
        let mut chars = self.rest.char_indices();
        while let Some((i, c)) = chars.next() {
            if c == close {
                let after = &self.rest[i + c.len_utf8()..];
                if doubled && after.starts_with(close) {
                    out.push(close);
                    chars.next();
                    continue;
                }
                self.rest = after;
                return Some(out);
            }
            out.push(c);
        }
        None
    }

    /// The next token, `Ok(None)` at the end, `Err(())` on malformed input.
    pub(crate) fn next_token(&mut self) -> Result<Option<Token>, ()> {
        self.skip_space_and_comments();
        let mut chars = self.rest.chars();
        let Some(c) = chars.next() else {
            return Ok(None);
        };
        let after_first = &self.rest[c.len_utf8()..];
        match c {
            '\'' => {
                self.rest = after_first;
                self.quoted('\'', true).map(Token::Str).map(Some).ok_or(())
            }
            '"' | '`' => {
                self.rest = after_first;
                self.quoted(c, true).map(Token::Ident).map(Some).ok_or(())
            }
            '[' => {
                self.rest = after_first;
                self.quoted(']', false)
                    .map(Token::Ident)
                    .map(Some)
                    .ok_or(())
            }
            'x' | 'X' if after_first.starts_with('\'') => {
                self.rest = &after_first[1..];
                let hex_text = self.quoted('\'', false).ok_or(())?;
                hex::decode(hex_text)
                    .map(|b| Some(Token::Blob(b)))
                    .map_err(|_| ())
            }
            '|' if after_first.starts_with('|') => {
                self.rest = &after_first[1..];
                Ok(Some(Token::Concat))
            }
            c if c.is_ascii_digit()
                || (c == '.' && after_first.starts_with(|d: char| d.is_ascii_digit())) =>
            {
                let bytes = self.rest.as_bytes();
                let mut end = 0;
                let is_hex =
                    bytes.len() > 1 && bytes[0] == b'0' && (bytes[1] == b'x' || bytes[1] == b'X');
                if is_hex {
                    end = 2;
                    while end < bytes.len() && bytes[end].is_ascii_hexdigit() {
                        end += 1;
                    }
                } else {
                    while end < bytes.len() && (bytes[end].is_ascii_digit() || bytes[end] == b'.') {
                        end += 1;
                    }
                    if end < bytes.len() && (bytes[end] == b'e' || bytes[end] == b'E') {
                        let mut exp = end + 1;
                        if exp < bytes.len() && (bytes[exp] == b'+' || bytes[exp] == b'-') {
                            exp += 1;
                        }
                        if exp < bytes.len() && bytes[exp].is_ascii_digit() {
                            while exp < bytes.len() && bytes[exp].is_ascii_digit() {
                                exp += 1;
                            }
                            end = exp;
                        }
                    }
                }
                let (number, rest) = self.rest.split_at(end);
                self.rest = rest;
                Ok(Some(Token::Number(number.to_owned())))
            }
            c if c.is_alphanumeric() || c == '_' || c == '$' || !c.is_ascii() => {
                let end = self
                    .rest
                    .find(|c: char| {
                        !(c.is_alphanumeric()
                            || c == '_'
                            || c == '$'
                            || (!c.is_ascii() && !c.is_whitespace()))
                    })
                    .unwrap_or(self.rest.len());
                let (word, rest) = self.rest.split_at(end);
                self.rest = rest;
                Ok(Some(Token::Word(word.to_owned())))
            }
            c => {
                self.rest = after_first;
                Ok(Some(Token::Punct(c)))
            }
        }
    }

    /// The next token, treating malformed input and the end alike as `None`.
    pub(crate) fn next_opt(&mut self) -> Option<Token> {
        self.next_token().ok().flatten()
    }
}

/// The keywords and names of a statement in order (quoted identifiers unquoted); string literals, numbers
/// and punctuation are left out. Used to spot forbidden names such as D1's reserved `_cf_` prefix.
pub fn words(stmt: &str) -> Vec<String> {
    let mut lexer = Lexer::new(stmt);
    let mut out = Vec::new();
    while let Ok(Some(token)) = lexer.next_token() {
        if let Token::Word(w) | Token::Ident(w) = token {
            out.push(w);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::words;

    #[test]
    fn words_skip_strings_and_unquote_names() {
        // Proves names are found in every quoting style and string contents are ignored.
        assert_eq!(
            words("SELECT \"_cf_x\", [a b] FROM main.t WHERE c = '_cf_no' -- _cf_comment"),
            vec!["SELECT", "_cf_x", "a b", "FROM", "main", "t", "WHERE", "c"]
        );
    }
}

//! Shell-style globs over database names, as `[[fleet]]`'s `match` and `exclude` take them (CONTRACT.md
//! "Configuration"): `*` any run of characters, `?` one character, `[a-z]`/`[abc]` one character of a
//! set, `[!a-z]` (or `[^a-z]`) one character outside it. Nothing else is special: D1 names hold only
//! letters, digits, `_` and `-`. A pattern is checked once, when the configuration is loaded.

use std::fmt;

/// A parsed glob. Matching is linear in practice (one backtracking point per `*`, the classic
/// wildcard algorithm), so a fleet's pattern costs next to nothing per listed database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    text: String,
    tokens: Vec<Token>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Literal(char),
    AnyOne,
    AnyRun,
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

impl Token {
    fn matches_one(&self, c: char) -> bool {
        match self {
            Token::Literal(l) => *l == c,
            Token::AnyOne => true,
            Token::AnyRun => false,
            Token::Class { negated, ranges } => {
                ranges.iter().any(|(lo, hi)| (*lo..=*hi).contains(&c)) != *negated
            }
        }
    }
}

impl Glob {
    /// Parses `text`; the error says what is wrong with it (an empty pattern, an unclosed or empty
    /// `[...]`, a reversed range).
    pub fn parse(text: &str) -> Result<Glob, String> {
        if text.is_empty() {
            return Err("an empty pattern matches nothing; write e.g. \"tenant-*\"".into());
        }
        let mut tokens = Vec::new();
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '*' => {
                    if tokens.last() != Some(&Token::AnyRun) {
                        tokens.push(Token::AnyRun);
                    }
                }
                '?' => tokens.push(Token::AnyOne),
                '[' => {
                    let negated = matches!(chars.peek(), Some('!' | '^'));
                    if negated {
                        chars.next();
                    }
                    let mut ranges = Vec::new();
                    let mut closed = false;
                    while let Some(c) = chars.next() {
                        if c == ']' {
                            closed = true;
                            break;
                        }
                        let mut hi = c;
                        if chars.peek() == Some(&'-') {
                            let mut ahead = chars.clone();
                            ahead.next();
                            if let Some(&end) = ahead.peek()
                                && end != ']'
                            {
                                chars.next();
                                chars.next();
                                hi = end;
                            }
                        }
                        if hi < c {
                            return Err(format!(
                                "{text:?}: the range [{c}-{hi}] is reversed; write [{hi}-{c}]"
                            ));
                        }
                        ranges.push((c, hi));
                    }
                    if !closed {
                        return Err(format!("{text:?}: `[` is never closed by `]`"));
                    }
                    if ranges.is_empty() {
                        return Err(format!(
                            "{text:?}: `[]` is an empty set and matches nothing"
                        ));
                    }
                    tokens.push(Token::Class { negated, ranges });
                }
                c => tokens.push(Token::Literal(c)),
            }
        }
        Ok(Glob {
            text: text.to_string(),
            tokens,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the whole of `name` fits the pattern.
    pub fn matches(&self, name: &str) -> bool {
        let name: Vec<char> = name.chars().collect();
        let tokens = &self.tokens;
        let (mut t, mut n) = (0, 0);
        // After a `*`: the token after it, and the name position the `*` currently stops at.
        let mut star: Option<(usize, usize)> = None;
        while n < name.len() {
            match tokens.get(t) {
                Some(Token::AnyRun) => {
                    star = Some((t + 1, n));
                    t += 1;
                    continue;
                }
                Some(token) if token.matches_one(name[n]) => {
                    t += 1;
                    n += 1;
                    continue;
                }
                _ => {}
            }
            match star {
                // Let the last `*` swallow one more character and try again from there.
                Some((after, at)) => {
                    star = Some((after, at + 1));
                    t = after;
                    n = at + 1;
                }
                None => return false,
            }
        }
        tokens[t..].iter().all(|token| *token == Token::AnyRun)
    }
}

impl fmt::Display for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pattern: &str, name: &str) -> bool {
        Glob::parse(pattern).unwrap().matches(name)
    }

    #[test]
    fn stars_and_question_marks_match_runs_and_single_characters() {
        // Proves `*` matches any run (also empty, also in the middle, with backtracking) and `?` exactly one.
        assert!(m("tenant-*", "tenant-a"));
        assert!(m("tenant-*", "tenant-"));
        assert!(!m("tenant-*", "tenant"));
        assert!(!m("tenant-*", "xtenant-a"));
        assert!(m("*-prod", "eu-shop-prod"));
        assert!(!m("*-prod", "eu-shop-prod2"));
        assert!(m("a*b*c", "aXbYbZc"));
        assert!(!m("a*b*c", "aXbYbZ"));
        assert!(m("t?-*", "t1-x"));
        assert!(!m("t?-*", "t12-x"));
        assert!(m("*", ""));
        assert!(m("blog", "blog") && !m("blog", "blog2") && !m("blog", "blo"));
    }

    #[test]
    fn classes_match_sets_ranges_and_their_complement() {
        // Proves `[a-z]`, `[abc]`, `[!...]`/`[^...]` and a literal `-` at the end of a class.
        assert!(m("shard-[0-9]", "shard-7"));
        assert!(!m("shard-[0-9]", "shard-x"));
        assert!(m("[abc]-db", "b-db") && !m("[abc]-db", "d-db"));
        assert!(m("[!a-c]*", "dog") && !m("[!a-c]*", "cat"));
        assert!(m("[^a-c]*", "dog") && !m("[^a-c]*", "bat"));
        assert!(m("x[_-]y", "x-y") && m("x[_-]y", "x_y") && !m("x[_-]y", "xay"));
    }

    #[test]
    fn malformed_patterns_are_refused_with_a_reason() {
        // Proves a pattern that could only be a mistake is an error saying what is wrong.
        assert!(Glob::parse("").unwrap_err().contains("empty"));
        assert!(
            Glob::parse("tenant-[a")
                .unwrap_err()
                .contains("never closed")
        );
        assert!(Glob::parse("t[]").unwrap_err().contains("empty set"));
        assert!(Glob::parse("t[z-a]").unwrap_err().contains("reversed"));
        assert_eq!(Glob::parse("a**b").unwrap().as_str(), "a**b");
    }
}

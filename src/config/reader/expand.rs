//! `${VAR}` expansion in configuration strings. Kept apart from the other readers so that the rules (what is a
//! variable, how `$` is escaped) live in one small place with their own tests.

/// One problem found while expanding a string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Problem {
    /// What is wrong, naming the variable but never quoting the string.
    pub(super) message: String,
    /// The problem is the environment's (a variable that is not set), not the file's: a `[cloudflare]`
    /// secret with this problem leaves the section unavailable instead of failing the whole file.
    pub(super) unset: bool,
}

impl Problem {
    fn syntax(message: &str) -> Self {
        Problem {
            message: message.to_string(),
            unset: false,
        }
    }
}

/// Expands every `${NAME}` in `raw` from `env`; `$$` is a literal `$`, and a `$` followed by anything else
/// stays as written. On failure returns one problem each. Messages name variables but never quote
/// the string itself, which may be a secret.
pub(super) fn expand(
    raw: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<String, Vec<Problem>> {
    if !raw.contains('$') {
        return Ok(raw.to_string());
    }
    let mut out = String::with_capacity(raw.len());
    let mut problems = Vec::new();
    let mut rest = raw;
    while let Some(dollar) = rest.find('$') {
        out.push_str(&rest[..dollar]);
        let after = &rest[dollar + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(tail) = after.strip_prefix('{') {
            let Some(close) = tail.find('}') else {
                problems.push(Problem::syntax(
                    "unterminated `${`: close it with `}`, or write `$$` for a literal `$`",
                ));
                return Err(problems);
            };
            let name = &tail[..close];
            if is_variable_name(name) {
                match env(name) {
                    Some(value) => out.push_str(&value),
                    None => problems.push(Problem {
                        message: format!("environment variable {name} is not set"),
                        unset: true,
                    }),
                }
            } else {
                // The text between the braces is not quoted: in a secret it could be the secret itself.
                problems.push(Problem::syntax(
                    "invalid variable name inside `${...}`: use letters, digits and `_` (not starting \
                     with a digit), or write `$$` for a literal `$`",
                ));
            }
            rest = &tail[close + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems)
    }
}

/// Shell-style variable names: `[A-Za-z_][A-Za-z0-9_]*`.
fn is_variable_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOME" => Some("/home/x".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn expands_variables_and_escapes() {
        // Proves variables expand, `$$` is a literal dollar and a lone `$` is kept.
        assert_eq!(expand("${HOME}/a", &env).unwrap(), "/home/x/a");
        assert_eq!(expand("a$$b", &env).unwrap(), "a$b");
        assert_eq!(expand("$$${HOME}", &env).unwrap(), "$/home/x");
        assert_eq!(expand("cost $5", &env).unwrap(), "cost $5");
        assert_eq!(expand("[${EMPTY}]", &env).unwrap(), "[]");
        assert_eq!(expand("trailing $", &env).unwrap(), "trailing $");
    }

    #[test]
    fn reports_every_missing_variable_and_bad_syntax() {
        // Proves each missing variable is named, and malformed references are errors, not literal text.
        let errs = expand("${A}-${B}", &env).unwrap_err();
        let messages: Vec<&str> = errs.iter().map(|p| p.message.as_str()).collect();
        assert_eq!(
            messages,
            vec![
                "environment variable A is not set",
                "environment variable B is not set"
            ]
        );
        assert!(errs.iter().all(|p| p.unset));
        let first = |raw| expand(raw, &env).unwrap_err().remove(0);
        assert!(first("${HOME").message.contains("unterminated"));
        assert!(first("${1X}").message.contains("invalid variable name"));
        assert!(first("${}").message.contains("invalid variable name"));
        assert!(!first("${HOME").unset && !first("${}").unset);
    }
}

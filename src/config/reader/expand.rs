//! `${VAR}` expansion in configuration strings. Kept apart from the other readers so that the rules (what is a
//! variable, how `$` is escaped) live in one small place with their own tests.

/// Expands every `${NAME}` in `raw` from `env`; `$$` is a literal `$`, and a `$` followed by anything else
/// stays as written. On failure returns one message per problem. Messages name variables but never quote
/// the string itself, which may be a secret.
pub(super) fn expand(
    raw: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<String, Vec<String>> {
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
                problems.push(
                    "unterminated `${`: close it with `}`, or write `$$` for a literal `$`"
                        .to_string(),
                );
                return Err(problems);
            };
            let name = &tail[..close];
            if is_variable_name(name) {
                match env(name) {
                    Some(value) => out.push_str(&value),
                    None => problems.push(format!("environment variable {name} is not set")),
                }
            } else {
                // The text between the braces is not quoted: in a secret it could be the secret itself.
                problems.push(
                    "invalid variable name inside `${...}`: use letters, digits and `_` (not starting \
                     with a digit), or write `$$` for a literal `$`"
                        .to_string(),
                );
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
        assert_eq!(
            errs,
            vec![
                "environment variable A is not set".to_string(),
                "environment variable B is not set".to_string()
            ]
        );
        assert!(expand("${HOME", &env).unwrap_err()[0].contains("unterminated"));
        assert!(expand("${1X}", &env).unwrap_err()[0].contains("invalid variable name"));
        assert!(expand("${}", &env).unwrap_err()[0].contains("invalid variable name"));
    }
}

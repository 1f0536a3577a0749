//! Parsing of the human-written quantities in the configuration that no dependency covers: byte sizes
//! such as `"16MiB"`.

/// Parses a byte size: a non-negative integer followed by an optional unit, `B`, `KiB`, `MiB`, `GiB`
/// (powers of 1024) or `KB`, `MB`, `GB` (powers of 1000); units are case-insensitive and may be
/// preceded by a space.
pub(crate) fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits_end);
    let hint = "write a size like \"16MiB\", \"512KiB\" or \"1GiB\"";
    if number.is_empty() {
        return Err(format!("{text:?} is not a size; {hint}"));
    }
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is too large; {hint}"))?;
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        _ => return Err(format!("{text:?} has an unknown unit; {hint}")),
    };
    number
        .checked_mul(multiplier)
        .ok_or_else(|| format!("{text:?} is too large; {hint}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_binary_and_decimal_units() {
        // Proves the units users write for part sizes mean what they say, and junk is rejected.
        assert_eq!(parse_size("16MiB"), Ok(16 * 1024 * 1024));
        assert_eq!(parse_size("5 mib"), Ok(5 * 1024 * 1024));
        assert_eq!(parse_size("1GB"), Ok(1_000_000_000));
        assert_eq!(parse_size("1024"), Ok(1024));
        assert!(parse_size("MiB").is_err());
        assert!(parse_size("16 parsecs").is_err());
        assert!(parse_size("-5MiB").is_err());
        assert!(parse_size("99999999999999999999GiB").is_err());
    }
}

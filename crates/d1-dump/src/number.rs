//! JavaScript's `Number.prototype.toString()` for doubles, which D1's dumper uses for every number.

/// Formats `x` exactly as JavaScript's `String(x)` does: the shortest digits that round-trip, plain
/// notation for decimal exponents from -7 to 20, otherwise `d.ddde+N` / `d.ddde-N`
/// (`3.0` -> `3`, `1e21` -> `1e+21`, `1e-7` -> `1e-7`, `0.1` -> `0.1`).
pub(crate) fn format_js_number(x: f64) -> String {
    if x.is_nan() {
        return "NaN".to_owned();
    }
    if x.is_infinite() {
        return if x > 0.0 { "Infinity" } else { "-Infinity" }.to_owned();
    }
    if x == 0.0 {
        // JavaScript prints negative zero as "0" too.
        return "0".to_owned();
    }
    // Rust's `{:e}` gives the shortest round-trip digits: "-1.2345e-7".
    let scientific = format!("{:e}", x.abs());
    let (mantissa, exponent) = scientific
        .split_once('e')
        .expect("{:e} always has an exponent");
    let exponent: i32 = exponent.parse().expect("{:e} exponent is an integer");
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let k = digits.len() as i32;
    let n = exponent + 1;
    let mut out = String::with_capacity(k as usize + 8);
    if x < 0.0 {
        out.push('-');
    }
    if k <= n && n <= 21 {
        out.push_str(&digits);
        out.extend(std::iter::repeat_n('0', (n - k) as usize));
    } else if 0 < n && n <= 21 {
        out.push_str(&digits[..n as usize]);
        out.push('.');
        out.push_str(&digits[n as usize..]);
    } else if -6 < n && n <= 0 {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', (-n) as usize));
        out.push_str(&digits);
    } else {
        out.push_str(&digits[..1]);
        if k > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        out.push('e');
        out.push(if n > 0 { '+' } else { '-' });
        out.push_str(&(n - 1).abs().to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::format_js_number;

    #[test]
    fn matches_javascript_number_to_string() {
        // Proves the JS formatting rules at every boundary (values checked against node's String(x)).
        let cases: &[(f64, &str)] = &[
            (3.0, "3"),
            (0.1, "0.1"),
            (-2.5, "-2.5"),
            (1e300, "1e+300"),
            (1e21, "1e+21"),
            (1e20, "100000000000000000000"),
            (123456789012345680000.0, "123456789012345680000"),
            (1e-7, "1e-7"),
            (1.5e-7, "1.5e-7"),
            (1e-6, "0.000001"),
            (0.000123, "0.000123"),
            (-0.0, "0"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
            (5e-324, "5e-324"),
            (0.30000000000000004, "0.30000000000000004"),
            (123.456, "123.456"),
            (-1e-10, "-1e-10"),
            (2.5e25, "2.5e+25"),
            (f64::INFINITY, "Infinity"),
        ];
        for (x, expected) in cases {
            assert_eq!(format_js_number(*x), *expected, "{x:?}");
        }
    }
}

//! Sizes and rates for people, shared by the commands' output and the library's progress log lines.

use std::time::Duration;

/// `1234` -> `1.2 KiB`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// `"12.0 MiB/s, 1m 20s left"` for `done` of `total` bytes after `elapsed`, or `"12.0 MiB/s"` when the
/// total is unknown: the rate part of every progress line.
pub fn rate_and_time_left(done: u64, total: Option<u64>, elapsed: Duration) -> String {
    let rate = done as f64 / elapsed.as_secs_f64().max(0.001);
    match total {
        Some(total) => {
            let left = total.saturating_sub(done) as f64 / rate.max(1.0);
            format!(
                "{}/s, {} left",
                human_bytes(rate as u64),
                humantime::format_duration(Duration::from_secs(left as u64))
            )
        }
        None => format!("{}/s", human_bytes(rate as u64)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1234), "1.2 KiB");
        assert_eq!(human_bytes(5 * 1024 * 1024), "5.0 MiB");
    }
}

//! Finding which statement of a failed D1 request fails, without changing the database.

use crate::cloudflare::Client;

/// A statement no database has, ending every probe so that the probe is rolled back whatever it ran.
const PROBE_SENTINEL: &str = "SELECT * FROM \"d1vault: probe, rolled back\";";

/// Finds which statement of a failed request fails, without changing the database: each probe sends the
/// first k statements followed by [`PROBE_SENTINEL`], which fails, so D1 rolls the probe back; when the
/// error is the sentinel's, the first k statements succeed. A binary search costs about log2(statements)
/// requests, and only after a failure. `None` when the statements cannot be split or the probes disagree.
pub(super) async fn failing_statement(
    client: &Client,
    id: &str,
    sql: &str,
) -> Option<(usize, String)> {
    let statements = d1_dump::split_statements(sql).ok()?;
    if statements.len() < 2 {
        return None;
    }
    // Invariant: the first `good` statements succeed; the first `bad` fail.
    let (mut good, mut bad) = (0, statements.len());
    let mut confirmed = false;
    while bad - good > 1 || !confirmed {
        let k = if confirmed {
            good + (bad - good) / 2
        } else {
            bad
        };
        let probe = format!("{}\n{PROBE_SENTINEL}", statements[..k].join("\n"));
        let error = client.query(id, &probe, &[]).await.err()?;
        if error.is_retryable() {
            return None;
        }
        if error.message.contains("d1vault: probe, rolled back") {
            if k == statements.len() {
                return None; // the whole request succeeds now: the failure did not reproduce
            }
            good = k;
        } else {
            bad = k;
        }
        confirmed = true;
    }
    Some((bad, statements[bad - 1].clone()))
}

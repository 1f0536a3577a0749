//! `d1vault healthcheck`: asks a running daemon's `/healthz` on `daemon.listen`; exit 0 when it answers
//! 200, 1 otherwise. For container HEALTHCHECKs in images without curl.

use std::time::Duration;

use super::Failure;
use crate::config::Config;

/// Queries `/healthz` and prints its body.
pub async fn run(config: &Config) -> Result<(), Failure> {
    let Some(addr) = config.daemon.listen else {
        return Err(Failure::usage(
            "daemon.listen is disabled (\"\"), so there is no /healthz to ask",
        ));
    };
    let url = format!("http://{addr}/healthz");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| Failure::failed(e.to_string()))?;
    let response = client
        .get(&url)
        .send()
        .await
        .map_err(|e| Failure::failed(format!("no answer from {url}: {}", e.without_url())))?;
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    println!("{body}");
    if status.is_success() {
        Ok(())
    } else {
        Err(Failure::failed(format!("{url} answered {status}")))
    }
}

//! Sending one [`Delivery`]: each attempt bounded in time, a few attempts with backoff for what may pass
//! (no answer, a refused connection, 5xx, 429, a command that failed), and an error that never carries the
//! URL (it is a secret, and Slack's and healthchecks' URLs are their credentials).

use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncWriteExt;

use super::message::Delivery;

/// How hard d1vault tries to deliver one notification before it gives up and logs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryPolicy {
    /// The longest one attempt may take (connect, send, answer; or the command's run).
    pub attempt_timeout: Duration,
    /// Attempts in all, the first included.
    pub attempts: u32,
    /// The wait before the second attempt; each later wait doubles.
    pub backoff: Duration,
}

impl Default for DeliveryPolicy {
    /// 3 attempts of at most 5 s, 1 s then 2 s apart: at most 18 s per notification.
    fn default() -> Self {
        DeliveryPolicy {
            attempt_timeout: Duration::from_secs(5),
            attempts: 3,
            backoff: Duration::from_secs(1),
        }
    }
}

impl DeliveryPolicy {
    /// The longest a delivery can take under this policy, every attempt timing out.
    pub fn worst_case(&self) -> Duration {
        let waits: Duration = (0..self.attempts.saturating_sub(1))
            .map(|i| self.backoff * 2u32.saturating_pow(i))
            .sum();
        self.attempt_timeout * self.attempts + waits
    }
}

/// Why a delivery failed, without the URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct DeliveryError {
    /// What happened at the last attempt.
    pub message: String,
    /// Whether another attempt could succeed.
    pub retryable: bool,
}

impl DeliveryError {
    fn retryable(message: impl Into<String>) -> Self {
        DeliveryError {
            message: message.into(),
            retryable: true,
        }
    }

    fn permanent(message: impl Into<String>) -> Self {
        DeliveryError {
            message: message.into(),
            retryable: false,
        }
    }
}

/// Delivers `delivery` under `policy`: retries what may pass, stops at a permanent refusal.
pub(crate) async fn deliver(
    client: &reqwest::Client,
    delivery: &Delivery,
    policy: DeliveryPolicy,
) -> Result<(), DeliveryError> {
    let mut wait = policy.backoff;
    let mut attempt = 1;
    loop {
        let result =
            match tokio::time::timeout(policy.attempt_timeout, once(client, delivery)).await {
                Ok(result) => result,
                Err(_) => Err(DeliveryError::retryable(format!(
                    "no answer within {}",
                    humantime::format_duration(policy.attempt_timeout)
                ))),
            };
        match result {
            Ok(()) => return Ok(()),
            Err(e) if !e.retryable || attempt >= policy.attempts => {
                let message = format!("{} (attempt {attempt} of {})", e.message, policy.attempts);
                return Err(DeliveryError { message, ..e });
            }
            Err(_) => {
                tokio::time::sleep(wait).await;
                wait *= 2;
                attempt += 1;
            }
        }
    }
}

/// One attempt, unbounded in time (the caller bounds it).
async fn once(client: &reqwest::Client, delivery: &Delivery) -> Result<(), DeliveryError> {
    match delivery {
        Delivery::Http {
            url,
            content_type,
            headers,
            body,
        } => {
            let mut request = client
                .post(url.expose())
                .header(reqwest::header::CONTENT_TYPE, *content_type)
                .header(
                    reqwest::header::USER_AGENT,
                    concat!("d1vault/", env!("CARGO_PKG_VERSION")),
                )
                .body(body.clone());
            for (name, value) in headers {
                request = request.header(*name, value);
            }
            let response = request
                .send()
                .await
                .map_err(|e| DeliveryError::retryable(describe(&e.without_url(), url.expose())))?;
            let status = response.status();
            if status.is_success() {
                return Ok(());
            }
            let message = format!("the receiver answered HTTP {status}");
            if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
                Err(DeliveryError::retryable(message))
            } else {
                Err(DeliveryError::permanent(message))
            }
        }
        Delivery::Command { argv, stdin } => run_command(argv, stdin).await,
    }
}

/// Runs the command with the event on its standard input; killed when the attempt's time is up (the
/// future is dropped, and `kill_on_drop` ends the child).
async fn run_command(argv: &[String], stdin: &[u8]) -> Result<(), DeliveryError> {
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| DeliveryError::permanent("the command is empty"))?;
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| DeliveryError::permanent(format!("cannot run {program}: {e}")))?;
    if let Some(mut input) = child.stdin.take() {
        // A program that does not read its input closes the pipe: that is its business, not an error.
        let _ = input.write_all(stdin).await;
    }
    let status = child
        .wait()
        .await
        .map_err(|e| DeliveryError::retryable(format!("waiting for {program}: {e}")))?;
    if status.success() {
        Ok(())
    } else {
        Err(DeliveryError::retryable(format!(
            "{program} exited with {status}"
        )))
    }
}

/// An HTTP error and its causes on one line (reqwest's own message says only "error sending request"),
/// with `url` blanked should any cause quote it.
fn describe(error: &reqwest::Error, url: &str) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let line = cause.to_string();
        if !text.contains(&line) {
            text.push_str(": ");
            text.push_str(&line);
        }
        source = cause.source();
    }
    if url.is_empty() {
        text
    } else {
        text.replace(url, "<url>")
    }
}

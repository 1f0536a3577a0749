//! Errors from the Cloudflare API, classified so that callers know whether trying again can help, and
//! phrased so that the user knows what to fix.

/// Whether a failed request may succeed when repeated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// 429, 5xx, dropped connections, timeouts.
    Retryable,
    /// 400/401/403/404, malformed answers, export errors: repeating sends the same mistake again.
    Permanent,
}

/// A failed Cloudflare API call or export download. The message never contains the API token nor a signed
/// URL.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    /// Retryable or permanent: decides whether the caller tries again.
    pub class: ErrorClass,
    /// HTTP status, when an answer arrived.
    pub status: Option<u16>,
    /// Cloudflare's first error code (`errors[0].code`), when the answer had one.
    pub code: Option<u64>,
    /// What failed, and what to do about it.
    pub message: String,
}

impl ApiError {
    /// A failure that repeating will not fix.
    pub fn permanent(message: impl Into<String>) -> Self {
        ApiError {
            class: ErrorClass::Permanent,
            status: None,
            code: None,
            message: message.into(),
        }
    }

    /// A transient failure.
    pub fn retryable(message: impl Into<String>) -> Self {
        ApiError {
            class: ErrorClass::Retryable,
            status: None,
            code: None,
            message: message.into(),
        }
    }

    /// Whether repeating the request may help.
    pub fn is_retryable(&self) -> bool {
        self.class == ErrorClass::Retryable
    }

    /// Prefixes the message with what was being attempted.
    pub fn context(mut self, what: &str) -> Self {
        self.message = format!("{what}: {}", self.message);
        self
    }
}

/// Builds the error for a non-success HTTP answer from the API, with a hint for the statuses users cause.
pub(crate) fn from_status(
    status: u16,
    code: Option<u64>,
    cf_message: &str,
    account_id: &str,
) -> ApiError {
    let detail = match code {
        Some(code) => format!("HTTP {status}, Cloudflare error {code}: {cf_message}"),
        None => format!("HTTP {status}: {cf_message}"),
    };
    let (class, hint) = match status {
        429 => (ErrorClass::Retryable, "rate limited by Cloudflare"),
        500..=599 => (ErrorClass::Retryable, "Cloudflare had a server error"),
        401 | 403 => (
            ErrorClass::Permanent,
            "the API token was rejected: check cloudflare.api_token (it needs D1 Read and D1 Edit \
             permissions) and cloudflare.account_id",
        ),
        404 => (
            ErrorClass::Permanent,
            "not found: check the database name or id and cloudflare.account_id",
        ),
        _ => (ErrorClass::Permanent, "the request was refused"),
    };
    let message = if status == 404 || status == 401 || status == 403 {
        format!("{hint} (account {account_id}; {detail})")
    } else {
        format!("{hint} ({detail})")
    };
    ApiError {
        class,
        status: Some(status),
        code,
        message,
    }
}

/// Describes a transport error without its URL: a signed export URL must never reach a message.
pub(crate) fn from_transport(err: reqwest::Error, what: &str) -> ApiError {
    let err = err.without_url();
    let class = if err.is_builder() {
        ErrorClass::Permanent
    } else {
        ErrorClass::Retryable
    };
    let mut message = format!("{what}: {err}");
    let mut source = std::error::Error::source(&err);
    while let Some(cause) = source {
        message.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    ApiError {
        class,
        status: None,
        code: None,
        message,
    }
}

//! Cloudflare's JSON response envelope and error answers.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// `{"result": ..., "success": true, "errors": [], "messages": []}` with the given status.
pub(crate) fn success(status: StatusCode, result: Value) -> Response {
    (
        status,
        axum::Json(json!({ "result": result, "success": true, "errors": [], "messages": [] })),
    )
        .into_response()
}

/// A 200 success envelope.
pub(crate) fn ok(result: Value) -> Response {
    success(StatusCode::OK, result)
}

/// A list answer with `result_info`.
pub(crate) fn ok_list(result: Value, page: u64, per_page: u64, count: u64, total: u64) -> Response {
    axum::Json(json!({
        "result": result, "success": true, "errors": [], "messages": [],
        "result_info": { "page": page, "per_page": per_page, "count": count, "total_count": total }
    }))
    .into_response()
}

/// The failure envelope with one error.
pub(crate) fn failure(status: StatusCode, code: u32, message: impl Into<String>) -> Response {
    failure_with_result(status, code, message, Value::Null)
}

/// The failure envelope with a chosen `result` (`/query` errors answer `result: []`).
pub(crate) fn failure_with_result(
    status: StatusCode,
    code: u32,
    message: impl Into<String>,
    result: Value,
) -> Response {
    let body = json!({
        "result": result, "success": false,
        "errors": [ { "code": code, "message": message.into() } ], "messages": []
    });
    (status, axum::Json(body)).into_response()
}

/// Cloudflare's answer for a path it has no route for (7003 then 7000).
pub(crate) fn no_route(path: &str) -> Response {
    let body = json!({
        "result": null, "success": false,
        "errors": [
            { "code": 7003, "message": format!("Could not route to {path}, perhaps your object identifier is invalid?") },
            { "code": 7000, "message": "No route for that URI" }
        ],
        "messages": []
    });
    (StatusCode::BAD_REQUEST, axum::Json(body)).into_response()
}

/// 429 with `Retry-After`, as Cloudflare's API rate limiter answers.
pub(crate) fn rate_limited(retry_after_secs: u64) -> Response {
    let mut response = failure(
        StatusCode::TOO_MANY_REQUESTS,
        10100,
        "More than 1200 requests per 300 seconds reached. Please wait and consider throttling your request speed",
    );
    if let Ok(v) = HeaderValue::from_str(&retry_after_secs.to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, v);
    }
    response
}

/// An injected 5xx.
pub(crate) fn server_error(status: u16) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    failure(
        status,
        10013,
        format!("Internal server error (injected {})", status.as_u16()),
    )
}

/// The inner polling failure D1 answers inside a success envelope: `{"success": false, "error": ...}`.
pub(crate) fn polling_failure(message: &str) -> Response {
    ok(json!({ "success": false, "error": message }))
}

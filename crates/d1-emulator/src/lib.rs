//! `d1-emulator`: a local Cloudflare D1 REST API served from SQLite files, with fault injection.
//!
//! Every `DATA_DIR/NAME.sqlite` is the database `NAME`, whose id is [`database_id`]`(NAME)`, stable across
//! runs. The API lives under `/client/v4` with Cloudflare's envelope, bearer auth and error codes; export
//! downloads and import uploads are served by the emulator itself under `/__emulator/exports/…` and
//! `/__emulator/uploads/…`. `POST /__emulator/faults` (bearer auth, JSON [`Faults`]) injects faults;
//! `GET /__emulator/stats` reports [`RequestStats`]. `CONTRACT.md` ("Binaries") is what it promises.
//!
//! SQLite work runs on blocking threads; each database has one connection behind a mutex, so an export or
//! import blocks the database as D1's do. Work files (exports, uploads) live in `DATA_DIR/.d1-emulator/`.
//!
//! # Layout
//!
//! * this file: [`Emulator`] (start, address, shutdown), the router and the API's request handlers.
//! * `registry`: the databases of the data directory, their bookmarks and Time Travel copies.
//! * `engine`: running SQL as D1 does: one transaction per request, D1's refusals and result shapes.
//! * `transfer`: exports and imports: D1's polling protocol, the download and upload URLs.
//! * `envelope`: Cloudflare's JSON response envelope and its error answers.
//! * `faults`: [`Faults`] and the [`FaultInjector`] that makes the emulator misbehave on purpose.
//! * `stats`: [`RequestStats`], the API requests seen, for tests that assert a client's request budget.
//! * `main.rs` (the `d1-emulator` binary): flags, then [`Emulator::start`] until SIGTERM or Ctrl-C.

#![allow(clippy::result_large_err)] // handlers return ready-made error responses; they are not hot paths

mod engine;
mod envelope;
mod faults;
mod registry;
mod stats;
mod transfer;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post, put};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::oneshot;

pub use faults::{
    DownloadFault, FaultInjector, Faults, RateLimitFault, ServerErrorFault, WriteAfterExport,
};
pub use registry::{BookmarkEntry, database_id};
pub use stats::RequestStats;

use envelope::{failure, failure_with_result, no_route, ok, ok_list};
use registry::{CreateError, Database, Registry, RestoreError, RestorePoint};

/// The token clients send when `--token` is not given (`CONTRACT.md`, "Binaries"), so tests and
/// configurations need no secret of their own.
pub const DEFAULT_TOKEN: &str = "test-token";
/// The account id the API answers for when `--account-id` is not given (`CONTRACT.md`, "Binaries").
pub const DEFAULT_ACCOUNT_ID: &str = "0123456789abcdef0123456789abcdef";

/// What [`Emulator::start`] needs: where the databases live and what clients must present.
#[derive(Debug, Clone)]
pub struct EmulatorOptions {
    /// Directory of `NAME.sqlite` files (created when missing).
    pub data_dir: PathBuf,
    /// The bearer token clients must send.
    pub token: String,
    /// The only account id the API answers for.
    pub account_id: String,
}

/// Shared state of the server.
#[derive(Debug)]
pub(crate) struct AppState {
    options: EmulatorOptions,
    addr: SocketAddr,
    work_dir: PathBuf,
    registry: Registry,
    faults: Arc<FaultInjector>,
    stats: stats::StatsRecorder,
    transfers: transfer::Transfers,
}

/// A running emulator: the handle a test keeps to reach its address, faults and counters, and to stop it.
#[derive(Debug)]
pub struct Emulator {
    state: Arc<AppState>,
    shutdown: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Emulator {
    /// Serves the API on `listener` (bind first, e.g. `127.0.0.1:0`, then pass it in).
    pub async fn start(
        listener: tokio::net::TcpListener,
        options: EmulatorOptions,
    ) -> std::io::Result<Emulator> {
        let addr = listener.local_addr()?;
        tokio::fs::create_dir_all(&options.data_dir).await?;
        let work_dir = options.data_dir.join(".d1-emulator");
        tokio::fs::create_dir_all(&work_dir).await?;
        let registry = Registry::new(&options.data_dir);
        let state = Arc::new(AppState {
            options,
            addr,
            work_dir,
            registry,
            faults: Arc::new(FaultInjector::default()),
            stats: stats::StatsRecorder::default(),
            transfers: transfer::Transfers::default(),
        });
        {
            let state = state.clone();
            tokio::task::spawn_blocking(move || state.registry.refresh())
                .await
                .map_err(std::io::Error::other)?;
        }
        let app = router(state.clone());
        let (shutdown, shutdown_rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = shutdown_rx.await;
                })
                .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "d1-emulator server failed");
            }
        });
        Ok(Emulator {
            state,
            shutdown,
            task,
        })
    }

    /// The address it listens on (the real port when it was bound to port 0).
    pub fn addr(&self) -> SocketAddr {
        self.state.addr
    }

    /// The API base URL, `http://ADDR/client/v4`: what a client's `CLOUDFLARE_API_BASE_URL` is set to.
    pub fn base_url(&self) -> String {
        format!("http://{}/client/v4", self.state.addr)
    }

    /// The fault injector, to set faults directly from tests.
    pub fn faults(&self) -> &FaultInjector {
        &self.state.faults
    }

    /// API requests seen so far, so a test can assert a client's request budget.
    pub fn stats(&self) -> RequestStats {
        self.state.stats.snapshot()
    }

    /// Bookmarks of a database, oldest first (`None` for an unknown name); for time-travel features.
    pub fn bookmarks(&self, name: &str) -> Option<Vec<BookmarkEntry>> {
        self.state.registry.find(name, true).map(|db| db.history())
    }

    /// Stops accepting connections and waits for open ones to finish.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(());
        let _ = self.task.await;
    }
}

fn router(state: Arc<AppState>) -> Router {
    let db_routes = Router::new()
        .route(
            "/accounts/{account_id}/d1/database",
            get(list_databases).post(create_database),
        )
        .route(
            "/accounts/{account_id}/d1/database/{db}",
            get(get_database).delete(delete_database),
        )
        .route("/accounts/{account_id}/d1/database/{db}/query", post(query))
        .route("/accounts/{account_id}/d1/database/{db}/raw", post(raw))
        .route(
            "/accounts/{account_id}/d1/database/{db}/export",
            post(export),
        )
        .route(
            "/accounts/{account_id}/d1/database/{db}/import",
            post(import),
        )
        .route(
            "/accounts/{account_id}/d1/database/{db}/time_travel/bookmark",
            get(bookmark),
        )
        .route(
            "/accounts/{account_id}/d1/database/{db}/time_travel/restore",
            post(time_travel_restore),
        )
        .fallback(api_fallback)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            api_gate,
        ));
    Router::new()
        .nest("/client/v4", db_routes)
        .route("/__emulator/faults", post(set_faults))
        .route("/__emulator/stats", get(get_stats))
        .route("/__emulator/exports/{token}", get(download))
        .route("/__emulator/uploads/{token}", put(upload))
        .fallback(any(|| async { (StatusCode::NOT_FOUND, "not found") }))
        .with_state(state)
}

/// The route kind of an API path, for [`RequestStats`].
fn route_kind(method: &Method, path: &str) -> &'static str {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    // accounts/{id}/d1/database[/{db}[/action...]]
    match (parts.get(2..4), parts.len(), parts.last()) {
        (Some(["d1", "database"]), 4, _) if method == Method::GET => "list",
        (Some(["d1", "database"]), 4, _) if method == Method::POST => "create",
        (Some(["d1", "database"]), 5, _) if method == Method::GET => "get",
        (Some(["d1", "database"]), 5, _) if method == Method::DELETE => "delete",
        (Some(["d1", "database"]), 6, Some(&"query")) => "query",
        (Some(["d1", "database"]), 6, Some(&"raw")) => "raw",
        (Some(["d1", "database"]), 6, Some(&"export")) => "export",
        (Some(["d1", "database"]), 6, Some(&"import")) => "import",
        (Some(["d1", "database"]), 7, Some(&"bookmark")) => "bookmark",
        (Some(["d1", "database"]), 7, Some(&"restore")) => "restore",
        _ => "other",
    }
}

/// Every API request: counted, then injected faults, then bearer auth and the account check.
async fn api_gate(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let path = request.uri().path().to_owned();
    state
        .stats
        .record(route_kind(request.method(), &path), Instant::now());
    match state.faults.take_api_fault() {
        Some(faults::ApiFault::RateLimited { retry_after_secs }) => {
            return envelope::rate_limited(retry_after_secs);
        }
        Some(faults::ApiFault::ServerError { status }) => return envelope::server_error(status),
        None => {}
    }
    if let Err(response) = check_auth(&state, request.headers()) {
        return response;
    }
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    if parts.first() == Some(&"accounts")
        && let Some(account) = parts.get(1)
        && *account != state.options.account_id
        && parts.get(2) == Some(&"d1")
    {
        return failure(
            StatusCode::FORBIDDEN,
            7403,
            "The given account is not valid or is not authorized to access this service",
        );
    }
    next.run(request).await
}

/// Bearer auth with Cloudflare's answers: 9106 when no credentials, 6003/6111 when malformed,
/// 10000 when the token is wrong.
fn check_auth(state: &AppState, headers: &HeaderMap) -> Result<(), Response> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(failure(
            StatusCode::BAD_REQUEST,
            9106,
            "Missing X-Auth-Key, X-Auth-Email or Authorization headers",
        ));
    };
    let token = value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let Some(token) = token.filter(|t| !t.is_empty()) else {
        let body = json!({
            "result": null, "success": false,
            "errors": [ { "code": 6003, "message": "Invalid request headers",
                          "error_chain": [ { "code": 6111, "message": "Invalid format for Authorization header" } ] } ],
            "messages": []
        });
        return Err((StatusCode::BAD_REQUEST, axum::Json(body)).into_response());
    };
    if token != state.options.token {
        return Err(failure(
            StatusCode::FORBIDDEN,
            10000,
            "Authentication error",
        ));
    }
    Ok(())
}

async fn api_fallback(request: Request) -> Response {
    no_route(&format!("/client/v4{}", request.uri().path()))
}

async fn method_not_allowed(request: Request) -> Response {
    failure(
        StatusCode::METHOD_NOT_ALLOWED,
        10405,
        format!("Method {} not allowed for this route", request.method()),
    )
}

fn not_found_database(id: &str) -> Response {
    failure(
        StatusCode::NOT_FOUND,
        7404,
        format!("The database {id} could not be found"),
    )
}

/// Looks a database up on a blocking thread; by UUID, or by name too when `allow_name`.
async fn lookup(
    state: &Arc<AppState>,
    id: &str,
    allow_name: bool,
) -> Result<Arc<Database>, Response> {
    if !allow_name && uuid::Uuid::parse_str(id).is_err() {
        return Err(failure(
            StatusCode::BAD_REQUEST,
            7400,
            "The request is malformed: failed to decode id",
        ));
    }
    let (s, key) = (state.clone(), id.to_owned());
    let found = tokio::task::spawn_blocking(move || s.registry.find(&key, allow_name))
        .await
        .ok()
        .flatten();
    found.ok_or_else(|| not_found_database(id))
}

/// D1's `version` field: `alpha` databases are the old ones without Time Travel.
fn version(time_travel: bool) -> &'static str {
    if time_travel { "production" } else { "alpha" }
}

/// A database's details, as `GET …/database/{id}` answers them.
fn details(db: &Database, time_travel: bool) -> Value {
    // A file that cannot be opened has no tables to count; its queries answer the error.
    let (num_tables, size): (i64, u64) = match db.connection() {
        Ok(conn) => (
            conn.query_row(
                "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' \
                 AND name NOT LIKE '\\_cf\\_%' ESCAPE '\\'",
                [],
                |r| r.get(0),
            )
            .unwrap_or(0),
            engine::database_size(&conn),
        ),
        Err(_) => (0, 0),
    };
    json!({
        "uuid": db.uuid.to_string(), "name": db.name, "created_at": db.created_at,
        "version": version(time_travel), "num_tables": num_tables, "file_size": size, "running_in_region": "WEUR",
        "read_replication": { "mode": "disabled" }, "jurisdiction": null
    })
}

fn list_item(db: &Database, time_travel: bool) -> Value {
    json!({
        "uuid": db.uuid.to_string(), "name": db.name, "created_at": db.created_at,
        "version": version(time_travel), "jurisdiction": null
    })
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    page: Option<u64>,
    per_page: Option<u64>,
    name: Option<String>,
}

async fn list_databases(
    State(state): State<Arc<AppState>>,
    Query(q): Query<ListQuery>,
) -> Response {
    let page = q.page.unwrap_or(1).max(1);
    let per_page = q.per_page.unwrap_or(1000).clamp(10, 10_000);
    if state.faults.list_page_fails(page) {
        return envelope::server_error(500);
    }
    let time_travel = state.faults.time_travel();
    let s = state.clone();
    let all = tokio::task::spawn_blocking(move || s.registry.list())
        .await
        .unwrap_or_default();
    let matching: Vec<Value> = all
        .iter()
        .filter(|db| q.name.as_deref().is_none_or(|n| db.name.contains(n)))
        .map(|db| list_item(db, time_travel))
        .collect();
    let total = matching.len() as u64;
    let start = ((page - 1) * per_page).min(total) as usize;
    let items: Vec<Value> = matching
        .into_iter()
        .skip(start)
        .take(per_page as usize)
        .collect();
    let count = items.len() as u64;
    ok_list(Value::Array(items), page, per_page, count, total)
}

#[derive(Debug, Deserialize)]
struct FieldsQuery {
    fields: Option<String>,
}

async fn get_database(
    State(state): State<Arc<AppState>>,
    Path((_, id)): Path<(String, String)>,
    Query(q): Query<FieldsQuery>,
) -> Response {
    let db = match lookup(&state, &id, true).await {
        Ok(db) => db,
        Err(response) => return response,
    };
    let time_travel = state.faults.time_travel();
    let mut result = tokio::task::spawn_blocking(move || details(&db, time_travel))
        .await
        .unwrap_or(Value::Null);
    if let (Some(fields), Value::Object(map)) = (q.fields, &mut result) {
        let wanted: Vec<&str> = fields.split(',').map(str::trim).collect();
        map.retain(|k, _| wanted.contains(&k.as_str()));
    }
    ok(result)
}

#[derive(Debug, Deserialize)]
struct CreateBody {
    name: String,
}

/// Parses a JSON body, answering Cloudflare's malformed-request error when it does not fit.
fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Response> {
    serde_json::from_slice(body).map_err(|e| {
        failure(
            StatusCode::BAD_REQUEST,
            7400,
            format!("The request is malformed: {e}"),
        )
    })
}

async fn create_database(State(state): State<Arc<AppState>>, body: axum::body::Bytes) -> Response {
    let body: CreateBody = match parse_body(&body) {
        Ok(b) => b,
        Err(response) => return response,
    };
    if !registry::valid_name(&body.name) {
        return failure(
            StatusCode::BAD_REQUEST,
            7400,
            "The request is malformed: database names must match ^[a-zA-Z0-9][a-zA-Z0-9_-]*$",
        );
    }
    let s = state.clone();
    let time_travel = state.faults.time_travel();
    let created = tokio::task::spawn_blocking(move || {
        s.registry
            .create(&body.name)
            .map(|db| details(&db, time_travel))
    })
    .await;
    match created {
        Ok(Ok(details)) => ok(details),
        Ok(Err(CreateError::Exists)) => failure(
            StatusCode::BAD_REQUEST,
            7502,
            "A database with that name already exists",
        ),
        Ok(Err(CreateError::Sqlite(e))) => failure(
            StatusCode::INTERNAL_SERVER_ERROR,
            7500,
            engine::d1_message(&e),
        ),
        Err(e) => failure(StatusCode::INTERNAL_SERVER_ERROR, 7500, e.to_string()),
    }
}

async fn delete_database(
    State(state): State<Arc<AppState>>,
    Path((_, id)): Path<(String, String)>,
) -> Response {
    let db = match lookup(&state, &id, true).await {
        Ok(db) => db,
        Err(response) => return response,
    };
    let s = state.clone();
    match tokio::task::spawn_blocking(move || s.registry.delete(&db)).await {
        Ok(Ok(())) => ok(Value::Null),
        Ok(Err(e)) => failure(
            StatusCode::INTERNAL_SERVER_ERROR,
            7500,
            format!("cannot delete the database: {e}"),
        ),
        Err(e) => failure(StatusCode::INTERNAL_SERVER_ERROR, 7500, e.to_string()),
    }
}

#[derive(Debug, Deserialize)]
struct QueryBody {
    sql: Option<String>,
    #[serde(default)]
    params: Vec<Value>,
    batch: Option<Vec<BatchItem>>,
}

#[derive(Debug, Deserialize)]
struct BatchItem {
    sql: String,
    #[serde(default)]
    params: Vec<Value>,
}

/// Runs a `/query` or `/raw` body; `raw` picks the result shape.
async fn run_query(
    state: Arc<AppState>,
    id: String,
    body: axum::body::Bytes,
    raw: bool,
) -> Response {
    let db = match lookup(&state, &id, false).await {
        Ok(db) => db,
        Err(response) => return response,
    };
    let body: QueryBody = match parse_body(&body) {
        Ok(b) => b,
        Err(response) => return response,
    };
    let sql_error =
        |message: String| failure_with_result(StatusCode::BAD_REQUEST, 7500, message, json!([]));
    let statements: Vec<(String, Vec<Value>)> = match (body.sql, body.batch) {
        (Some(sql), None) => match d1_dump::split_statements(&sql) {
            Ok(list) if list.is_empty() => {
                return sql_error("No SQL statements detected.: SQLITE_ERROR".to_owned());
            }
            Ok(list) => list.into_iter().map(|s| (s, body.params.clone())).collect(),
            Err(e) => return sql_error(format!("{e}: SQLITE_ERROR")),
        },
        (None, Some(batch)) if !batch.is_empty() => {
            batch.into_iter().map(|b| (b.sql, b.params)).collect()
        }
        _ => {
            return failure(
                StatusCode::BAD_REQUEST,
                7400,
                "The request is malformed: give either `sql` or a non-empty `batch`",
            );
        }
    };
    let enforce_fk = state.faults.enforce_foreign_keys();
    let outcome =
        tokio::task::spawn_blocking(move || engine::run_batch(&db, &statements, enforce_fk)).await;
    match outcome {
        Ok(Ok(results)) => ok(Value::Array(
            results
                .iter()
                .map(|r| {
                    if raw {
                        r.to_raw_json()
                    } else {
                        r.to_query_json()
                    }
                })
                .collect(),
        )),
        Ok(Err(message)) => sql_error(message),
        Err(e) => failure(StatusCode::INTERNAL_SERVER_ERROR, 7500, e.to_string()),
    }
}

async fn query(
    State(state): State<Arc<AppState>>,
    Path((_, id)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Response {
    run_query(state, id, body, false).await
}

async fn raw(
    State(state): State<Arc<AppState>>,
    Path((_, id)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Response {
    run_query(state, id, body, true).await
}

async fn export(
    State(state): State<Arc<AppState>>,
    Path((_, id)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Response {
    let db = match lookup(&state, &id, false).await {
        Ok(db) => db,
        Err(response) => return response,
    };
    match parse_body(&body) {
        Ok(request) => transfer::export(state, db, request).await,
        Err(response) => response,
    }
}

async fn import(
    State(state): State<Arc<AppState>>,
    Path((_, id)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Response {
    let db = match lookup(&state, &id, false).await {
        Ok(db) => db,
        Err(response) => return response,
    };
    match parse_body(&body) {
        Ok(request) => transfer::import(state, db, request).await,
        Err(response) => response,
    }
}

/// What Time Travel requests get on a database without it (an `alpha` one; D1's exact code is unconfirmed).
fn no_time_travel() -> Response {
    failure(
        StatusCode::BAD_REQUEST,
        7400,
        "Time Travel is not available for this database (version alpha)",
    )
}

#[derive(Debug, Deserialize)]
struct BookmarkQuery {
    timestamp: Option<String>,
}

async fn bookmark(
    State(state): State<Arc<AppState>>,
    Path((_, id)): Path<(String, String)>,
    Query(q): Query<BookmarkQuery>,
) -> Response {
    let db = match lookup(&state, &id, false).await {
        Ok(db) => db,
        Err(response) => return response,
    };
    if !state.faults.time_travel() {
        return no_time_travel();
    }
    let bookmark = match q.timestamp {
        None => db.current_bookmark(),
        Some(ts) => match chrono::DateTime::parse_from_rfc3339(&ts) {
            Ok(at) => db.bookmark_at(at.with_timezone(&chrono::Utc)),
            Err(_) => {
                return failure(
                    StatusCode::BAD_REQUEST,
                    7400,
                    format!("The request is malformed: invalid timestamp {ts:?}"),
                );
            }
        },
    };
    ok(json!({ "bookmark": bookmark }))
}

#[derive(Debug, Deserialize)]
struct RestoreQuery {
    bookmark: Option<String>,
    timestamp: Option<String>,
}

/// Whether `b` has D1's bookmark shape, `%08x-%08x-%08x-%32x`.
fn valid_bookmark(b: &str) -> bool {
    let parts: Vec<&str> = b.split('-').collect();
    parts.len() == 4
        && parts
            .iter()
            .zip([8, 8, 8, 32])
            .all(|(p, len)| p.len() == len && p.bytes().all(|c| c.is_ascii_hexdigit()))
}

/// `POST …/time_travel/restore?bookmark=…|timestamp=…`: puts the database back to that point (see
/// [`registry`] for how much history is kept) and answers the new bookmark and the one to undo with.
async fn time_travel_restore(
    State(state): State<Arc<AppState>>,
    Path((_, id)): Path<(String, String)>,
    Query(q): Query<RestoreQuery>,
) -> Response {
    let db = match lookup(&state, &id, false).await {
        Ok(db) => db,
        Err(response) => return response,
    };
    if !state.faults.time_travel() {
        return no_time_travel();
    }
    let malformed = |what: String| {
        failure(
            StatusCode::BAD_REQUEST,
            7400,
            format!("The request is malformed: {what}"),
        )
    };
    let point = match (q.bookmark, q.timestamp) {
        (Some(b), None) if valid_bookmark(&b) => RestorePoint::Bookmark(b.to_ascii_lowercase()),
        (Some(b), None) => return malformed(format!("invalid bookmark {b:?}")),
        (None, Some(ts)) => match chrono::DateTime::parse_from_rfc3339(&ts) {
            Ok(at) => RestorePoint::Timestamp(at.with_timezone(&chrono::Utc)),
            Err(_) => return malformed(format!("invalid timestamp {ts:?}")),
        },
        _ => return malformed("give exactly one of `bookmark` or `timestamp`".to_owned()),
    };
    match tokio::task::spawn_blocking(move || db.restore(&point)).await {
        Ok(Ok((bookmark, previous_bookmark))) => ok(json!({
            "bookmark": bookmark,
            "previous_bookmark": previous_bookmark,
            "message": "Database restored successfully"
        })),
        Ok(Err(RestoreError::Unavailable(message))) => {
            failure(StatusCode::BAD_REQUEST, 7400, message)
        }
        Ok(Err(e)) => failure(StatusCode::INTERNAL_SERVER_ERROR, 7500, e.to_string()),
        Err(e) => failure(StatusCode::INTERNAL_SERVER_ERROR, 7500, e.to_string()),
    }
}

async fn set_faults(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Err(response) = check_auth(&state, &headers) {
        return response;
    }
    match parse_body::<Faults>(&body) {
        Ok(faults) => {
            state.faults.set(faults);
            ok(serde_json::to_value(state.faults.current()).unwrap_or(Value::Null))
        }
        Err(response) => response,
    }
}

async fn get_stats(State(state): State<Arc<AppState>>) -> Response {
    axum::Json(state.stats.snapshot()).into_response()
}

async fn download(State(state): State<Arc<AppState>>, Path(token): Path<String>) -> Response {
    transfer::download(state, token).await
}

async fn upload(
    State(state): State<Arc<AppState>>,
    Path(token): Path<String>,
    body: Body,
) -> Response {
    transfer::upload(state, token, body).await
}

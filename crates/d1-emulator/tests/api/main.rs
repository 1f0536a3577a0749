//! The d1-emulator, driven over real HTTP on 127.0.0.1:0 with reqwest: every endpoint, error and fault.

mod wrangler;
mod wrangler_cli;

use std::io::BufRead;
use std::time::Duration;

use d1_dump::{DumpOptions, write_dump};
use d1_emulator::{
    DownloadFault, Emulator, EmulatorOptions, Faults, RateLimitFault, ServerErrorFault, database_id,
};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const TOKEN: &str = "test-token";
const ACCOUNT: &str = "0123456789abcdef0123456789abcdef";
const FIXTURE: &str = include_str!("../../../../tests/fixtures/fixture.sql");

struct Harness {
    emulator: Emulator,
    client: reqwest::Client,
    dir: tempfile::TempDir,
}

struct Answer {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

impl Harness {
    /// An emulator over a data directory holding `fixture.sqlite` (the shared fixture).
    async fn new() -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let conn = rusqlite::Connection::open(dir.path().join("fixture.sqlite")).unwrap();
        conn.execute_batch(FIXTURE).unwrap();
        drop(conn);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let options = EmulatorOptions {
            data_dir: dir.path().to_owned(),
            token: TOKEN.into(),
            account_id: ACCOUNT.into(),
        };
        let emulator = Emulator::start(listener, options).await.unwrap();
        Harness {
            emulator,
            client: reqwest::Client::new(),
            dir,
        }
    }

    fn db_url(&self, rest: &str) -> String {
        format!(
            "{}/accounts/{ACCOUNT}/d1/database{rest}",
            self.emulator.base_url()
        )
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Answer {
        let response = request.send().await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Answer {
            status,
            headers,
            body,
        }
    }

    async fn call(&self, method: Method, rest: &str, body: Option<Value>) -> Answer {
        let mut request = self
            .client
            .request(method, self.db_url(rest))
            .bearer_auth(TOKEN);
        if let Some(body) = body {
            request = request.json(&body);
        }
        self.send(request).await
    }

    fn fixture_id(&self) -> String {
        database_id("fixture").to_string()
    }

    async fn query(&self, id: &str, body: Value) -> Answer {
        self.call(Method::POST, &format!("/{id}/query"), Some(body))
            .await
    }

    /// Runs the export protocol to completion; returns the final answer's `result`.
    async fn export(&self, id: &str, dump_options: Value) -> (Value, u32) {
        let mut body = json!({ "output_format": "polling", "dump_options": dump_options });
        for polls in 1..100 {
            let answer = self
                .call(Method::POST, &format!("/{id}/export"), Some(body.clone()))
                .await;
            let result = answer.body["result"].clone();
            match result["status"].as_str() {
                Some("active") => {
                    assert_eq!(answer.status, StatusCode::ACCEPTED);
                    body["current_bookmark"] = result["at_bookmark"].clone();
                }
                _ => return (result, polls),
            }
        }
        panic!("export never finished");
    }

    /// Runs the import protocol (init, PUT, ingest, poll) with `sql`; returns the final `result`.
    async fn import(&self, id: &str, sql: &str) -> Value {
        use md5::{Digest, Md5};
        let etag = hex::encode(Md5::digest(sql.as_bytes()));
        let init = self
            .call(
                Method::POST,
                &format!("/{id}/import"),
                Some(json!({"action": "init", "etag": etag})),
            )
            .await;
        let mut result = init.body["result"].clone();
        if let Some(upload_url) = result["upload_url"].as_str() {
            let put = self
                .client
                .put(upload_url)
                .body(sql.to_owned())
                .send()
                .await
                .unwrap();
            assert_eq!(put.status(), StatusCode::OK);
            assert_eq!(
                put.headers()["etag"].to_str().unwrap(),
                format!("\"{etag}\"")
            );
            let filename = result["filename"].clone();
            let ingest = json!({"action": "ingest", "etag": etag, "filename": filename});
            result = self
                .call(Method::POST, &format!("/{id}/import"), Some(ingest))
                .await
                .body["result"]
                .clone();
        }
        while result["status"] == "active" {
            let poll = json!({"action": "poll", "current_bookmark": result["at_bookmark"]});
            result = self
                .call(Method::POST, &format!("/{id}/import"), Some(poll))
                .await
                .body["result"]
                .clone();
        }
        result
    }

    async fn create(&self, name: &str) -> String {
        let answer = self
            .call(Method::POST, "", Some(json!({ "name": name })))
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
        answer.body["result"]["uuid"].as_str().unwrap().to_owned()
    }

    /// Every row of every table of a database file, as SQL-quoted text, for whole-database comparison.
    fn contents(&self, name: &str) -> Vec<(String, Vec<String>)> {
        let conn =
            rusqlite::Connection::open(self.dir.path().join(format!("{name}.sqlite"))).unwrap();
        let tables: Vec<String> = conn
            .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        tables
            .into_iter()
            .map(|t| {
                let cols: Vec<String> = conn
                    .prepare(&format!(
                        "SELECT name FROM pragma_table_info('{}')",
                        t.replace('\'', "''")
                    ))
                    .unwrap()
                    .query_map([], |r| r.get(0))
                    .unwrap()
                    .collect::<Result<_, _>>()
                    .unwrap();
                let quoted: Vec<String> = cols
                    .iter()
                    .map(|c| format!("quote(\"{}\")", c.replace('"', "\"\"")))
                    .collect();
                let sql = format!(
                    "SELECT {} FROM \"{}\" ORDER BY rowid",
                    quoted.join("||','||"),
                    t.replace('"', "\"\"")
                );
                let rows = conn
                    .prepare(&sql)
                    .unwrap()
                    .query_map([], |r| r.get::<_, String>(0))
                    .unwrap()
                    .collect::<Result<_, _>>()
                    .unwrap();
                (t, rows)
            })
            .collect()
    }
}

fn error_code(answer: &Answer) -> i64 {
    answer.body["errors"][0]["code"]
        .as_i64()
        .unwrap_or_default()
}

#[tokio::test]
async fn the_list_pages_as_d1_does_and_can_fail_part_way() {
    // Proves the database list pages by `page`/`per_page` with D1's `result_info` (per_page clamped to
    // 10..=10000, a page past the end empty, every database on exactly one page in name order), and that
    // the `list_error_from_page` fault fails later pages only, until it is switched off.
    let h = Harness::new().await;
    for i in 0..24 {
        h.create(&format!("t-{i:02}")).await;
    }
    let mut seen = Vec::new();
    for page in 1..=3 {
        let answer = h
            .call(Method::GET, &format!("?per_page=3&page={page}"), None)
            .await;
        assert_eq!(answer.status, StatusCode::OK);
        let info = &answer.body["result_info"];
        assert_eq!(info["per_page"], 10, "per_page is clamped to D1's minimum");
        assert_eq!(info["page"], page);
        assert_eq!(info["total_count"], 25);
        for db in answer.body["result"].as_array().unwrap() {
            seen.push(db["name"].as_str().unwrap().to_string());
        }
    }
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(seen.len(), 25);
    assert_eq!(seen, sorted, "each database once, in name order");
    let past = h.call(Method::GET, "?per_page=10&page=4", None).await;
    assert_eq!(past.body["result"], json!([]));
    assert_eq!(past.body["result_info"]["count"], 0);

    h.emulator.faults().set(Faults {
        list_error_from_page: Some(2),
        ..Default::default()
    });
    let first = h.call(Method::GET, "?per_page=10&page=1", None).await;
    assert_eq!(first.status, StatusCode::OK);
    for _ in 0..2 {
        let second = h.call(Method::GET, "?per_page=10&page=2", None).await;
        assert_eq!(
            second.status,
            StatusCode::INTERNAL_SERVER_ERROR,
            "stays broken"
        );
    }
    h.emulator.faults().set(Faults {
        list_error_from_page: Some(0),
        ..Default::default()
    });
    let healed = h.call(Method::GET, "?per_page=10&page=2", None).await;
    assert_eq!(healed.status, StatusCode::OK);
}

#[tokio::test]
async fn databases_list_get_create_delete() {
    // Proves the database endpoints: pagination, name filter, get by id or name with fields, create, delete.
    let h = Harness::new().await;
    for i in 0..11 {
        h.create(&format!("db-{i:02}")).await;
    }
    let page1 = h.call(Method::GET, "?per_page=10&page=1", None).await;
    assert_eq!(page1.body["result"].as_array().unwrap().len(), 10);
    assert_eq!(page1.body["result_info"]["total_count"], 12);
    let page2 = h.call(Method::GET, "?per_page=10&page=2", None).await;
    assert_eq!(page2.body["result_info"]["count"], 2);
    let filtered = h.call(Method::GET, "?name=fixture", None).await;
    assert_eq!(filtered.body["result"][0]["uuid"], h.fixture_id());
    assert_eq!(filtered.body["result"].as_array().unwrap().len(), 1);

    let by_name = h.call(Method::GET, "/fixture?fields=uuid,name", None).await;
    assert_eq!(
        by_name.body["result"],
        json!({ "uuid": h.fixture_id(), "name": "fixture" })
    );
    let by_id = h
        .call(Method::GET, &format!("/{}", h.fixture_id()), None)
        .await;
    assert_eq!(by_id.body["result"]["num_tables"], 7);
    assert_eq!(by_id.body["result"]["version"], "production");

    let duplicate = h
        .call(Method::POST, "", Some(json!({ "name": "fixture" })))
        .await;
    assert_eq!(
        (duplicate.status, error_code(&duplicate)),
        (StatusCode::BAD_REQUEST, 7502)
    );
    let invalid = h
        .call(Method::POST, "", Some(json!({ "name": "../evil" })))
        .await;
    assert_eq!(invalid.status, StatusCode::BAD_REQUEST);

    let id = h.create("doomed").await;
    assert!(h.dir.path().join("doomed.sqlite").exists());
    let deleted = h.call(Method::DELETE, &format!("/{id}"), None).await;
    assert_eq!(deleted.status, StatusCode::OK);
    assert_eq!(deleted.body["result"], Value::Null);
    assert!(!h.dir.path().join("doomed.sqlite").exists());
    let gone = h.call(Method::GET, &format!("/{id}"), None).await;
    assert_eq!(
        (gone.status, error_code(&gone)),
        (StatusCode::NOT_FOUND, 7404)
    );
    h.emulator.shutdown().await;
}

#[tokio::test]
async fn auth_account_route_and_id_errors_match_cloudflare() {
    // Proves the error envelopes for credentials, accounts, unknown routes, ids and methods.
    let h = Harness::new().await;
    let missing = h.send(h.client.get(h.db_url(""))).await;
    assert_eq!(
        (missing.status, error_code(&missing)),
        (StatusCode::BAD_REQUEST, 9106)
    );
    assert_eq!(missing.body["success"], false);
    let malformed = h
        .send(
            h.client
                .get(h.db_url(""))
                .header("Authorization", "Basic abc"),
        )
        .await;
    assert_eq!(
        (malformed.status, error_code(&malformed)),
        (StatusCode::BAD_REQUEST, 6003)
    );
    assert_eq!(malformed.body["errors"][0]["error_chain"][0]["code"], 6111);
    let wrong = h.send(h.client.get(h.db_url("")).bearer_auth("nope")).await;
    assert_eq!(
        (wrong.status, error_code(&wrong)),
        (StatusCode::FORBIDDEN, 10000)
    );

    let other_account = format!(
        "{}/accounts/ffffffffffffffffffffffffffffffff/d1/database",
        h.emulator.base_url()
    );
    let account = h.send(h.client.get(other_account).bearer_auth(TOKEN)).await;
    assert_eq!(
        (account.status, error_code(&account)),
        (StatusCode::FORBIDDEN, 7403)
    );

    let route = h
        .call(
            Method::GET,
            &format!("/{}/nothing-here", h.fixture_id()),
            None,
        )
        .await;
    assert_eq!(
        (route.status, error_code(&route)),
        (StatusCode::BAD_REQUEST, 7003)
    );
    assert_eq!(route.body["errors"][1]["code"], 7000);

    let not_uuid = h.query("fixture", json!({ "sql": "SELECT 1" })).await;
    assert_eq!(
        (not_uuid.status, error_code(&not_uuid)),
        (StatusCode::BAD_REQUEST, 7400)
    );
    let unknown = h
        .query(
            "00000000-0000-0000-0000-000000000000",
            json!({ "sql": "SELECT 1" }),
        )
        .await;
    assert_eq!(
        (unknown.status, error_code(&unknown)),
        (StatusCode::NOT_FOUND, 7404)
    );

    let method = h
        .call(
            Method::PUT,
            &format!("/{}/query", h.fixture_id()),
            Some(json!({})),
        )
        .await;
    assert_eq!(method.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(method.body["success"], false);
    let garbage = h
        .call(
            Method::POST,
            &format!("/{}/query", h.fixture_id()),
            Some(json!({ "nothing": 1 })),
        )
        .await;
    assert_eq!(
        (garbage.status, error_code(&garbage)),
        (StatusCode::BAD_REQUEST, 7400)
    );
    h.emulator.shutdown().await;
}

#[tokio::test]
async fn query_and_raw_run_like_d1() {
    // Proves params, multi-statement transactions, batch, raw shape, blobs, and D1's SQL errors.
    let h = Harness::new().await;
    let id = h.fixture_id();
    let one = h.query(&id, json!({ "sql": "SELECT id, title FROM posts WHERE id = ? OR title = ?", "params": [1, "none"] })).await;
    assert_eq!(one.status, StatusCode::OK);
    assert_eq!(
        one.body["result"][0]["results"],
        json!([{ "id": 1, "title": "Hello; world" }])
    );
    assert_eq!(one.body["result"][0]["meta"]["changed_db"], false);

    let multi = h
        .query(&id, json!({ "sql": "INSERT INTO empty_table (note) VALUES ('a;b'); SELECT count(*) AS n FROM empty_table;" }))
        .await;
    let results = multi.body["result"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    assert_eq!(results[0]["meta"]["changes"], 1);
    assert_eq!(results[0]["meta"]["changed_db"], true);
    assert_eq!(results[1]["results"][0]["n"], 1);

    let batch = h
        .call(
            Method::POST,
            &format!("/{id}/raw"),
            Some(json!({ "batch": [ { "sql": "SELECT raw FROM measurements WHERE id = ?", "params": [3] }, { "sql": "SELECT 1 AS x" } ] })),
        )
        .await;
    assert_eq!(
        batch.body["result"][0]["results"],
        json!({ "columns": ["raw"], "rows": [[[0, 255, 0, 255]]] })
    );
    assert_eq!(batch.body["result"][1]["results"]["rows"], json!([[1]]));

    let bad = h.query(&id, json!({ "sql": "SELECT * FROM nope" })).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad.body["result"], json!([]));
    assert_eq!(
        bad.body["errors"][0],
        json!({ "code": 7500, "message": "no such table: nope: SQLITE_ERROR" })
    );

    // A failing statement rolls back the ones before it.
    let atomic = h.query(&id, json!({ "sql": "INSERT INTO empty_table (note) VALUES ('x'); INSERT INTO nope VALUES (1);" })).await;
    assert_eq!(atomic.status, StatusCode::BAD_REQUEST);
    let count = h
        .query(
            &id,
            json!({ "sql": "SELECT count(*) AS n FROM empty_table" }),
        )
        .await;
    assert_eq!(count.body["result"][0]["results"][0]["n"], 1);

    let constraint = h
        .query(
            &id,
            json!({ "sql": "INSERT INTO authors (id, name) VALUES (1, 'dup')" }),
        )
        .await;
    assert!(
        constraint.body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .ends_with(": SQLITE_CONSTRAINT")
    );
    for refused in [
        "BEGIN TRANSACTION",
        "CREATE TABLE _cf_KV (k)",
        "PRAGMA journal_mode=WAL",
        "ATTACH 'x.db' AS x",
    ] {
        let answer = h.query(&id, json!({ "sql": refused })).await;
        assert_eq!(
            (answer.status, error_code(&answer)),
            (StatusCode::BAD_REQUEST, 7500),
            "{refused}"
        );
    }
    // D1 enforces foreign keys.
    let fk = h
        .query(
            &id,
            json!({ "sql": "INSERT INTO comments (post_id, body) VALUES (999, 'orphan')" }),
        )
        .await;
    assert!(
        fk.body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("FOREIGN KEY constraint failed")
    );
    h.emulator.shutdown().await;
}

#[tokio::test]
async fn bookmarks_advance_with_every_change() {
    // Proves a new, larger bookmark after a write, none after a read, and timestamp lookups.
    let h = Harness::new().await;
    let id = h.fixture_id();
    let path = format!("/{id}/time_travel/bookmark");
    let get = || h.call(Method::GET, &path, None);
    let first = get().await.body["result"]["bookmark"]
        .as_str()
        .unwrap()
        .to_owned();
    h.query(&id, json!({ "sql": "SELECT 1" })).await;
    assert_eq!(get().await.body["result"]["bookmark"], first);
    h.query(
        &id,
        json!({ "sql": "INSERT INTO empty_table (note) VALUES ('x')" }),
    )
    .await;
    let second = get().await.body["result"]["bookmark"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(second > first, "{second} > {first}");
    let shape: Vec<usize> = second.split('-').map(str::len).collect();
    assert_eq!(shape, vec![8, 8, 8, 32]);
    let past = h
        .call(
            Method::GET,
            &format!("/{id}/time_travel/bookmark?timestamp=2000-01-01T00:00:00Z"),
            None,
        )
        .await;
    assert_eq!(past.body["result"]["bookmark"], first);
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let at_now = h
        .call(
            Method::GET,
            &format!("/{id}/time_travel/bookmark?timestamp={now}"),
            None,
        )
        .await;
    assert!(at_now.body["result"]["bookmark"].as_str().is_some());
    assert_eq!(h.emulator.bookmarks("fixture").unwrap().len(), 2);
    h.emulator.shutdown().await;
}

#[tokio::test]
async fn a_bookmark_moves_on_every_write_and_never_otherwise() {
    // Proves what d1vault's skip_unchanged relies on: reads, failed writes (rolled back), exports and a
    // failed import leave the bookmark where it was; a row write, a schema-only change and an import
    // each move it.
    let h = Harness::new().await;
    let id = h.fixture_id();
    let path = format!("/{id}/time_travel/bookmark");
    let get = || async {
        h.call(Method::GET, &path, None).await.body["result"]["bookmark"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let start = get().await;
    let reads = [
        "SELECT * FROM posts",
        "PRAGMA table_list",
        "SELECT count(*) FROM empty_table",
    ];
    for sql in reads {
        assert_eq!(
            h.query(&id, json!({ "sql": sql })).await.status,
            StatusCode::OK
        );
    }
    assert_eq!(get().await, start, "reads do not move the bookmark");
    let failed = h
        .query(
            &id,
            json!({ "sql": "INSERT INTO empty_table (note) VALUES ('x'); SELECT * FROM nope;" }),
        )
        .await;
    assert_eq!(failed.status, StatusCode::BAD_REQUEST);
    let refused = h
        .query(&id, json!({ "sql": "CREATE TABLE _cf_x (k)" }))
        .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    let (export, _) = h.export(&id, json!({})).await;
    assert_eq!(export["status"], "complete");
    let import = h
        .import(&id, "INSERT INTO empty_table (note) VALUES ('y'); BOGUS;")
        .await;
    assert_eq!(import["status"], "error");
    assert_eq!(
        get().await,
        start,
        "failed writes, an export and a failed import do not move the bookmark"
    );

    h.query(
        &id,
        json!({ "sql": "INSERT INTO empty_table (note) VALUES ('z')" }),
    )
    .await;
    let after_insert = get().await;
    assert!(after_insert > start, "a row write moves it");
    h.query(
        &id,
        json!({ "sql": "CREATE INDEX empty_note ON empty_table (note)" }),
    )
    .await;
    let after_index = get().await;
    assert!(
        after_index > after_insert,
        "a schema change without rows moves it"
    );
    let import = h
        .import(&id, "INSERT INTO empty_table (note) VALUES ('w');")
        .await;
    assert_eq!(import["status"], "complete", "{import}");
    assert!(get().await > after_index, "an import moves it");
    h.emulator.shutdown().await;
}

#[tokio::test]
async fn export_serves_the_d1_dump_and_honours_options() {
    // Proves the polling protocol, the download equals `d1_dump::write_dump`'s output, dump_options, one export at a time.
    let h = Harness::new().await;
    let id = h.fixture_id();
    let (result, _) = h
        .export(
            &id,
            json!({ "no_data": false, "no_schema": false, "tables": [] }),
        )
        .await;
    assert_eq!(result["status"], "complete");
    assert_eq!(result["type"], "export");
    assert!(
        result["result"]["filename"]
            .as_str()
            .unwrap()
            .starts_with(&id)
    );
    let url = result["result"]["signed_url"].as_str().unwrap();
    let response = h.client.get(url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let length = response.content_length().unwrap();
    let downloaded = response.text().await.unwrap();
    assert_eq!(downloaded.len() as u64, length);
    let conn = rusqlite::Connection::open(h.dir.path().join("fixture.sqlite")).unwrap();
    let mut expected = Vec::new();
    write_dump(&conn, &DumpOptions::default(), &mut expected).unwrap();
    assert_eq!(downloaded.as_bytes(), expected.as_slice());

    let (schema_only, _) = h
        .export(&id, json!({ "no_data": true, "tables": ["posts"] }))
        .await;
    let text = h
        .client
        .get(schema_only["result"]["signed_url"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        text,
        "PRAGMA defer_foreign_keys=TRUE;\nCREATE TABLE posts (\n  id INTEGER PRIMARY KEY,\n  author_id INTEGER REFERENCES \"authors\"(id),\n  title TEXT NOT NULL,\n  body TEXT,\n  score REAL,\n  cover BLOB\n);"
    );

    h.emulator.shutdown().await;
}

#[tokio::test]
async fn an_unchanged_database_reuses_its_export_and_a_change_makes_a_new_one() {
    // Proves the emulator's export reuse: same bookmark and options give the same file under a new URL
    // (the old one expires), different options or a write give a fresh dump with the new content.
    let h = Harness::new().await;
    let id = h.fixture_id();
    let all = json!({ "no_data": false, "no_schema": false, "tables": [] });
    let download = |result: Value| {
        let url = result["result"]["signed_url"].as_str().unwrap().to_string();
        let client = h.client.clone();
        async move {
            let response = client.get(&url).send().await.unwrap();
            (url, response.status(), response.text().await.unwrap())
        }
    };
    let export_files = || {
        std::fs::read_dir(h.dir.path().join(".d1-emulator/exports"))
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .collect::<Vec<_>>()
    };
    let (first_url, _, first) = download(h.export(&id, all.clone()).await.0).await;
    let first_files = export_files();
    let (second_url, status, second) = download(h.export(&id, all.clone()).await.0).await;
    assert_eq!(status, StatusCode::OK);
    assert_ne!(first_url, second_url, "every export gets its own URL");
    assert_eq!(first, second);
    assert_eq!(first_files.len(), 1);
    assert_eq!(
        export_files(),
        first_files,
        "the unchanged dump was reused, not written again"
    );
    let old = h.client.get(&first_url).send().await.unwrap();
    assert_eq!(old.status(), StatusCode::NOT_FOUND, "the older URL expired");

    let (_, _, schema) = download(h.export(&id, json!({ "no_data": true })).await.0).await;
    assert!(
        !schema.contains("INSERT INTO"),
        "other options are a new dump"
    );

    h.query(
        &id,
        json!({ "sql": "INSERT INTO authors (name) VALUES ('reused?')" }),
    )
    .await;
    let (_, _, after) = download(h.export(&id, all).await.0).await;
    assert!(after.contains("'reused?'"), "a write makes a new dump");
    let last_files = export_files();
    assert_eq!(
        last_files.len(),
        1,
        "a database keeps only its newest export"
    );
    assert_ne!(last_files, first_files);
    h.emulator.shutdown().await;
}

#[tokio::test]
async fn export_faults_and_virtual_tables_end_in_error() {
    // Proves export_active_polls, export_error and D1's virtual-table refusal.
    let h = Harness::new().await;
    let id = h.fixture_id();
    h.emulator.faults().set(Faults {
        export_active_polls: Some(4),
        ..Default::default()
    });
    let (result, polls) = h.export(&id, json!({})).await;
    assert_eq!(result["status"], "complete");
    assert_eq!(polls, 5);

    h.emulator.faults().set(Faults {
        export_error: Some("injected export failure".into()),
        ..Default::default()
    });
    let (result, _) = h.export(&id, json!({})).await;
    assert_eq!(result["status"], "error");
    assert_eq!(result["error"], "injected export failure");

    h.query(
        &id,
        json!({ "sql": "CREATE VIRTUAL TABLE docs USING fts5(body)" }),
    )
    .await;
    let (result, _) = h.export(&id, json!({})).await;
    assert_eq!(result["status"], "error");
    assert_eq!(
        result["error"],
        "D1 Export error: cannot export databases with Virtual Tables (fts5)"
    );
    let bad_format = h
        .call(
            Method::POST,
            &format!("/{id}/export"),
            Some(json!({ "output_format": "file" })),
        )
        .await;
    assert_eq!(bad_format.status, StatusCode::BAD_REQUEST);
    h.emulator.shutdown().await;
}

#[tokio::test]
async fn import_creates_fts5_tables_and_only_per_table_exports_work_then() {
    // Proves the emulator behaves as D1 with virtual tables: an import may create FTS5 tables (d1vault's
    // completed dump: CREATE VIRTUAL TABLE, rows with rowid, 'rebuild', triggers) and they search; a
    // whole-database export then ends in D1's error, while an export naming ordinary tables works.
    let h = Harness::new().await;
    let source = rusqlite::Connection::open_in_memory().unwrap();
    source
        .execute_batch(include_str!("../../../../tests/fixtures/fts.sql"))
        .unwrap();
    let mut dump = Vec::new();
    d1_dump::write_dump_with(
        &source,
        &DumpOptions::default(),
        d1_dump::VirtualTables::Complete,
        &mut dump,
    )
    .unwrap();
    let id = h.create("search").await;
    let result = h.import(&id, std::str::from_utf8(&dump).unwrap()).await;
    assert_eq!(result["status"], "complete", "{result}");
    let answer = h
        .query(
            &id,
            json!({ "sql": "SELECT rowid AS id FROM posts_fts WHERE posts_fts MATCH 'search' ORDER BY rowid; \
                            SELECT rowid AS id FROM names WHERE names MATCH 'rich'" }),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
    assert_eq!(
        answer.body["result"][0]["results"],
        json!([{"id": 1}, {"id": 4}, {"id": 5}])
    );
    assert_eq!(answer.body["result"][1]["results"], json!([{"id": 1}]));

    let (result, _) = h.export(&id, json!({})).await;
    assert_eq!(result["status"], "error");
    assert_eq!(
        result["error"],
        "D1 Export error: cannot export databases with Virtual Tables (fts5)"
    );
    let (result, _) = h
        .export(&id, json!({ "tables": ["posts", "audit_data"] }))
        .await;
    assert_eq!(result["status"], "complete", "{result}");
    h.emulator.shutdown().await;
}

#[tokio::test]
async fn the_reads_a_backup_completes_fts5_with_work_and_refusals_and_writes_are_seen() {
    // Proves what d1vault's D1 backup relies on: sqlite_schema and PRAGMA table_list (shadow tables) read
    // through /query, paged quote() reads of a contentful FTS5 table, a refused whole export counted in
    // the stats, and the write_after_export fault moving the bookmark after a per-table export.
    let h = Harness::new().await;
    let id = h.create("search").await;
    h.query(
        &id,
        json!({ "sql": "CREATE TABLE posts (id INTEGER PRIMARY KEY, t); \
                        CREATE VIRTUAL TABLE notes USING fts5(body); \
                        INSERT INTO notes(rowid, body) VALUES (9007199254740993, 'it''s'), (2, NULL)" }),
    )
    .await;
    let answer = h
        .query(
            &id,
            json!({ "sql": "SELECT type, name, tbl_name, sql FROM sqlite_schema ORDER BY rowid; \
                            PRAGMA table_list; \
                            SELECT quote(rowid) AS r, quote(body) AS v0 FROM \"notes\" WHERE rowid > 2 \
                            ORDER BY rowid LIMIT 200" }),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
    let schema = answer.body["result"][0]["results"].as_array().unwrap();
    assert!(schema.iter().any(|r| {
        r["name"] == "notes"
            && r["sql"]
                .as_str()
                .unwrap()
                .starts_with("CREATE VIRTUAL TABLE")
    }));
    let shadow: Vec<&str> = answer.body["result"][1]["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["type"] == "shadow")
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert!(
        shadow.contains(&"notes_data") && shadow.contains(&"notes_content"),
        "{shadow:?}"
    );
    assert_eq!(
        answer.body["result"][2]["results"],
        json!([{ "r": "9007199254740993", "v0": "'it''s'" }])
    );

    let (result, _) = h.export(&id, json!({})).await;
    assert_eq!(result["status"], "error");
    assert_eq!(h.emulator.stats().refused_exports, 1);

    let bookmark = |answer: Answer| {
        answer.body["result"]["bookmark"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let before = bookmark(
        h.call(Method::GET, &format!("/{id}/time_travel/bookmark"), None)
            .await,
    );
    h.emulator.faults().set(Faults {
        write_after_export: Some(d1_emulator::WriteAfterExport {
            sql: "INSERT INTO posts (t) VALUES ('late')".into(),
            exports: 1,
        }),
        ..Default::default()
    });
    let (result, _) = h.export(&id, json!({ "tables": ["posts"] })).await;
    assert_eq!(result["status"], "complete", "{result}");
    let after = bookmark(
        h.call(Method::GET, &format!("/{id}/time_travel/bookmark"), None)
            .await,
    );
    assert_ne!(
        before, after,
        "the write after the export moves the bookmark"
    );
    let (result, _) = h.export(&id, json!({ "tables": ["posts"] })).await;
    assert_eq!(result["status"], "complete", "{result}");
    let again = bookmark(
        h.call(Method::GET, &format!("/{id}/time_travel/bookmark"), None)
            .await,
    );
    assert_eq!(after, again, "the fault is used up");
    assert_eq!(h.emulator.stats().refused_exports, 1);
    h.emulator.shutdown().await;
}

#[tokio::test]
async fn second_export_while_one_runs_is_refused() {
    // Proves one export at a time per database, with D1's message, while the first is still running.
    let h = Harness::new().await;
    let id = h.fixture_id();
    // Hold the database so the export cannot finish: a long import keeps the connection busy.
    let conn_holder = {
        let path = h.dir.path().join("fixture.sqlite");
        let conn = rusqlite::Connection::open(path).unwrap();
        conn.execute_batch("BEGIN EXCLUSIVE").unwrap();
        conn
    };
    let start = json!({ "output_format": "polling", "dump_options": {} });
    let first = h
        .call(Method::POST, &format!("/{id}/export"), Some(start.clone()))
        .await;
    assert_eq!(first.body["result"]["status"], "active");
    let second = h
        .call(Method::POST, &format!("/{id}/export"), Some(start.clone()))
        .await;
    assert_eq!(
        second.body["result"],
        json!({ "success": false, "error": "Currently processing a long-running export." })
    );
    conn_holder.execute_batch("COMMIT").unwrap();
    drop(conn_holder);
    let mut body = start.clone();
    body["current_bookmark"] = first.body["result"]["at_bookmark"].clone();
    let mut status = String::new();
    for _ in 0..60 {
        let poll = h
            .call(Method::POST, &format!("/{id}/export"), Some(body.clone()))
            .await;
        status = poll.body["result"]["status"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if status != "active" {
            break;
        }
    }
    assert_eq!(status, "complete");
    h.emulator.shutdown().await;
}

#[tokio::test]
async fn download_faults_misbehave_as_configured() {
    // Proves truncate, html, empty and expired downloads, each applying to one download only.
    let h = Harness::new().await;
    let (result, _) = h.export(&h.fixture_id(), json!({})).await;
    let url = result["result"]["signed_url"].as_str().unwrap().to_owned();
    // A client without connection reuse: the truncated download kills its connection mid-body, and a
    // pooled connection could be picked for the next request while the server is closing it.
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();

    h.emulator.faults().set(Faults {
        download: Some(DownloadFault::Truncate),
        ..Default::default()
    });
    let response = client.get(&url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let announced = response.content_length().unwrap();
    assert!(
        response.bytes().await.is_err(),
        "a truncated body must fail to read ({announced} bytes announced)"
    );

    h.emulator.faults().set(Faults {
        download: Some(DownloadFault::Html),
        ..Default::default()
    });
    let response = client.get(&url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );

    h.emulator.faults().set(Faults {
        download: Some(DownloadFault::Empty),
        ..Default::default()
    });
    let response = client.get(&url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.bytes().await.unwrap().is_empty());

    h.emulator.faults().set(Faults {
        download: Some(DownloadFault::Expired),
        ..Default::default()
    });
    assert_eq!(
        client.get(&url).send().await.unwrap().status(),
        StatusCode::NOT_FOUND
    );

    let response = client.get(&url).send().await.unwrap();
    assert_eq!(response.bytes().await.unwrap().len() as u64, announced);
    let unknown = format!("http://{}/__emulator/exports/nope", h.emulator.addr());
    assert_eq!(
        h.client.get(unknown).send().await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
    h.emulator.shutdown().await;
}

#[tokio::test]
async fn a_non_ascii_word_gets_an_answer_and_leaves_no_transaction_open() {
    // Proves a word whose fourth byte falls inside a character (`abcé`) no longer panics the emulator:
    // it is answered, a batch it fails is rolled back whole, and the database serves the next request
    // unchanged; the import path rolls back the same way.
    let h = Harness::new().await;
    let id = h.fixture_id();
    let before = h.contents("fixture");
    let works = h.query(&id, json!({ "sql": "SELECT 1 AS abcé" })).await;
    assert_eq!(works.status, StatusCode::OK, "{:?}", works.body);
    assert_eq!(works.body["result"][0]["results"], json!([{ "abcé": 1 }]));
    let failed = h
        .query(
            &id,
            json!({ "sql": "INSERT INTO empty_table (note) VALUES ('x'); SELECT abcé FROM empty_table;" }),
        )
        .await;
    assert_eq!(failed.status, StatusCode::BAD_REQUEST, "{:?}", failed.body);
    let message = failed.body["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains("no such column: abcé"), "{message}");
    assert_eq!(h.contents("fixture"), before);
    let imported = h
        .import(
            &id,
            "INSERT INTO empty_table (note) VALUES ('z');\nSELECT abcé FROM empty_table;\n",
        )
        .await;
    assert_eq!(imported["status"], "error", "{imported}");
    assert_eq!(h.contents("fixture"), before);
    let next = h
        .query(
            &id,
            json!({ "sql": "INSERT INTO empty_table (note) VALUES ('y'); SELECT count(*) AS n FROM empty_table;" }),
        )
        .await;
    assert_eq!(next.status, StatusCode::OK, "{:?}", next.body);
    assert_eq!(next.body["result"][1]["results"][0]["n"], 1);
}

#[tokio::test]
async fn import_is_atomic_and_names_the_failing_statement() {
    // Proves the import protocol end to end, D1's FK-order refusal of its own dumps, atomicity, and the
    // post-completion poll answer; then a dump loads into a fresh database with foreign keys off.
    let h = Harness::new().await;
    let (result, _) = h.export(&h.fixture_id(), json!({})).await;
    let dump = h
        .client
        .get(result["result"]["signed_url"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let id = h.create("copy").await;
    h.query(
        &id,
        json!({ "sql": "CREATE TABLE keep (x); INSERT INTO keep VALUES (42);" }),
    )
    .await;
    let before = h.contents("copy");

    let failed = h.import(&id, &dump).await;
    assert_eq!(failed["status"], "error");
    let error = failed["error"].as_str().unwrap();
    assert!(
        error.starts_with(
            "no such table: main.posts: SQLITE_ERROR (statement 3: INSERT INTO \"comments\""
        ),
        "{error}"
    );
    assert_eq!(failed["errors"][0], failed["error"]);
    assert_eq!(h.contents("copy"), before);

    for (bad, needle) in [
        (
            "CREATE TABLE a (x);\nBEGIN TRANSACTION;\nINSERT INTO a VALUES (1);\nCOMMIT;",
            "within a transaction",
        ),
        ("CREATE TABLE _cf_KV (k);", "not authorized"),
        (
            &format!(
                "CREATE TABLE b (x); INSERT INTO b VALUES ('{}');",
                "y".repeat(100_001)
            ),
            "too long",
        ),
    ] {
        let result = h.import(&id, bad).await;
        assert_eq!(result["status"], "error");
        assert!(
            result["error"].as_str().unwrap().contains(needle),
            "{}",
            result["error"]
        );
        assert_eq!(h.contents("copy"), before);
    }

    h.query(&id, json!({ "sql": "DROP TABLE keep" })).await;
    h.emulator.faults().set(Faults {
        enforce_foreign_keys: Some(false),
        ..Default::default()
    });
    let done = h.import(&id, &dump).await;
    assert_eq!(done["status"], "complete", "{done}");
    assert!(done["result"]["num_queries"].as_u64().unwrap() > 30);
    assert!(
        done["result"]["final_bookmark"].as_str().unwrap() > done["at_bookmark"].as_str().unwrap()
    );
    assert_eq!(h.contents("copy"), h.contents("fixture"));

    let after = h
        .call(
            Method::POST,
            &format!("/{id}/import"),
            Some(json!({ "action": "poll", "current_bookmark": done["at_bookmark"] })),
        )
        .await;
    assert_eq!(
        after.body["result"],
        json!({ "success": false, "error": "Not currently importing anything." })
    );

    // init with an etag already uploaded starts the import without a new upload (a polling answer, no
    // `upload_url`), as D1 answers a client that retries an import.
    use md5::{Digest, Md5};
    let etag = hex::encode(Md5::digest(dump.as_bytes()));
    let again = h
        .call(
            Method::POST,
            &format!("/{id}/import"),
            Some(json!({ "action": "init", "etag": etag })),
        )
        .await;
    assert!(again.body["result"].get("upload_url").is_none());
    assert_eq!(again.body["result"]["type"], "import");
    h.emulator.shutdown().await;
}

#[tokio::test]
async fn api_faults_rate_limit_and_server_errors_then_recover() {
    // Proves 429 bursts with Retry-After, 5xx bursts, the admin endpoint's auth, and request statistics.
    let h = Harness::new().await;
    h.emulator.faults().set(Faults {
        rate_limit: Some(RateLimitFault {
            count: 2,
            retry_after_secs: 7,
        }),
        server_error: Some(ServerErrorFault {
            count: 1,
            status: 502,
        }),
        ..Default::default()
    });
    for _ in 0..2 {
        let limited = h.call(Method::GET, "", None).await;
        assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(limited.headers["retry-after"], "7");
        assert_eq!(limited.body["success"], false);
    }
    let failed = h.call(Method::GET, "", None).await;
    assert_eq!(failed.status, StatusCode::BAD_GATEWAY);
    assert_eq!(failed.body["success"], false);
    assert_eq!(h.call(Method::GET, "", None).await.status, StatusCode::OK);

    let admin = format!("http://{}/__emulator/faults", h.emulator.addr());
    let refused = h
        .client
        .post(&admin)
        .json(&json!({ "server_error": { "count": 1, "status": 503 } }))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    let accepted = h
        .client
        .post(&admin)
        .bearer_auth(TOKEN)
        .json(&json!({ "server_error": { "count": 1, "status": 503 } }))
        .send()
        .await
        .unwrap();
    assert_eq!(accepted.status(), StatusCode::OK);
    assert_eq!(
        h.call(Method::GET, "", None).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    let unknown_field = h
        .client
        .post(&admin)
        .bearer_auth(TOKEN)
        .json(&json!({ "bogus": 1 }))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown_field.status(), StatusCode::BAD_REQUEST);

    h.query(&h.fixture_id(), json!({ "sql": "SELECT 1" })).await;
    let stats = h.emulator.stats();
    assert_eq!(stats.total, 6);
    assert_eq!(stats.by_route["list"], 5);
    assert_eq!(stats.by_route["query"], 1);
    assert!(stats.peak_per_second >= 1 && stats.peak_per_300_seconds == 6);
    let over_http: Value = h
        .client
        .get(format!("http://{}/__emulator/stats", h.emulator.addr()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(over_http["total"], 6);
    h.emulator.shutdown().await;
}

#[test]
fn binary_prints_its_address_and_serves() {
    // Proves the d1-emulator binary binds port 0, prints the `listening on` line, and answers the API.
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_d1-emulator"))
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .args(["--token", "secret", "--faults", r#"{"download":"empty"}"#])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let base = line
        .trim()
        .strip_prefix("listening on ")
        .expect("listening line")
        .to_owned();
    assert!(
        base.starts_with("http://127.0.0.1:") && base.ends_with("/client/v4"),
        "{base}"
    );
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let status = runtime.block_on(async {
        reqwest::Client::new()
            .get(format!("{base}/accounts/{ACCOUNT}/d1/database"))
            .bearer_auth("secret")
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .unwrap()
            .status()
    });
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn time_travel_restore_returns_exactly_to_a_bookmark_and_can_be_undone() {
    // Proves restore by bookmark and by timestamp brings back the database file byte for byte, answers
    // D1's envelope with a new bookmark and an undo point, and refuses bad or too-old points with a 400.
    let h = Harness::new().await;
    let id = h.fixture_id();
    let file = h.dir.path().join("fixture.sqlite");
    let bookmark = || async {
        h.call(Method::GET, &format!("/{id}/time_travel/bookmark"), None)
            .await
            .body["result"]["bookmark"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let (hr, idr) = (&h, &id);
    let restore = move |query: String| {
        let path = format!("/{idr}/time_travel/restore?{query}");
        async move { hr.call(Method::POST, &path, None).await }
    };
    let at_start = bookmark().await;
    let bytes_at_start = std::fs::read(&file).unwrap();
    // Reads before the first write do not disturb anything.
    h.query(&id, json!({ "sql": "SELECT count(*) FROM posts" }))
        .await;
    let write = |sql: &'static str| h.query(&id, json!({ "sql": sql }));
    assert_eq!(
        write("CREATE TABLE tt (x); INSERT INTO tt VALUES (1)")
            .await
            .status,
        StatusCode::OK
    );
    let after_first = bookmark().await;
    let bytes_after_first = std::fs::read(&file).unwrap();
    let time_after_first = chrono::Utc::now();
    tokio::time::sleep(Duration::from_millis(5)).await; // timestamps have microsecond resolution
    assert_eq!(
        write("INSERT INTO tt VALUES (2); DELETE FROM empty_table")
            .await
            .status,
        StatusCode::OK
    );
    let before_restore = bookmark().await;
    assert!(before_restore > after_first && after_first > at_start);

    let answer = restore(format!("bookmark={at_start}")).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(answer.body["success"], true);
    assert_eq!(
        answer.body["result"]["message"],
        "Database restored successfully"
    );
    assert_eq!(
        answer.body["result"]["previous_bookmark"],
        before_restore.as_str()
    );
    let new = answer.body["result"]["bookmark"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        new > before_restore,
        "a restore is a change with its own bookmark"
    );
    assert_eq!(bookmark().await, new);
    assert!(
        std::fs::read(&file).unwrap() == bytes_at_start,
        "restored byte for byte"
    );
    let gone = h.query(&id, json!({ "sql": "SELECT * FROM tt" })).await;
    assert!(
        gone.body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("no such table: tt")
    );

    // The connection was reopened: writes work, and undoing the restore brings back the later state.
    let undo = restore(format!("bookmark={before_restore}")).await;
    assert_eq!(undo.status, StatusCode::OK, "{}", undo.body);
    let rows = h
        .query(&id, json!({ "sql": "SELECT x FROM tt ORDER BY x" }))
        .await;
    assert_eq!(
        rows.body["result"][0]["results"],
        json!([{ "x": 1 }, { "x": 2 }])
    );

    // By timestamp: the newest state at or before it.
    let ts = time_after_first.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let by_time = restore(format!("timestamp={}", ts.replace('+', "%2B"))).await;
    assert_eq!(by_time.status, StatusCode::OK, "{}", by_time.body);
    assert!(
        std::fs::read(&file).unwrap() == bytes_after_first,
        "the file differs from bytes_after_first"
    );

    // A bookmark between two known ones means the older state; the current one is a no-op restore.
    let between = format!("{}{}", &after_first[..27], "f".repeat(32));
    assert_eq!(
        restore(format!("bookmark={between}")).await.status,
        StatusCode::OK
    );
    assert!(
        std::fs::read(&file).unwrap() == bytes_after_first,
        "the file differs from bytes_after_first"
    );
    let current = bookmark().await;
    let same = restore(format!("bookmark={current}")).await;
    assert_eq!(same.status, StatusCode::OK);
    assert_eq!(same.body["result"]["previous_bookmark"], current.as_str());
    assert!(
        std::fs::read(&file).unwrap() == bytes_after_first,
        "the file differs from bytes_after_first"
    );

    // Too old, malformed, or both/neither given: Cloudflare-shaped 400s, nothing changed.
    let too_old = restore(format!(
        "bookmark=00000001-00000000-00000000-{}",
        "0".repeat(32)
    ))
    .await;
    assert_eq!(too_old.status, StatusCode::BAD_REQUEST);
    assert_eq!(too_old.body["success"], false);
    assert!(
        too_old.body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("precedes"),
        "{}",
        too_old.body
    );
    for query in [
        "bookmark=nonsense".to_owned(),
        "timestamp=yesterday".to_owned(),
        String::new(),
    ] {
        let bad = restore(query.clone()).await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{query}");
        assert_eq!(bad.body["errors"][0]["code"], 7400, "{query}");
    }
    assert!(
        std::fs::read(&file).unwrap() == bytes_after_first,
        "the file differs from bytes_after_first"
    );
    assert_eq!(h.emulator.stats().by_route["restore"], 9);
    h.emulator.shutdown().await;
}

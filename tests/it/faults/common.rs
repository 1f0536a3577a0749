//! Shared parts of the fault suite: a throttling/holding/cutting TCP proxy, a test bed (S3 server,
//! optional d1-emulator, scratch directory, config writer) and a runner for the `d1vault` binary that
//! checks every output for secrets.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use d1_emulator::{Emulator, EmulatorOptions};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::support::{self, TestS3};

/// The Cloudflare API token the emulator accepts; it must never appear in any output.
pub const TOKEN: &str = "cf-faults-token-SECRET-4e1d";
pub const ACCOUNT: &str = "0123456789abcdef0123456789abcdef";
/// Part of every export download URL the emulator hands out (a signed URL: a secret).
pub const SIGNED_URL_MARK: &str = "/__emulator/exports/";

/// What the proxy does with the client-to-server byte stream.
#[derive(Clone, Default)]
pub struct ProxyOptions {
    /// Forward at most this many bytes per second upstream (per connection).
    pub upstream_bytes_per_sec: Option<u64>,
    /// Forward at most this many bytes per second downstream, server to client (per connection).
    pub downstream_bytes_per_sec: Option<u64>,
    /// When a connection's upstream bytes contain this pattern, stop forwarding that connection (it
    /// hangs) and report it through [`Proxy::wait_held`].
    pub hold_on: Option<Vec<u8>>,
    /// When a connection's upstream bytes contain this pattern, close it at once (both directions).
    pub cut_on: Option<Vec<u8>>,
    /// After this many bytes server to client on a connection, forward nothing more on it and keep it open
    /// (a server that sends part of an answer and goes silent).
    pub stall_downstream_after: Option<u64>,
}

/// A real TCP proxy on 127.0.0.1:0 in front of `upstream`: it forwards bytes both ways, and on request
/// throttles, holds or cuts connections, or stops altogether (an outage).
pub struct Proxy {
    pub endpoint: String,
    /// Total bytes forwarded client to server.
    forwarded: watch::Receiver<u64>,
    /// Total bytes forwarded server to client.
    delivered: watch::Receiver<u64>,
    held: watch::Receiver<bool>,
    /// Bumped to cut every open connection.
    generation: Arc<watch::Sender<u64>>,
    stopped: Arc<AtomicBool>,
    /// Connections accepted so far.
    pub connections: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

/// Whether `window` (the tail of the previous chunk plus this one) contains `pattern`.
fn contains(window: &[u8], pattern: &[u8]) -> bool {
    !pattern.is_empty() && window.windows(pattern.len()).any(|w| w == pattern)
}

impl Proxy {
    pub async fn start(upstream: &str, options: ProxyOptions) -> Proxy {
        let upstream = upstream.trim_start_matches("http://").to_string();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let (forwarded_tx, forwarded) = watch::channel(0u64);
        let (delivered_tx, delivered) = watch::channel(0u64);
        let delivered_tx = Arc::new(delivered_tx);
        let (held_tx, held) = watch::channel(false);
        let generation = Arc::new(watch::channel(0u64).0);
        let stopped = Arc::new(AtomicBool::new(false));
        let connections = Arc::new(AtomicUsize::new(0));
        let forwarded_tx = Arc::new(forwarded_tx);
        let held_tx = Arc::new(held_tx);
        let task = {
            let generation = generation.clone();
            let connections = connections.clone();
            tokio::spawn(async move {
                loop {
                    let Ok((client, _)) = listener.accept().await else {
                        continue;
                    };
                    connections.fetch_add(1, Ordering::SeqCst);
                    let Ok(server) = TcpStream::connect(&upstream).await else {
                        continue;
                    };
                    let cut = generation.subscribe();
                    tokio::spawn(pipe(
                        client,
                        server,
                        options.clone(),
                        forwarded_tx.clone(),
                        delivered_tx.clone(),
                        held_tx.clone(),
                        cut,
                    ));
                }
            })
        };
        Proxy {
            endpoint,
            forwarded,
            delivered,
            held,
            generation,
            stopped,
            connections,
            task,
        }
    }

    /// Waits until at least `bytes` went upstream (bounded: panics after 60 s).
    pub async fn wait_forwarded(&self, bytes: u64) {
        wait_for_bytes(&self.forwarded, bytes, "forwarded").await;
    }

    /// Waits until at least `bytes` came back downstream (bounded: panics after 60 s).
    pub async fn wait_delivered(&self, bytes: u64) {
        wait_for_bytes(&self.delivered, bytes, "delivered").await;
    }

    /// Bytes forwarded upstream so far.
    pub fn forwarded(&self) -> u64 {
        *self.forwarded.borrow()
    }

    /// Waits until a connection was held on the `hold_on` pattern (bounded: panics after 60 s).
    pub async fn wait_held(&self) {
        let mut rx = self.held.clone();
        tokio::time::timeout(Duration::from_secs(60), rx.wait_for(|h| *h))
            .await
            .expect("the proxy never saw the hold pattern")
            .unwrap();
    }

    /// Cuts every open connection; new connections are still accepted (a network blip).
    pub fn cut_connections(&self) {
        self.generation.send_modify(|g| *g += 1);
    }

    /// Cuts every connection and stops listening: later connections are refused (the store is gone).
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        self.task.abort();
        self.cut_connections();
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Waits until the byte `counter` reaches `bytes` (bounded: panics after 60 s).
async fn wait_for_bytes(counter: &watch::Receiver<u64>, bytes: u64, what: &str) {
    let mut rx = counter.clone();
    tokio::time::timeout(Duration::from_secs(60), rx.wait_for(|n| *n >= bytes))
        .await
        .unwrap_or_else(|_| {
            panic!(
                "the proxy never {what} {bytes} bytes (got {})",
                *counter.borrow()
            )
        })
        .unwrap();
}

/// Forwards one connection until either side closes, the proxy cuts it, or the hold pattern appears.
async fn pipe(
    mut client: TcpStream,
    mut server: TcpStream,
    options: ProxyOptions,
    forwarded: Arc<watch::Sender<u64>>,
    delivered: Arc<watch::Sender<u64>>,
    held: Arc<watch::Sender<bool>>,
    mut cut: watch::Receiver<u64>,
) {
    let (mut client_read, mut client_write) = client.split();
    let (mut server_read, mut server_write) = server.split();
    let up = async {
        let mut buf = vec![0u8; 16 * 1024];
        let mut tail: Vec<u8> = Vec::new();
        loop {
            let n = match client_read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let chunk = &buf[..n];
            let mut window = std::mem::take(&mut tail);
            window.extend_from_slice(chunk);
            if options
                .cut_on
                .as_deref()
                .is_some_and(|p| contains(&window, p))
            {
                return;
            }
            if options
                .hold_on
                .as_deref()
                .is_some_and(|p| contains(&window, p))
            {
                held.send_replace(true);
                std::future::pending::<()>().await;
            }
            let keep = window.len().min(256);
            tail = window[window.len() - keep..].to_vec();
            if server_write.write_all(chunk).await.is_err() {
                break;
            }
            forwarded.send_modify(|total| *total += n as u64);
            if let Some(rate) = options.upstream_bytes_per_sec {
                // Throttling, not waiting for anything: this is how a slow uplink behaves.
                tokio::time::sleep(Duration::from_secs_f64(n as f64 / rate as f64)).await;
            }
        }
        let _ = server_write.shutdown().await;
        std::future::pending::<()>().await;
    };
    let down = async {
        let mut buf = vec![0u8; 16 * 1024];
        let mut sent = 0u64;
        loop {
            let n = match server_read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if let Some(limit) = options.stall_downstream_after
                && sent + n as u64 >= limit
            {
                let keep = (limit - sent) as usize;
                let _ = client_write.write_all(&buf[..keep]).await;
                delivered.send_modify(|total| *total += keep as u64);
                std::future::pending::<()>().await;
            }
            sent += n as u64;
            if client_write.write_all(&buf[..n]).await.is_err() {
                break;
            }
            delivered.send_modify(|total| *total += n as u64);
            if let Some(rate) = options.downstream_bytes_per_sec {
                // Throttling, as a slow downlink behaves.
                tokio::time::sleep(Duration::from_secs_f64(n as f64 / rate as f64)).await;
            }
        }
        let _ = client_write.shutdown().await;
    };
    tokio::select! {
        _ = up => {}
        _ = down => {}
        _ = cut.changed() => {}
    }
}

/// Scratch directory, S3 server and (optionally) a d1-emulator, plus the config files written for them.
pub struct Bed {
    pub s3: TestS3,
    pub dir: tempfile::TempDir,
    pub emulator: Option<Emulator>,
    pub http: reqwest::Client,
}

impl Bed {
    /// An S3 server and a scratch directory holding the fixture as `blog.sqlite`.
    pub async fn start() -> Bed {
        let dir = tempfile::tempdir().unwrap();
        crate::support::fixture::create_fixture_db(&dir.path().join("blog.sqlite"));
        Bed {
            s3: support::start_s3().await,
            dir,
            emulator: None,
            http: reqwest::Client::new(),
        }
    }

    /// Also starts a d1-emulator serving a copy of the fixture under each of `names`.
    pub async fn with_emulator(names: &[&str]) -> Bed {
        let mut bed = Bed::start().await;
        let data = bed.dir.path().join("d1");
        std::fs::create_dir_all(&data).unwrap();
        for name in names {
            crate::support::fixture::create_fixture_db(&data.join(format!("{name}.sqlite")));
        }
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let options = EmulatorOptions {
            data_dir: data,
            token: TOKEN.into(),
            account_id: ACCOUNT.into(),
        };
        bed.emulator = Some(Emulator::start(listener, options).await.unwrap());
        bed
    }

    pub fn emulator(&self) -> &Emulator {
        self.emulator.as_ref().expect("this bed has no emulator")
    }

    /// `[storage]` for the test S3 server reached at `endpoint` (the server itself or a proxy).
    pub fn s3_storage(&self, endpoint: &str) -> String {
        format!(
            "type = \"s3\"\nbucket = \"{}\"\nendpoint = \"{endpoint}\"\nregion = \"us-east-1\"\n\
             force_path_style = true\naccess_key_id = \"{}\"\nsecret_access_key = \"{}\"\nprefix = \"faults\"\n\
             part_size = {}\nmax_parts_in_flight = 1\n",
            self.s3.bucket,
            self.s3.access_key_id,
            self.s3.secret_access_key,
            support::TEST_PART_SIZE
        )
    }

    /// Writes `NAME.toml` with the given `[storage]` body, optional extra `[cloudflare]` lines (the
    /// section is written when the bed has an emulator) and `[[database]]` tables; returns its path.
    pub fn write_config(
        &self,
        name: &str,
        storage: &str,
        cloudflare_extra: &str,
        databases: &str,
    ) -> PathBuf {
        let cloudflare = match &self.emulator {
            Some(e) => format!(
                "[cloudflare]\naccount_id = \"{ACCOUNT}\"\napi_token = \"{TOKEN}\"\napi_base_url = \"{}\"\n{cloudflare_extra}\n",
                e.base_url()
            ),
            None => String::new(),
        };
        let text = format!(
            "[daemon]\nstate_dir = \"state\"\nlisten = \"\"\n\n{cloudflare}[storage]\n{storage}\n{databases}\n"
        );
        let path = self.dir.path().join(format!("{name}.toml"));
        std::fs::write(&path, text).unwrap();
        path
    }

    /// A `[[database]]` reading the SQLite file `file` (relative to the scratch directory).
    pub fn sqlite_database(&self, name: &str, file: &str, compression: &str) -> String {
        format!(
            "[[database]]\nname = \"{name}\"\nsqlite_path = \"{}\"\ncompression = \"{compression}\"\n",
            self.dir.path().join(file).display()
        )
    }

    pub async fn set_faults(&self, faults: Value) {
        let url = format!("http://{}/__emulator/faults", self.emulator().addr());
        let response = self
            .http
            .post(url)
            .bearer_auth(TOKEN)
            .json(&faults)
            .send()
            .await
            .unwrap();
        assert!(
            response.status().is_success(),
            "setting faults failed: {}",
            response.status()
        );
    }

    /// The secrets of this bed, none of which may appear in any output.
    pub fn secrets(&self) -> Vec<String> {
        vec![
            TOKEN.to_string(),
            self.s3.secret_access_key.clone(),
            self.s3.access_key_id.clone(),
            SIGNED_URL_MARK.to_string(),
        ]
    }
}

/// How a run of the binary logs: the most verbose level, alternating JSON and text between runs.
static RUNS: AtomicUsize = AtomicUsize::new(0);

fn log_args() -> [&'static str; 3] {
    if RUNS.fetch_add(1, Ordering::SeqCst) % 2 == 0 {
        ["-vv", "--log-format", "json"]
    } else {
        ["-vv", "--log-format", "text"]
    }
}

/// The `d1vault` binary with `--config`, maximal verbosity and `args`, ready to spawn.
pub fn command(config: &Path, args: &[&str]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_d1vault"));
    cmd.arg("--config").arg(config).args(log_args()).args(args);
    cmd.current_dir(config.parent().unwrap());
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// Runs the binary to completion (bounded: 120 s) and checks that its output holds none of `secrets`.
pub async fn run(config: &Path, args: &[&str], secrets: &[String]) -> Output {
    finish(command(config, args).spawn().unwrap(), secrets).await
}

/// Waits for a spawned d1vault to end (bounded: 120 s) and checks that its output holds none of
/// `secrets`.
pub async fn finish(child: tokio::process::Child, secrets: &[String]) -> Output {
    let output = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("d1vault ran longer than 120 s"))
        .unwrap();
    assert_no_secrets(&output, secrets);
    output
}

/// Fails when stdout or stderr contains any of `secrets`, or a panic.
pub fn assert_no_secrets(output: &Output, secrets: &[String]) {
    for (name, bytes) in [("stdout", &output.stdout), ("stderr", &output.stderr)] {
        let text = String::from_utf8_lossy(bytes);
        for secret in secrets {
            assert!(
                !text.contains(secret.as_str()),
                "{name} contains the secret {secret:?}:\n{text}"
            );
        }
        assert!(!text.contains("panicked"), "{name} shows a panic:\n{text}");
    }
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// `d1vault list --json` as parsed manifests (asserting success).
pub async fn list_json(config: &Path, secrets: &[String]) -> Vec<Value> {
    let output = run(config, &["list", "--json"], secrets).await;
    assert!(output.status.success(), "list failed: {}", stderr(&output));
    serde_json::from_slice::<Value>(&output.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

/// Backup ids of a `list --json` result.
pub fn ids(listed: &[Value]) -> Vec<String> {
    listed
        .iter()
        .map(|m| m["backup_id"].as_str().unwrap().to_string())
        .collect()
}

/// A SQLite file of about `mib` MiB of poorly compressible blobs, so an upload takes many packets.
pub fn create_big_db(path: &Path, mib: usize) {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.execute_batch("CREATE TABLE big(id INTEGER PRIMARY KEY, data BLOB NOT NULL);")
        .unwrap();
    let tx = conn.unchecked_transaction().unwrap();
    {
        let mut insert = tx
            .prepare("INSERT INTO big(id, data) VALUES (?1, ?2)")
            .unwrap();
        for i in 0..(mib * 16) {
            insert
                .execute(rusqlite::params![
                    i as i64,
                    support::test_bytes(64 * 1024, i as u64)
                ])
                .unwrap();
        }
    }
    tx.commit().unwrap();
}

/// Asserts a `prune` run succeeded. s3s-fs does not implement ListMultipartUploads, so prune's stale-upload
/// sweep reports an error there; that one error (and only that one) is accepted (Garage covers the sweep
/// in tests/storage.rs).
pub fn assert_prune_ok(output: &Output) {
    if output.status.success() {
        return;
    }
    let err = stderr(output);
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert!(
        output.status.code() == Some(1)
            && !errors.is_empty()
            && errors
                .iter()
                .all(|l| l.contains("ListMultipartUploads is not implemented")),
        "prune failed:\n{err}"
    );
}

/// Waits (at most a second) until a backup started now gets a different id than `id`: ids have
/// one-second resolution, and two backups of one database in the same second share a directory.
pub async fn after_backup_id(id: &str) {
    while d1vault::repository::manifest::backup_id(chrono::Utc::now()) == id {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

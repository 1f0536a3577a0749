//! The test bed every suite builds on: a scratch directory, the in-process S3 server, optionally the
//! d1-emulator in process serving copies of the fixture, configuration files written for them and loaded
//! through the real loader, and backup sources with short retry and poll waits for in-process calls.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use d1_emulator::{Emulator, EmulatorOptions};
use d1vault::cloudflare::{Client, PollSettings, RateLimiter};
use d1vault::config::{self, Config};
use d1vault::repository::manifest::Manifest;
use d1vault::restore::{Progress, sqlite};
use d1vault::retry::RetryPolicy;
use d1vault::sources::BackupSources;
use serde_json::Value;

use super::fixture::create_fixture_db;
use super::s3::{TestS3, start_s3};

/// The Cloudflare API token the emulator accepts; it must never appear in any output.
pub(crate) const TOKEN: &str = "cf-test-token-SECRET-4e1d";
/// The Cloudflare account the emulator serves.
pub(crate) const ACCOUNT: &str = "0123456789abcdef0123456789abcdef";
/// Part of every export download URL the emulator hands out (a signed URL: a secret).
pub(crate) const SIGNED_URL_MARK: &str = "/__emulator/exports/";

/// Scratch directory, S3 server and (optionally) a d1-emulator, plus the config files written for them.
pub(crate) struct Bed {
    /// The in-process S3 server.
    pub(crate) s3: TestS3,
    /// The scratch directory: config files, `state/`, SQLite sources, the emulator's `d1/`.
    pub(crate) dir: tempfile::TempDir,
    emulator: Option<Emulator>,
    http: reqwest::Client,
}

impl Bed {
    /// An S3 server and a scratch directory holding the fixture as the SQLite file `blog.sqlite`.
    pub(crate) async fn start() -> Bed {
        let bed = Bed::without_sources().await;
        create_fixture_db(&bed.dir.path().join("blog.sqlite"));
        bed
    }

    /// An S3 server, a scratch directory and a d1-emulator serving a copy of the fixture under each of
    /// `names` (its files are `d1/NAME.sqlite`, see [`Self::d1_file`]).
    pub(crate) async fn with_emulator(names: &[&str]) -> Bed {
        let mut bed = Bed::without_sources().await;
        let data = bed.dir.path().join("d1");
        std::fs::create_dir_all(&data).unwrap();
        for name in names {
            create_fixture_db(&data.join(format!("{name}.sqlite")));
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let options = EmulatorOptions {
            data_dir: data,
            token: TOKEN.into(),
            account_id: ACCOUNT.into(),
        };
        bed.emulator = Some(Emulator::start(listener, options).await.unwrap());
        bed
    }

    /// The scratch directory and the S3 server, nothing to back up yet.
    async fn without_sources() -> Bed {
        Bed {
            s3: start_s3().await,
            dir: tempfile::tempdir().unwrap(),
            emulator: None,
            http: reqwest::Client::new(),
        }
    }

    /// The emulator (panics for a bed started without one).
    pub(crate) fn emulator(&self) -> &Emulator {
        self.emulator.as_ref().expect("this bed has no emulator")
    }

    /// The SQLite file behind the emulator's database `name`.
    pub(crate) fn d1_file(&self, name: &str) -> PathBuf {
        self.dir.path().join("d1").join(format!("{name}.sqlite"))
    }

    /// The SQLite file behind the emulator's `blog`, the fixture a D1 backup is compared with.
    pub(crate) fn source_db(&self) -> PathBuf {
        self.d1_file("blog")
    }

    /// `[storage]` for the test S3 server reached at `endpoint` (the server itself or a proxy), with keys
    /// under `prefix`.
    pub(crate) fn s3_storage(&self, endpoint: &str, prefix: &str) -> String {
        let mut store = self.s3.store();
        store.endpoint = endpoint.to_string();
        store.storage_toml(prefix)
    }

    /// A `[[database]]` reading the SQLite file `file` (relative to the scratch directory).
    pub(crate) fn sqlite_database(&self, name: &str, file: &str, compression: &str) -> String {
        format!(
            "[[database]]\nname = \"{name}\"\nsqlite_path = \"{}\"\ncompression = \"{compression}\"\n",
            self.dir.path().join(file).display()
        )
    }

    /// Writes `NAME.toml` for one-shot commands (no HTTP listener) with the given `[storage]` body,
    /// optional extra `[cloudflare]` lines (the section is written when the bed has an emulator) and
    /// `[[database]]` tables; returns its path.
    pub(crate) fn write_config(
        &self,
        name: &str,
        storage: &str,
        cloudflare_extra: &str,
        databases: &str,
    ) -> PathBuf {
        self.write_file(
            name,
            &self.config_text("listen = \"\"", cloudflare_extra, storage, databases),
        )
    }

    /// [`Self::write_config`] with the S3 server reached at `endpoint` (itself or a proxy in front) as
    /// storage, keys under `prefix`.
    pub(crate) fn write_s3_config(
        &self,
        name: &str,
        endpoint: &str,
        prefix: &str,
        databases: &str,
    ) -> PathBuf {
        self.write_config(name, &self.s3_storage(endpoint, prefix), "", databases)
    }

    /// Writes `NAME.toml` for `d1vault run`: `daemon` as the `[daemon]` lines after
    /// `state_dir = "state"`, then as [`Self::write_config`]; returns its path.
    pub(crate) fn write_daemon_config(
        &self,
        name: &str,
        daemon: &str,
        storage: &str,
        databases: &str,
    ) -> PathBuf {
        self.write_file(name, &self.config_text(daemon, "", storage, databases))
    }

    /// A configuration file's text: `[daemon]` (state in `state/`), `[cloudflare]` for the emulator when
    /// there is one, `[storage]`, the databases.
    fn config_text(
        &self,
        daemon: &str,
        cloudflare_extra: &str,
        storage: &str,
        databases: &str,
    ) -> String {
        let cloudflare = match &self.emulator {
            Some(e) => format!(
                "[cloudflare]\naccount_id = \"{ACCOUNT}\"\napi_token = \"{TOKEN}\"\napi_base_url = \"{}\"\n{cloudflare_extra}\n",
                e.base_url()
            ),
            None => String::new(),
        };
        format!(
            "[daemon]\nstate_dir = \"state\"\n{daemon}\n\n{cloudflare}[storage]\n{storage}\n{databases}\n"
        )
    }

    /// Writes `text` to `NAME.toml` in the scratch directory; returns its path.
    fn write_file(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(format!("{name}.toml"));
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Writes `d1vault.toml` with `databases` and `storage` (the S3 server under prefix `test` when
    /// `None`) and loads it through the real loader.
    pub(crate) fn config(&self, databases: &str, storage: Option<String>) -> Config {
        let storage = storage.unwrap_or_else(|| self.s3_storage(&self.s3.endpoint, "test"));
        let path = self.write_config("d1vault", &storage, "", databases);
        config::load(&path).unwrap_or_else(|e| panic!("test config invalid:\n{e}"))
    }

    /// The sources `config` opens, with short retry and poll waits so fault tests run in a second or two.
    pub(crate) async fn sources(&self, config: &Config) -> BackupSources {
        let mut sources = d1vault::sources::open(config).await.unwrap();
        sources.cloudflare = sources.cloudflare.map(|client| quick(client, 4));
        sources
    }

    /// [`Self::sources`] with a D1 client that takes `limiter` (shared, as the daemon shares one) and
    /// makes at most `max_attempts` attempts per request.
    pub(crate) async fn sources_limited(
        &self,
        config: &Config,
        limiter: Arc<RateLimiter>,
        max_attempts: u32,
    ) -> BackupSources {
        let mut sources = d1vault::sources::open(config).await.unwrap();
        let cloudflare = config.cloudflare.as_ref().expect("a [cloudflare] section");
        sources.cloudflare = Some(quick(
            Client::new(cloudflare, limiter).unwrap(),
            max_attempts,
        ));
        sources
    }

    /// Sets the emulator's faults (the JSON its `POST /__emulator/faults` takes).
    pub(crate) async fn set_faults(&self, faults: Value) {
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

    /// Restores `manifest` into the new SQLite file `name` in the scratch directory, asserts the checks
    /// against the manifest found no problem, and returns its path.
    pub(crate) async fn restore(
        &self,
        sources: &BackupSources,
        manifest: &Manifest,
        name: &str,
    ) -> PathBuf {
        let path = self.dir.path().join(name);
        let report = sqlite::load_into_new_file(
            sources.storage.as_ref(),
            manifest,
            None,
            &path,
            &mut Progress::hidden(),
        )
        .await
        .unwrap();
        assert!(
            report.problems(manifest).is_empty(),
            "{:?}",
            report.problems(manifest)
        );
        path
    }

    /// The secrets of this bed, none of which may appear in any output.
    pub(crate) fn secrets(&self) -> Vec<String> {
        vec![
            TOKEN.to_string(),
            self.s3.secret_access_key.clone(),
            self.s3.access_key_id.clone(),
            SIGNED_URL_MARK.to_string(),
        ]
    }
}

/// `client` with short backoff (at most `max_attempts` attempts) and short export polls.
fn quick(client: Client, max_attempts: u32) -> Client {
    client
        .with_retry_policy(RetryPolicy {
            max_attempts,
            base: Duration::from_millis(50),
            cap: Duration::from_millis(200),
            max_retry_after: Duration::from_secs(5),
        })
        .with_poll_settings(PollSettings {
            first_delay: Duration::from_millis(20),
            max_delay: Duration::from_millis(50),
        })
}

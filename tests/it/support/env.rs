//! A complete test environment: d1-emulator in process with the fixture as database `blog`, an in-process
//! S3 server, a scratch directory, and helpers to write a real configuration file for them.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use d1_emulator::{Emulator, EmulatorOptions};
use d1vault::cloudflare::{Client, PollSettings, RATE_LIMIT_WINDOW, RateLimiter};
use d1vault::config::{self, Config};
use d1vault::restore::{Progress, sqlite};
use d1vault::retry::RetryPolicy;
use d1vault::sources::BackupSources;
use serde_json::Value;

use super::TestS3;
use super::fixture::create_fixture_db;

pub const TOKEN: &str = "test-token";
pub const ACCOUNT: &str = "0123456789abcdef0123456789abcdef";

/// A running emulator with the fixture as database `blog`, an S3 server, and a scratch directory.
pub struct Env {
    pub emulator: Emulator,
    pub s3: TestS3,
    pub dir: tempfile::TempDir,
    pub http: reqwest::Client,
}

impl Env {
    pub async fn start() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("d1");
        std::fs::create_dir_all(&data).unwrap();
        create_fixture_db(&data.join("blog.sqlite"));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let options = EmulatorOptions {
            data_dir: data,
            token: TOKEN.into(),
            account_id: ACCOUNT.into(),
        };
        let emulator = Emulator::start(listener, options).await.unwrap();
        let s3 = super::start_s3().await;
        Env {
            emulator,
            s3,
            dir,
            http: reqwest::Client::new(),
        }
    }

    pub fn source_db(&self) -> PathBuf {
        self.dir.path().join("d1/blog.sqlite")
    }

    /// Writes a configuration file for this environment and loads it through the real loader.
    pub fn config(&self, database_toml: &str, storage_toml: Option<String>) -> Config {
        let storage = storage_toml.unwrap_or_else(|| {
            format!(
                "type = \"s3\"\nbucket = \"{}\"\nendpoint = \"{}\"\nregion = \"us-east-1\"\nforce_path_style = true\n\
                 access_key_id = \"{}\"\nsecret_access_key = \"{}\"\nprefix = \"test\"\n",
                self.s3.bucket, self.s3.endpoint, self.s3.access_key_id, self.s3.secret_access_key
            )
        });
        let text = format!(
            "[daemon]\nstate_dir = \"state\"\nlisten = \"\"\n\n[cloudflare]\naccount_id = \"{ACCOUNT}\"\n\
             api_token = \"{TOKEN}\"\napi_base_url = \"{}\"\n\n[storage]\n{storage}\n{database_toml}\n",
            self.emulator.base_url()
        );
        let path = self.dir.path().join("d1vault.toml");
        std::fs::write(&path, text).unwrap();
        config::load(&path).unwrap_or_else(|e| panic!("test config invalid:\n{e}"))
    }

    /// Backup sources with short retry and poll waits, so fault tests run in a second or two.
    pub async fn sources(&self, config: &Config) -> BackupSources {
        let storage = d1vault::storage::open(&config.storage).await.unwrap();
        let cf = config.cloudflare.as_ref().unwrap();
        let limiter = Arc::new(RateLimiter::new(cf.requests_per_5min, RATE_LIMIT_WINDOW));
        let client = Client::new(cf, limiter)
            .unwrap()
            .with_retry_policy(RetryPolicy {
                max_attempts: 4,
                base: Duration::from_millis(50),
                cap: Duration::from_millis(200),
                max_retry_after: Duration::from_secs(5),
            })
            .with_poll_settings(PollSettings {
                first_delay: Duration::from_millis(20),
                max_delay: Duration::from_millis(50),
            });
        BackupSources {
            storage,
            prefix: config.storage.prefix().to_string(),
            cloudflare: Some(client),
        }
    }

    pub async fn set_faults(&self, faults: Value) {
        let url = format!("http://{}/__emulator/faults", self.emulator.addr());
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

    pub async fn stats(&self) -> Value {
        let url = format!("http://{}/__emulator/stats", self.emulator.addr());
        self.http
            .get(url)
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Restores `manifest` into a new SQLite file and returns its path.
    pub async fn restore(
        &self,
        sources: &BackupSources,
        manifest: &d1vault::repository::manifest::Manifest,
        name: &str,
    ) -> PathBuf {
        let path = self.dir.path().join(name);
        let report = sqlite::load_into_new_file(
            sources.storage.as_ref(),
            manifest,
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
}

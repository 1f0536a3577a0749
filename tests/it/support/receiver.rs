//! Notification receivers on loopback: one that records every request it gets (path, headers, body) and
//! answers 200, and one that accepts connections and never answers.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, Uri};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// One request as the recording receiver got it.
#[derive(Debug, Clone)]
pub(crate) struct Received {
    /// The request path, query included.
    pub(crate) path: String,
    /// Its headers.
    pub(crate) headers: HeaderMap,
    /// Its body.
    pub(crate) body: Bytes,
}

impl Received {
    /// The body as JSON (panics when it is not).
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{}: body is not JSON ({e}): {:?}", self.path, self.body))
    }

    /// The body as text.
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// An HTTP server on `127.0.0.1:0` that records every request and answers `200 OK`.
pub(crate) struct Recorder {
    /// `http://127.0.0.1:PORT`.
    pub(crate) base: String,
    requests: Arc<Mutex<Vec<Received>>>,
    _server: JoinHandle<()>,
}

impl Recorder {
    /// Binds and starts serving.
    pub(crate) async fn start() -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let recorded = requests.clone();
        let app = axum::Router::new().fallback(move |uri: Uri, headers: HeaderMap, body: Bytes| {
            let recorded = recorded.clone();
            async move {
                let path = uri.path_and_query().map_or("/".into(), |p| p.to_string());
                recorded.lock().unwrap().push(Received {
                    path,
                    headers,
                    body,
                });
                "OK"
            }
        });
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Recorder {
            base,
            requests,
            _server: server,
        }
    }

    /// Every request so far, in arrival order.
    pub(crate) fn received(&self) -> Vec<Received> {
        self.requests.lock().unwrap().clone()
    }

    /// The requests whose path starts with `prefix`, in arrival order.
    pub(crate) fn under(&self, prefix: &str) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| r.path.starts_with(prefix))
            .collect()
    }

    /// Waits (bounded: `within`) until at least `n` requests under `prefix` arrived; returns them.
    pub(crate) async fn wait_for(&self, prefix: &str, n: usize, within: Duration) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let got = self.under(prefix);
            if got.len() >= n {
                return got;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "only {} of {n} requests under {prefix} within {within:?}: {got:?}",
                got.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A listener on `127.0.0.1:0` that accepts every connection and never answers; returns its base URL.
/// The connections stay open while the returned task runs.
pub(crate) async fn silent_receiver() -> (String, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    (base, task)
}

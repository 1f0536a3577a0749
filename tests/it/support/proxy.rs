//! A real TCP proxy in front of a server (the in-process S3 server, usually): it forwards bytes both ways
//! and, on request, throttles, holds or cuts connections, or stops altogether (an outage).

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What the proxy does with the client-to-server byte stream.
#[derive(Clone, Default)]
pub(crate) struct ProxyOptions {
    /// Forward at most this many bytes per second upstream (per connection).
    pub(crate) upstream_bytes_per_sec: Option<u64>,
    /// Forward at most this many bytes per second downstream, server to client (per connection).
    pub(crate) downstream_bytes_per_sec: Option<u64>,
    /// When a connection's upstream bytes contain this pattern, stop forwarding that connection (it
    /// hangs) and report it through [`Proxy::wait_held`].
    pub(crate) hold_on: Option<Vec<u8>>,
    /// When a connection's upstream bytes contain this pattern, close it at once (both directions).
    pub(crate) cut_on: Option<Vec<u8>>,
    /// After this many bytes server to client on a connection, forward nothing more on it and keep it open
    /// (a server that sends part of an answer and goes silent).
    pub(crate) stall_downstream_after: Option<u64>,
}

/// A real TCP proxy on 127.0.0.1:0 in front of `upstream`: it forwards bytes both ways, and on request
/// throttles, holds or cuts connections, or stops altogether (an outage).
pub(crate) struct Proxy {
    /// `http://127.0.0.1:PORT`: the address clients use instead of the upstream's.
    pub(crate) endpoint: String,
    /// Total bytes forwarded client to server.
    forwarded: watch::Receiver<u64>,
    /// Total bytes forwarded server to client.
    delivered: watch::Receiver<u64>,
    /// Set once a connection was held on the `hold_on` pattern.
    held: watch::Receiver<bool>,
    /// Bumped to cut every open connection.
    generation: Arc<watch::Sender<u64>>,
    /// The accept loop; aborting it closes the listener.
    task: tokio::task::JoinHandle<()>,
}

/// Whether `window` (the tail of the previous chunk plus this one) contains `pattern`.
fn contains(window: &[u8], pattern: &[u8]) -> bool {
    !pattern.is_empty() && window.windows(pattern.len()).any(|w| w == pattern)
}

impl Proxy {
    /// Starts forwarding from a fresh loopback port to `upstream` (`http://HOST:PORT` or `HOST:PORT`).
    pub(crate) async fn start(upstream: &str, options: ProxyOptions) -> Proxy {
        let upstream = upstream.trim_start_matches("http://").to_string();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let (forwarded_tx, forwarded) = watch::channel(0u64);
        let (delivered_tx, delivered) = watch::channel(0u64);
        let delivered_tx = Arc::new(delivered_tx);
        let (held_tx, held) = watch::channel(false);
        let generation = Arc::new(watch::channel(0u64).0);
        let forwarded_tx = Arc::new(forwarded_tx);
        let held_tx = Arc::new(held_tx);
        let task = {
            let generation = generation.clone();
            tokio::spawn(async move {
                loop {
                    let Ok((client, _)) = listener.accept().await else {
                        continue;
                    };
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
            task,
        }
    }

    /// Waits until at least `bytes` went upstream (bounded: panics after 60 s).
    pub(crate) async fn wait_forwarded(&self, bytes: u64) {
        wait_for_bytes(&self.forwarded, bytes, "forwarded").await;
    }

    /// Waits until at least `bytes` came back downstream (bounded: panics after 60 s).
    pub(crate) async fn wait_delivered(&self, bytes: u64) {
        wait_for_bytes(&self.delivered, bytes, "delivered").await;
    }

    /// Waits until a connection was held on the `hold_on` pattern (bounded: panics after 60 s).
    pub(crate) async fn wait_held(&self) {
        let mut rx = self.held.clone();
        tokio::time::timeout(Duration::from_secs(60), rx.wait_for(|h| *h))
            .await
            .expect("the proxy never saw the hold pattern")
            .unwrap();
    }

    /// Cuts every open connection; new connections are still accepted (a network blip).
    pub(crate) fn cut_connections(&self) {
        self.generation.send_modify(|g| *g += 1);
    }

    /// Cuts every connection and stops listening: later connections are refused (the store is gone).
    pub(crate) fn stop(&self) {
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

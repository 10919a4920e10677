//! The listener: learn the cluster, accept clients up to the connection limit, stop on
//! SIGTERM/SIGINT.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::admin::{Metrics, METRICS};
use crate::cluster::refresh;
use crate::config::Config;
use crate::dispatch::Router;
use crate::session::{self, ClientId};

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("cluster topology: {0}")]
    Topology(#[from] refresh::RefreshError),
}

/// How long a shutdown waits for sessions to write the replies they still owe.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Run the proxy until a shutdown signal. Prints `slotgate listening on ADDR` on stdout
/// once clients can connect (scripts and tests wait for that line). On SIGTERM/SIGINT:
/// stop accepting, let every session finish the requests it has read, then return.
pub async fn run(config: Config) -> Result<(), ServerError> {
    let listen = config.listen;
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|source| ServerError::Bind {
            addr: listen,
            source,
        })?;
    let local = listener.local_addr().map_err(|source| ServerError::Bind {
        addr: listen,
        source,
    })?;

    let router = Router::new(config);
    refresh::initial(&router).await?;
    tokio::spawn(refresh::run(router.clone()));

    tracing::info!(%local, masters = router.table.load().masters().count(), "slotgate ready");
    println!("slotgate listening on {local}");
    let _ = std::io::stdout().flush();

    let next_id = AtomicU64::new(1);
    let max_clients = router.config.max_clients as u64;
    // The accept loop sends `true` once on shutdown; every session holds a receiver.
    let (stop_sessions, stop_rx) = watch::channel(false);
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => {
                drop(listener);
                let open = METRICS.connections_open.load(Relaxed);
                tracing::info!(open, "shutdown signal received; draining clients");
                let _ = stop_sessions.send(true);
                let started = std::time::Instant::now();
                while METRICS.connections_open.load(Relaxed) > 0 && started.elapsed() < DRAIN_TIMEOUT {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                tracing::info!(left = METRICS.connections_open.load(Relaxed), "slotgate stopped");
                return Ok(());
            }
            accepted = listener.accept() => {
                let (mut stream, peer) = match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        // Out of file descriptors and the like: back off briefly.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                };
                if METRICS.connections_open.load(Relaxed) >= max_clients {
                    Metrics::inc(&METRICS.connections_rejected);
                    tracing::warn!(%peer, max_clients, "client refused: max_clients reached");
                    tokio::spawn(async move {
                        let _ = stream.write_all(b"-ERR max number of clients reached\r\n").await;
                    });
                    continue;
                }
                let _ = stream.set_nodelay(true);
                let id = ClientId(next_id.fetch_add(1, Relaxed));
                Metrics::inc(&METRICS.connections_total);
                Metrics::inc(&METRICS.connections_open);
                let router = router.clone();
                let stop = stop_rx.clone();
                tokio::spawn(async move {
                    session::run(router, stream, id, stop).await;
                    METRICS.connections_open.fetch_sub(1, Relaxed);
                });
            }
        }
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

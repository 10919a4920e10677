//! The listener side: learn the cluster, then run one worker per core. Each worker is a
//! thread with its own single-threaded runtime, its own listening socket
//! (`SO_REUSEPORT`, so the kernel spreads clients), its own sessions and its own
//! backend connections: a request never crosses threads, takes no lock and wakes no
//! other thread. Only the slot table and counters are shared.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::watch;

use crate::admin::{Metrics, METRICS};
use crate::backend::Worker;
use crate::cluster::refresh;
use crate::config::Config;
use crate::dispatch::Router;
use crate::session::{self, ClientId};

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cluster topology: {0}")]
    Topology(#[from] refresh::RefreshError),
    #[error("starting the runtime: {0}")]
    Runtime(std::io::Error),
}

/// How long a shutdown waits for sessions to write the replies they still owe.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Client ids are unique across workers.
static NEXT_CLIENT_ID: AtomicU64 = AtomicU64::new(1);

/// Run the proxy until SIGTERM/SIGINT. Prints `slotgate listening on ADDR` on stdout
/// once clients can connect (scripts and tests wait for that line). On a signal every
/// worker stops accepting, lets its sessions finish the requests they have read, and
/// returns.
pub fn run(config: Config) -> Result<(), ServerError> {
    let workers = config.workers;
    let listen = config.listen;
    let router = Router::new(config, workers);
    let main_rt = runtime()?;

    // Bind every worker's socket first, so a port-0 listen resolves to one port.
    let listeners = main_rt.block_on(async {
        let first = bind(listen)?;
        let local = first.local_addr().map_err(|source| ServerError::Bind {
            addr: listen,
            source,
        })?;
        let mut all = vec![first];
        for _ in 1..workers {
            all.push(bind(local)?);
        }
        refresh::initial(&router).await?;
        let std: Result<Vec<_>, _> = all.into_iter().map(|l| l.into_std()).collect();
        std.map(|l| (local, l)).map_err(|source| ServerError::Bind {
            addr: listen,
            source,
        })
    });
    let (local, listeners) = listeners?;

    tracing::info!(%local, workers, masters = router.table.load().masters().count(), "slotgate ready");
    println!("slotgate listening on {local}");
    let _ = std::io::stdout().flush();

    // Sent once, `true`, by the main thread on a signal; each session holds a receiver.
    let (stop, stop_rx) = watch::channel(false);
    let mut threads = Vec::new();
    let mut listeners = listeners.into_iter();
    let first = listeners.next();
    for (index, listener) in listeners.enumerate() {
        let router = router.clone();
        let stop_rx = stop_rx.clone();
        let thread = std::thread::Builder::new()
            .name(format!("slotgate-worker-{}", index + 1))
            .spawn(move || {
                let rt = runtime()?;
                run_local(&rt, serve(router, index + 1, listener, stop_rx));
                Ok::<(), ServerError>(())
            })
            .map_err(ServerError::Runtime)?;
        threads.push(thread);
    }

    // The main thread is worker 0 and also runs the refresher and the signal handler.
    run_local(&main_rt, async move {
        tokio::spawn(refresh::run(router.clone()));
        if let Some(listener) = first {
            tokio::task::spawn_local(serve(router.clone(), 0, listener, stop_rx));
        }
        shutdown_signal().await;
        tracing::info!(
            open = METRICS.connections_open.load(Relaxed),
            "shutdown signal received; draining clients"
        );
        let _ = stop.send(true);
        let started = std::time::Instant::now();
        while METRICS.connections_open.load(Relaxed) > 0 && started.elapsed() < DRAIN_TIMEOUT {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    for thread in threads {
        let _ = thread.join();
    }
    tracing::info!(
        left = METRICS.connections_open.load(Relaxed),
        "slotgate stopped"
    );
    Ok(())
}

/// Run `main` as a task on a `LocalSet` until it finishes. `LocalSet::block_on` polls
/// its own future on every wake-up of any task, so the long-lived future runs as a
/// task and `block_on` only waits on a oneshot, which is cheap to poll.
fn run_local(rt: &tokio::runtime::Runtime, main: impl std::future::Future<Output = ()> + 'static) {
    let local_set = tokio::task::LocalSet::new();
    let (done, finished) = tokio::sync::oneshot::channel::<()>();
    local_set.spawn_local(async move {
        main.await;
        let _ = done.send(());
    });
    let _ = local_set.block_on(rt, finished);
}

fn runtime() -> Result<tokio::runtime::Runtime, ServerError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(ServerError::Runtime)
}

fn bind(addr: SocketAddr) -> Result<TcpListener, ServerError> {
    let err = |source| ServerError::Bind { addr, source };
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(err)?;
    socket.set_reuseaddr(true).map_err(err)?;
    #[cfg(unix)]
    socket.set_reuseport(true).map_err(err)?;
    socket.bind(addr).map_err(err)?;
    socket.listen(1024).map_err(err)
}

/// One worker: accept on its own socket and run each client's session on this thread,
/// until the stop signal; then wait (bounded) for its sessions to drain.
async fn serve(
    router: Arc<Router>,
    index: usize,
    listener: std::net::TcpListener,
    mut stop: watch::Receiver<bool>,
) {
    let listener = match TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(worker = index, error = %e, "worker cannot use its listener");
            return;
        }
    };
    let worker = Worker::new(router.clone(), index);
    let watchdog = tokio::task::spawn_local(worker.clone().watchdog());
    let retries = tokio::task::spawn_local(worker.clone().run_retries());
    let flusher = tokio::task::spawn_local(crate::backend::reply::run_flusher());
    let max_clients = router.config.max_clients as u64;
    loop {
        tokio::select! {
            _ = stop.wait_for(|&s| s) => break,
            accepted = listener.accept() => {
                let (mut stream, peer) = match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        // Out of file descriptors and the like: back off briefly.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                if METRICS.connections_open.load(Relaxed) >= max_clients {
                    Metrics::inc(&METRICS.connections_rejected);
                    tracing::warn!(%peer, max_clients, "client refused: max_clients reached");
                    tokio::task::spawn_local(async move {
                        let _ = stream.write_all(b"-ERR max number of clients reached\r\n").await;
                    });
                    continue;
                }
                let _ = stream.set_nodelay(true);
                let id = ClientId(NEXT_CLIENT_ID.fetch_add(1, Relaxed));
                Metrics::inc(&METRICS.connections_total);
                Metrics::inc(&METRICS.connections_open);
                tokio::task::spawn_local(session::run(worker.clone(), stream, id));
            }
        }
    }
    drop(listener);
    worker.stop_sessions();
    let started = std::time::Instant::now();
    while worker.sessions_open() > 0 && started.elapsed() < DRAIN_TIMEOUT {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    watchdog.abort();
    retries.abort();
    flusher.abort();
}

/// Resolves on SIGTERM or SIGINT.
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

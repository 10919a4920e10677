//! The listener side: learn the cluster, then run the workers (one per core, less the
//! cores the cluster nodes on this host need: [`auto_workers`]). Each worker is a
//! thread with its own event loop ([`crate::event_loop`]), its own listening socket
//! (`SO_REUSEPORT`, so the kernel spreads clients), its own sessions and its own
//! backend connections: a request never crosses threads, takes no lock and wakes no
//! other thread. Only the slot table, the node registry and counters are shared. The
//! main thread runs the control runtime: the topology refresher, the signals (`SIGHUP`
//! reloads the configuration, `SIGTERM`/`SIGINT` stop), the reload task and the admin
//! port.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket};

use crate::admin::METRICS;
use crate::cluster::NodeAddr;
use crate::config::Config;
use crate::event_loop::{EventLoop, WAKER};
use crate::refresh;
use crate::reload::{self, Reloader};
use crate::shared::Shared;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}: address in use (another process listens there)")]
    InUse { addr: SocketAddr },
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cluster topology: {0}")]
    Topology(#[from] refresh::RefreshError),
    #[error("starting the runtime: {0}")]
    Runtime(std::io::Error),
    #[error(transparent)]
    Admin(#[from] crate::admin::http::AdminError),
}

/// Run the proxy until SIGTERM/SIGINT. Prints `slotgate listening on ADDR` on stdout
/// once clients can connect (scripts and tests wait for that line). On a signal every
/// worker stops accepting, lets its sessions finish the requests they have read, and
/// returns. `SIGHUP` (and the admin port's `POST /reload`) reloads the configuration
/// with `reloader` ([`crate::reload`]).
pub fn run(config: Config, reloader: Reloader) -> Result<(), ServerError> {
    let listen = config.listen;
    let tls_listen = config.tls.as_ref().map(|tls| tls.listen);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chosen = config.workers;
    let shared = Shared::new(config, chosen.unwrap_or(cores));
    let control = runtime()?;
    // SIGHUP's handler from the start (its default ends the process); a reload it asks
    // for before the workers run waits for them. `reload_asks`: the admin port's
    // `POST /reload`s, received by the reload task.
    #[cfg(unix)]
    let hangup = control.block_on(async {
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .map_err(
                |e| tracing::warn!(error = %e, "cannot watch SIGHUP: reload by POST /reload only"),
            )
            .ok()
    });
    let (reload_tx, reload_asks) = tokio::sync::mpsc::channel(16);

    // Bind the first socket before asking the cluster anything (a port in use fails at
    // once), then one more per worker on the same port (so a port-0 listen resolves to
    // one port) once the topology says how many workers to run. The probe makes "in
    // use" include another process's reuseport group, which our sockets would join.
    let listeners = control.block_on(async {
        probe(listen)?;
        let first = bind(listen)?;
        let local = first.local_addr().map_err(|source| ServerError::Bind {
            addr: listen,
            source,
        })?;
        // The TLS listener the same way: one socket now, one more per worker later.
        let first_tls = match tls_listen {
            Some(addr) => {
                probe(addr)?;
                let socket = bind(addr)?;
                let local = socket
                    .local_addr()
                    .map_err(|source| ServerError::Bind { addr, source })?;
                Some((socket, local))
            }
            None => None,
        };
        // The admin port first, so /healthz and /readyz answer while the cluster is
        // being learned. Scripts and tests read this line for the address.
        if let Some(admin) = crate::admin::http::start(&shared, reload_tx).await? {
            println!("slotgate admin on http://{admin}");
            let _ = std::io::stdout().flush();
        }
        refresh::initial(&shared).await?;
        let workers = chosen.unwrap_or_else(|| {
            let local_nodes = nodes_on_this_host(&shared);
            let workers = auto_workers(cores, local_nodes);
            tracing::info!(
                workers,
                cores,
                local_nodes,
                "one worker per core, less one per cluster node on this host's loopback \
                 (--workers chooses)"
            );
            workers
        });
        let _ = shared.workers.set(workers);
        let mut all = vec![first];
        for _ in 1..workers {
            all.push(bind(local)?);
        }
        let std: Result<Vec<_>, _> = all.into_iter().map(|l| l.into_std()).collect();
        let std = std.map_err(|source| ServerError::Bind {
            addr: listen,
            source,
        })?;
        let mut tls = Vec::new();
        let mut tls_local = None;
        if let Some((first_tls, addr)) = first_tls {
            let mut all = vec![first_tls];
            for _ in 1..workers {
                all.push(bind(addr)?);
            }
            for listener in all {
                let listener = listener
                    .into_std()
                    .map_err(|source| ServerError::Bind { addr, source })?;
                tls.push(Some(listener));
            }
            tls_local = Some(addr);
        }
        tls.resize_with(std.len(), || None);
        Ok::<_, ServerError>((local, std, tls, tls_local))
    });
    let (local, listeners, tls_listeners, tls_local) = listeners?;

    // One event loop per worker thread; the main thread keeps the control runtime
    // (refresher, signals, admin port).
    // `stop`: set once by this thread on a signal, read by every worker each turn.
    // `running`: each worker counts itself out when its loop returns; this thread keeps
    // the refresher going until it reaches 0. `wakers`: one per worker, woken by this
    // thread after setting `stop` so a loop waiting in epoll sees it at once, and by
    // any worker with mail for another (`CLIENT KILL`, `MONITOR`).
    let stop = Arc::new(AtomicBool::new(false));
    let running = Arc::new(AtomicUsize::new(0));
    let mut wakers = Vec::new();
    let mut threads = Vec::new();
    for (index, (listener, tls_listener)) in listeners.into_iter().zip(tls_listeners).enumerate() {
        let poll = mio::Poll::new().map_err(ServerError::Runtime)?;
        let waker = mio::Waker::new(poll.registry(), WAKER).map_err(ServerError::Runtime)?;
        wakers.push(Arc::new(waker));
        let event_loop = EventLoop::new(
            shared.clone(),
            index,
            poll,
            listener,
            tls_listener,
            stop.clone(),
        )
        .map_err(|source| ServerError::Bind {
            addr: local,
            source,
        })?;
        let running = running.clone();
        running.fetch_add(1, Relaxed);
        let thread = std::thread::Builder::new()
            .name(format!("slotgate-worker-{index}"))
            .spawn(move || {
                event_loop.run();
                running.fetch_sub(1, Relaxed);
            })
            .map_err(ServerError::Runtime)?;
        threads.push(thread);
    }

    // The client registry wakes a worker for a `CLIENT KILL` or `MONITOR` lines. Mail
    // posted before this (no client is told the port yet) waits for the worker's tick.
    shared.clients.set_wakers(wakers.clone());
    let workers = threads.len();
    tracing::info!(%local, workers, masters = shared.table.load().masters().count(), "slotgate ready");
    let config = shared.config.load_full();
    log_posture(&config.users, local);
    if let (Some(tls_local), Some(tls)) = (tls_local, &config.tls) {
        tracing::info!(%tls_local, client_certificates = tls.verify_clients, "TLS clients accepted");
        // Before the plain line, which scripts and tests take as "ready".
        println!("slotgate tls listening on {tls_local}");
    }
    println!("slotgate listening on {local}");
    let _ = std::io::stdout().flush();

    control.block_on(async move {
        tokio::spawn(refresh::run(shared.clone()));
        tokio::spawn(reload::run(
            shared.clone(),
            reloader,
            reload_asks,
            #[cfg(unix)]
            hangup,
        ));
        tokio::spawn(crate::replicas::run(shared.clone()));
        shutdown_signal().await;
        tracing::info!(
            open = METRICS.connections_open.load(Relaxed),
            "shutdown signal received; draining clients"
        );
        stop.store(true, Relaxed);
        for waker in &wakers {
            let _ = waker.wake();
        }
        // The refresher keeps running while the workers drain.
        while running.load(Relaxed) > 0 {
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

/// How many workers to run when `--workers` is 0: one per core, less one per cluster
/// node on this host. A node is a single-threaded process that wants a core of its own
/// when busy; more busy proxy threads than the cores the nodes leave only take turns
/// with them, and each then batches fewer clients per write (measured in
/// `benches/e2e.sh`: on 2 cores beside 3 nodes, 1 worker gave more throughput for less
/// CPU than 2).
pub fn auto_workers(cores: usize, local_nodes: usize) -> usize {
    cores.saturating_sub(local_nodes).max(1)
}

/// The nodes of the learned topology (masters and replicas) that slotgate reaches on a
/// loopback address, after `[address_map]`: they run on this host.
fn nodes_on_this_host(shared: &Shared) -> usize {
    let table = shared.table.load();
    let dialed = table.masters().chain(table.replicas());
    let config = shared.config.load();
    loopback_count(dialed.map(|addr| config.dial_addr(addr)))
}

/// How many distinct addresses in `dialed` are loopback addresses.
fn loopback_count<'a>(dialed: impl Iterator<Item = &'a NodeAddr>) -> usize {
    let local: std::collections::HashSet<_> = dialed.filter(|addr| addr.is_loopback()).collect();
    local.len()
}

fn runtime() -> Result<tokio::runtime::Runtime, ServerError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(ServerError::Runtime)
}

/// Fails with [`ServerError::InUse`] if any socket listens on `addr` (an explicit port),
/// a reuseport group included: our listeners set `SO_REUSEPORT`, so binding them would
/// silently join another slotgate's group and take half its new clients. The probe sets
/// `SO_REUSEADDR` (a restart beside connections in TIME_WAIT still binds) but not
/// `SO_REUSEPORT`: Linux refuses it beside a listening socket and allows it otherwise.
/// It is closed on return. Held on, it would not help: a bound probe that does not
/// listen never makes another process's probe fail (checked on Linux 6.18), and where
/// only `SO_REUSEPORT` sockets may share an address (the BSDs; untested) it would
/// refuse our own binds.
///
/// The window left: two slotgates that both probe before either listens (starts within
/// the same few microseconds) both pass, and share the port.
fn probe(addr: SocketAddr) -> Result<(), ServerError> {
    if addr.port() == 0 {
        return Ok(());
    }
    let err = |source| bind_error(addr, source);
    let socket = new_socket(addr).map_err(err)?;
    socket.set_reuseaddr(true).map_err(err)?;
    socket.bind(addr).map_err(err)
}

fn bind_error(addr: SocketAddr, source: std::io::Error) -> ServerError {
    match source.kind() {
        std::io::ErrorKind::AddrInUse => ServerError::InUse { addr },
        _ => ServerError::Bind { addr, source },
    }
}

fn new_socket(addr: SocketAddr) -> std::io::Result<TcpSocket> {
    if addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
}

fn bind(addr: SocketAddr) -> Result<TcpListener, ServerError> {
    let err = |source| bind_error(addr, source);
    let socket = new_socket(addr).map_err(err)?;
    socket.set_reuseaddr(true).map_err(err)?;
    #[cfg(unix)]
    socket.set_reuseport(true).map_err(err)?;
    socket.bind(addr).map_err(err)?;
    socket.listen(1024).map_err(err)
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

/// Say at start-up who may connect: the users (names only), or a warning when anyone
/// reaching a non-loopback address may run everything.
fn log_posture(users: &crate::acl::Users, listen: SocketAddr) {
    if users.enforced() {
        let names: Vec<&str> = users.all().iter().map(|u| u.name.as_str()).collect();
        tracing::info!(users = %names.join(","), "clients must authenticate");
    } else if !listen.ip().is_loopback() {
        tracing::warn!(
            %listen,
            "no client authentication (requirepass or [[users]]): anyone who reaches this \
             address can run every command"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::{auto_workers, loopback_count};
    use crate::cluster::NodeAddr;

    #[test]
    fn local_nodes_are_the_distinct_loopback_addresses_dialed() {
        let dialed: Vec<NodeAddr> = [
            "127.0.0.1:7001",
            "127.0.0.1:7001", // two announced addresses mapped to one node
            "[::1]:7002",
            "10.0.0.5:7003",
            "redis-4.svc:7004",
            "localhost:7005",
        ]
        .iter()
        .map(|a| NodeAddr::parse(a).unwrap())
        .collect();
        assert_eq!(loopback_count(dialed.iter()), 3);
        assert_eq!(loopback_count(std::iter::empty()), 0);
    }

    #[test]
    fn auto_workers_leave_a_core_per_local_node_and_keep_one() {
        assert_eq!(auto_workers(16, 0), 16);
        assert_eq!(auto_workers(16, 6), 10);
        assert_eq!(auto_workers(2, 3), 1);
        assert_eq!(auto_workers(4, 4), 1);
        assert_eq!(auto_workers(1, 0), 1);
    }
}

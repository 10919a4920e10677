//! A TCP relay standing in for a network between processes on this host: it listens on
//! one loopback address, relays each connection to a target, and lets in only the peers
//! its rules admit (by their source address). The test can cut peers off, which also
//! closes their open connections: a network partition without a firewall.
//!
//! Nodes give themselves a source address of their own with `bind-source-addr
//! 127.0.0.N`, so a gateway can tell them apart from each other and from slotgate
//! (which connects from 127.0.0.1).

use std::collections::BTreeSet;
use std::io;
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// Who may pass.
#[derive(Clone, Debug)]
pub enum Admit {
    /// Everyone not cut off.
    All,
    /// Everyone but this source address (and not cut off).
    AllBut(IpAddr),
}

/// What the acceptor and the relays share.
struct State {
    target: SocketAddr,
    admit: Admit,
    /// Source addresses cut off; `cut_all` cuts everyone.
    cut: Mutex<BTreeSet<IpAddr>>,
    cut_all: AtomicBool,
    /// Open relayed connections: (id, peer address, client side, target side), kept
    /// to be shut down when their peer is cut off; a relay removes its own when it ends.
    open: Mutex<Vec<(u64, IpAddr, TcpStream, TcpStream)>>,
    /// Set on drop; the acceptor checks it after every accept (drop wakes it with a
    /// connection of its own).
    stop: AtomicBool,
}

impl State {
    fn admits(&self, peer: IpAddr) -> bool {
        let listed = match &self.admit {
            Admit::All => true,
            Admit::AllBut(refused) => peer != *refused,
        };
        let cut = self.cut_all.load(Ordering::SeqCst)
            || self
                .cut
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains(&peer);
        listed && !cut
    }

    /// Shut down the open connections whose peer is no longer admitted.
    fn close_refused(&self) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.retain(|(_, peer, client, target)| {
            if self.admits(*peer) {
                return true;
            }
            let _ = client.shutdown(Shutdown::Both);
            let _ = target.shutdown(Shutdown::Both);
            false
        });
    }
}

/// A running relay; dropping it stops accepting and closes every relayed connection.
pub struct Gateway {
    listen: SocketAddr,
    state: Arc<State>,
    acceptor: Option<JoinHandle<()>>,
}

impl Gateway {
    /// Listens on `listen` (a loopback address) and relays admitted peers to `target`.
    pub fn start(listen: SocketAddr, target: SocketAddr, admit: Admit) -> io::Result<Gateway> {
        let listener = TcpListener::bind(listen)?;
        let state = Arc::new(State {
            target,
            admit,
            cut: Mutex::new(BTreeSet::new()),
            cut_all: AtomicBool::new(false),
            open: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
        });
        let shared = Arc::clone(&state);
        let acceptor = std::thread::spawn(move || accept_loop(listener, shared));
        Ok(Gateway {
            listen,
            state,
            acceptor: Some(acceptor),
        })
    }

    pub fn listen_addr(&self) -> SocketAddr {
        self.listen
    }

    /// Refuse `peer` from now on and close its open connections.
    pub fn cut(&self, peer: IpAddr) {
        self.state
            .cut
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(peer);
        self.state.close_refused();
    }

    /// Refuse everyone from now on and close every open connection.
    pub fn cut_all(&self) {
        self.state.cut_all.store(true, Ordering::SeqCst);
        self.state.close_refused();
    }

    /// Admit again whoever was cut off.
    pub fn heal(&self) {
        self.state.cut_all.store(false, Ordering::SeqCst);
        self.state
            .cut
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        self.state.cut_all.store(true, Ordering::SeqCst);
        // Wake the acceptor; it sees `stop` and returns.
        let _ = TcpStream::connect_timeout(&self.listen, Duration::from_secs(1));
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        self.state.close_refused();
    }
}

fn accept_loop(listener: TcpListener, state: Arc<State>) {
    let mut next_id = 0u64;
    for stream in listener.incoming() {
        if state.stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(client) = stream else { continue };
        let Ok(peer) = client.peer_addr() else {
            continue;
        };
        if !state.admits(peer.ip()) {
            // Closed at once: the peer gets no byte from the other side.
            drop(client);
            continue;
        }
        let Ok(target) = TcpStream::connect_timeout(&state.target, Duration::from_secs(1)) else {
            continue;
        };
        let _ = client.set_nodelay(true);
        let _ = target.set_nodelay(true);
        let (Ok(client_keep), Ok(target_keep)) = (client.try_clone(), target.try_clone()) else {
            continue;
        };
        next_id += 1;
        let id = next_id;
        state.open.lock().unwrap_or_else(|e| e.into_inner()).push((
            id,
            peer.ip(),
            client_keep,
            target_keep,
        ));
        relay(id, client, target, Arc::clone(&state));
    }
}

/// Copy bytes both ways, one thread per direction. When either direction ends (EOF, an
/// error, or the peer cut off) both sockets are shut down, and the connection leaves
/// the open list.
fn relay(id: u64, client: TcpStream, target: TcpStream, state: Arc<State>) {
    let (Ok(mut client_r), Ok(mut target_r)) = (client.try_clone(), target.try_clone()) else {
        return;
    };
    let (mut client_w, mut target_w) = (client, target);
    std::thread::spawn(move || {
        let back = std::thread::spawn(move || {
            let _ = io::copy(&mut target_r, &mut client_w);
            let _ = client_w.shutdown(Shutdown::Both);
            let _ = target_r.shutdown(Shutdown::Both);
        });
        let _ = io::copy(&mut client_r, &mut target_w);
        let _ = target_w.shutdown(Shutdown::Both);
        let _ = client_r.shutdown(Shutdown::Both);
        let _ = back.join();
        state
            .open
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|entry| entry.0 != id);
    });
}

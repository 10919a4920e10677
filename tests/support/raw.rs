//! A client on a plain socket, for what the `redis` crate will not send (malformed
//! input, tiny writes) and for reading replies exactly as the proxy wrote them.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use slotgate::protocol::scan::{Limits, ReplyScanner};

use super::Cluster;

pub struct RawClient {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl RawClient {
    pub fn connect(port: u16) -> RawClient {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to the proxy");
        stream.set_nodelay(true).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        RawClient {
            stream,
            buf: Vec::new(),
        }
    }

    pub fn write(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write to the proxy");
    }

    /// Write `req`, then collect bytes until the connection goes quiet or closes.
    pub fn roundtrip(&mut self, req: &[u8]) -> String {
        self.write(req);
        self.read_quiet()
    }

    /// Everything that arrives until 300 ms pass with nothing new (waiting at most 5 s
    /// for the first byte).
    pub fn read_quiet(&mut self) -> String {
        let mut out = std::mem::take(&mut self.buf);
        let mut chunk = [0u8; 65536];
        let started = Instant::now();
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => out.extend_from_slice(&chunk[..n]),
                Err(_) if !out.is_empty() || started.elapsed() > Duration::from_secs(5) => break,
                Err(_) => continue,
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    /// Read `n` complete replies (each as its RESP text), waiting at most `limit`.
    pub fn read_replies(&mut self, n: usize, limit: Duration) -> Vec<String> {
        let mut replies = Vec::new();
        let mut scanner = ReplyScanner::new(Limits::default());
        let mut chunk = [0u8; 65536];
        let started = Instant::now();
        while replies.len() < n && started.elapsed() < limit {
            while let Ok(Some(len)) = scanner.scan(&self.buf) {
                let frame: Vec<u8> = self.buf.drain(..len).collect();
                replies.push(String::from_utf8_lossy(&frame).into_owned());
                if replies.len() == n {
                    return replies;
                }
            }
            match self.stream.read(&mut chunk) {
                Ok(0) => break,
                Ok(k) => self.buf.extend_from_slice(&chunk[..k]),
                Err(_) => continue,
            }
        }
        replies
    }

    /// Sends `requests` (inline, one per line) in one write; their replies, one each
    /// (waiting at most 10 s).
    pub fn pipeline(&mut self, requests: &[&str]) -> Vec<String> {
        let text: String = requests.iter().map(|r| format!("{r}\r\n")).collect();
        self.write(text.as_bytes());
        let replies = self.read_replies(requests.len(), Duration::from_secs(10));
        assert_eq!(replies.len(), requests.len(), "{requests:?} -> {replies:?}");
        replies
    }

    /// [`RawClient::pipeline`] of `MULTI`, `commands`, `EXEC`: every reply, `MULTI`'s
    /// first and `EXEC`'s last.
    pub fn transaction(&mut self, commands: &[&str]) -> Vec<String> {
        let mut requests = Vec::with_capacity(commands.len() + 2);
        requests.push("MULTI");
        requests.extend_from_slice(commands);
        requests.push("EXEC");
        self.pipeline(&requests)
    }

    /// True when the proxy has closed this connection (within 2 s).
    pub fn is_closed(&mut self) -> bool {
        let mut byte = [0u8; 1];
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(2) {
            match self.stream.read(&mut byte) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut =>
                {
                    continue
                }
                Err(_) => return true,
            }
        }
        false
    }
}

/// Keys named `prefix:N`, `per_master` of them on each current master.
pub fn keys_on_every_master(cluster: &Cluster, prefix: &str, per_master: usize) -> Vec<String> {
    let masters = cluster.master_ports();
    let owners = cluster.owners_by_slot();
    let mut by_master: std::collections::BTreeMap<u16, Vec<String>> = Default::default();
    let mut i = 0;
    while masters
        .iter()
        .any(|m| by_master.get(m).map_or(0, |v| v.len()) < per_master)
    {
        let key = format!("{prefix}:{i}");
        let owner = owners[slotgate::slot::Slot::of_key(key.as_bytes()).index()];
        let list = by_master.entry(owner).or_default();
        if list.len() < per_master {
            list.push(key);
        }
        i += 1;
        assert!(i < 1_000_000, "could not find keys for every master");
    }
    by_master.into_values().flatten().collect()
}

/// A key (`{tagN}k`) whose slot master `port` owns.
pub fn key_on(cluster: &Cluster, port: u16, tag: &str) -> String {
    (0..10_000)
        .map(|i| format!("{{{tag}{i}}}k"))
        .find(|k| cluster.node_for_key(k) == port)
        .expect("a key on every master")
}

/// One key per tag, the i-th owned by the i-th master ([`Cluster::master_ports`]'s
/// order), so each is in a slot of its own on a master of its own.
pub fn keys_on_masters<const N: usize>(cluster: &Cluster, tags: [&str; N]) -> [String; N] {
    let ports = cluster.master_ports();
    assert!(ports.len() >= N, "{N} keys need {N} masters");
    let mut i = 0;
    tags.map(|tag| {
        i += 1;
        key_on(cluster, ports[i - 1], tag)
    })
}

/// Write a config file into a fresh temp dir (kept for the life of the process) and
/// return its path.
pub fn write_config(text: &str) -> String {
    let dir = tempfile::tempdir().expect("temp dir").keep();
    let path = dir.join("slotgate.toml");
    std::fs::write(&path, text).expect("write config");
    path.to_string_lossy().into_owned()
}

/// A counter from the proxy's `INFO` (section `# Proxy`).
pub fn info_counter(proxy: &super::Proxy, name: &str) -> u64 {
    let info = proxy.cli(&["INFO"]);
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} missing from INFO:\n{info}"))
}

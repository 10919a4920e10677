//! What a real Redis 7.0 cluster cannot show on demand, shown with one scripted node: a
//! server without `CLUSTER SHARDS` (older Redis; the proxy falls back to `CLUSTER
//! SLOTS`) that also knows a command this build's table has never heard of (the proxy
//! learns it from `COMMAND` and routes it by its key position), and that drops any
//! connection that says `HELLO` (a node dying during the proxy's handshake). Started
//! with `HELLO` accepted, it sends a RESP3 push before each reply (what a node does for
//! a client with tracking or subscriptions), which reaches the client whose pinned
//! connection it came on, and no one from a shared one.

mod support;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use slotgate::protocol::scan::{Limits, RequestScanner};
use support::Proxy;

/// A one-node "cluster" that owns every slot and answers a handful of commands.
struct FakeNode {
    port: u16,
    stop: Arc<AtomicBool>,
}

impl FakeNode {
    fn start() -> FakeNode {
        FakeNode::start_with(false)
    }

    /// `pushes`: answer `HELLO 3` and send a push frame before every reply.
    fn start_with(pushes: bool) -> FakeNode {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        std::thread::spawn(move || {
            // Bounded: ends when the test drops the node (or after 2 minutes).
            let started = std::time::Instant::now();
            while !stopping.load(Ordering::Relaxed) && started.elapsed() < Duration::from_secs(120)
            {
                match listener.accept() {
                    Ok((stream, _)) => {
                        std::thread::spawn(move || serve(stream, port, pushes));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        FakeNode { port, stop }
    }
}

impl Drop for FakeNode {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn serve(mut stream: TcpStream, port: u16, pushes: bool) {
    stream.set_nonblocking(false).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut scanner = RequestScanner::new(Limits::default());
    let mut buf = BytesMut::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        while let Ok(Some(req)) = scanner.next_request(&mut buf) {
            let name = String::from_utf8_lossy(req.arg(0)).to_ascii_uppercase();
            let sub = String::from_utf8_lossy(req.arg(1)).to_ascii_uppercase();
            let reply = match (name.as_str(), sub.as_str()) {
                ("HELLO", _) if pushes => "%1\r\n$6\r\nserver\r\n$4\r\nfake\r\n".to_string(),
                // Dies mid-handshake: no reply, the connection just closes.
                ("HELLO", _) => return,
                ("BLPOP", _) | ("GET", _) if pushes => {
                    let push = ">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nhi\r\n";
                    let key = String::from_utf8_lossy(req.arg(1)).into_owned();
                    if name == "GET" {
                        format!("{push}$1\r\nv\r\n")
                    } else {
                        format!("{push}*2\r\n${}\r\n{key}\r\n$1\r\nv\r\n", key.len())
                    }
                }
                ("CLUSTER", "SHARDS") => {
                    "-ERR unknown subcommand 'SHARDS'. Try CLUSTER HELP.\r\n".to_string()
                }
                ("CLUSTER", "SLOTS") => format!(
                    "*1\r\n*3\r\n:0\r\n:16383\r\n*3\r\n$9\r\n127.0.0.1\r\n:{port}\r\n$40\r\n{}\r\n",
                    "f".repeat(40)
                ),
                ("INFO", _) => {
                    let text = "# Server\r\nredis_version:9.9.9\r\n";
                    format!("${}\r\n{text}\r\n", text.len())
                }
                ("COMMAND", _) => concat!(
                    "*2\r\n",
                    "*6\r\n$3\r\nget\r\n:2\r\n*1\r\n+readonly\r\n:1\r\n:1\r\n:1\r\n",
                    "*6\r\n$8\r\nnewfetch\r\n:-2\r\n*1\r\n+readonly\r\n:1\r\n:-1\r\n:1\r\n",
                )
                .to_string(),
                ("NEWFETCH", _) => {
                    let keys: Vec<String> = (1..req.argc())
                        .map(|i| String::from_utf8_lossy(req.arg(i)).into_owned())
                        .collect();
                    format!("+fetched {}\r\n", keys.join(","))
                }
                _ => format!("-ERR fake node does not know '{name}'\r\n"),
            };
            if stream.write_all(reply.as_bytes()).is_err() {
                return;
            }
        }
    }
}

#[test]
fn cluster_slots_fallback_and_learned_commands() {
    let node = FakeNode::start();
    let proxy = Proxy::start(&format!("127.0.0.1:{}", node.port), &[]);
    let mut con = proxy.client();

    // Routed to the node by the key position COMMAND reported.
    let reply: String = redis::cmd("NEWFETCH").arg("a").query(&mut con).unwrap();
    assert_eq!(reply, "fetched a");
    let reply: String = redis::cmd("newfetch")
        .arg("{t}x")
        .arg("{t}y")
        .query(&mut con)
        .unwrap();
    assert_eq!(reply, "fetched {t}x,{t}y");
    // Keys in different slots: the same CROSSSLOT rule as for known commands.
    let err = redis::cmd("NEWFETCH")
        .arg("a")
        .arg("b")
        .query::<String>(&mut con)
        .unwrap_err();
    assert_eq!(err.code(), Some("CROSSSLOT"), "{err}");
    // Arity from COMMAND.
    let err = redis::cmd("NEWFETCH")
        .query::<String>(&mut con)
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("wrong number of arguments for 'newfetch'"),
        "{err}"
    );
    // Still unknown: a command neither the table nor the node knows.
    let err = redis::cmd("NOSUCHCMD")
        .query::<String>(&mut con)
        .unwrap_err();
    assert!(
        err.to_string().contains("unknown command 'NOSUCHCMD'"),
        "{err}"
    );

    let info: String = redis::cmd("INFO").query(&mut con).unwrap();
    assert!(info.contains("slotgate_learned_commands:1"), "{info}");
    assert!(info.contains("redis_version:9.9.9"), "{info}");
    assert!(info.contains("slotgate_unserved_slots:0"), "{info}");
    assert!(
        proxy.log().contains("newfetch"),
        "the log names what was learned"
    );
}

#[test]
fn a_node_that_drops_the_handshake_gives_an_error_not_a_hang() {
    let node = FakeNode::start();
    let seeds = format!("127.0.0.1:{}", node.port);
    let proxy = Proxy::start_with_config(&seeds, "[backend]\ntimeout_ms = 1000\n");
    let mut con = proxy.client();
    // RESP3 requests go to connections opened with `HELLO 3`, which this node drops.
    let _: redis::Value = redis::cmd("HELLO").arg("3").query(&mut con).unwrap();
    let err = redis::cmd("GET")
        .arg("k")
        .query::<redis::Value>(&mut con)
        .expect_err("the node never answers HELLO");
    let text = err.to_string();
    assert!(text.contains("closed by the node"), "{text}");
    // RESP2 connections need no handshake here: they still work.
    let _: redis::Value = redis::cmd("HELLO").arg("2").query(&mut con).unwrap();
    let reply: String = redis::cmd("NEWFETCH").arg("a").query(&mut con).unwrap();
    assert_eq!(reply, "fetched a");
}

#[test]
fn a_push_on_a_pinned_connection_reaches_its_client_and_one_on_a_shared_one_no_one() {
    let node = FakeNode::start_with(true);
    let proxy = Proxy::start(&format!("127.0.0.1:{}", node.port), &[]);
    let mut raw = support::RawClient::connect(proxy.port());
    let hello = raw.roundtrip(b"HELLO 3\r\n");
    assert!(hello.starts_with('%'), "{hello}");
    // A blocking command's pinned connection: the push, then the reply.
    raw.write(b"BLPOP q 0\r\nGET k\r\n");
    let replies = raw.read_replies(3, std::time::Duration::from_secs(10));
    assert_eq!(
        replies,
        [
            ">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nhi\r\n",
            "*2\r\n$1\r\nq\r\n$1\r\nv\r\n",
            // The shared connection's push is dropped: it answers no one's request.
            "$1\r\nv\r\n",
        ]
    );
    assert_eq!(raw.read_quiet(), "", "nothing else arrives");
}

//! Nodes that require a password: slotgate authenticates every backend connection
//! (`AUTH` for RESP2, `HELLO 3 AUTH` for RESP3) with `[backend] password`, and a node
//! that refuses the handshake gives the client a clear error, never a hang.

mod support;

use std::time::{Duration, Instant};

use redis::Commands;
use support::{keys_on_every_master, require_redis, Cluster, Proxy, RawClient};

const PASSWORD: &str = "s3cret-backend";

/// Every node of `cluster` (its master `ports`, listed before any password was set)
/// now requires `new` (`current`: what it requires now). With `kick`, the nodes also close their other clients' connections (the proxy's).
fn set_password(cluster: &Cluster, ports: &[u16], current: Option<&str>, new: &str, kick: bool) {
    for &port in ports {
        let mut node = cluster.node_client(port);
        if let Some(current) = current {
            let _: () = redis::cmd("AUTH").arg(current).query(&mut node).unwrap();
        }
        let _: () = redis::cmd("CONFIG")
            .arg("SET")
            .arg("requirepass")
            .arg(new)
            .query(&mut node)
            .unwrap();
        if kick {
            let killed: redis::Value = redis::cmd("CLIENT")
                .arg("KILL")
                .arg("TYPE")
                .arg("normal")
                .arg("SKIPME")
                .arg("yes")
                .query(&mut node)
                .unwrap();
            assert!(
                matches!(killed, redis::Value::Int(n) if n > 0),
                "{killed:?}"
            );
        }
    }
}

/// A 3-master cluster whose nodes require [`PASSWORD`], `per_master` keys named
/// `prefix:N` on each master (found before the password is set), the masters' ports,
/// and a proxy configured with the password.
fn cluster_with_password(
    prefix: &str,
    per_master: usize,
) -> (Cluster, Vec<String>, Vec<u16>, Proxy) {
    require_redis();
    let cluster = Cluster::start(3, 0);
    let keys = keys_on_every_master(&cluster, prefix, per_master);
    let ports = cluster.master_ports();
    set_password(&cluster, &ports, None, PASSWORD, false);
    let proxy = Proxy::start_with_config(
        &cluster.seeds(),
        &format!("[backend]\npassword = \"{PASSWORD}\"\ntimeout_ms = 1500\n"),
    );
    (cluster, keys, ports, proxy)
}

#[test]
fn backend_connections_authenticate_in_both_protocols() {
    let (_cluster, keys, _ports, proxy) = cluster_with_password("auth", 2);

    let mut con = proxy.client();
    for key in &keys {
        let _: () = con.set(key, format!("v-{key}")).unwrap();
        let v: String = con.get(key).unwrap();
        assert_eq!(v, format!("v-{key}"));
    }
    // RESP3 clients use connections opened with `HELLO 3 AUTH default <password>`.
    let mut raw = RawClient::connect(proxy.port());
    let hello = raw.roundtrip(b"*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n");
    assert!(hello.starts_with('%'), "{hello}");
    for key in &keys {
        let req = format!("*2\r\n$3\r\nGET\r\n${}\r\n{key}\r\n", key.len());
        let reply = raw.roundtrip(req.as_bytes());
        assert_eq!(reply, format!("${}\r\nv-{key}\r\n", key.len() + 2));
    }
}

#[test]
fn a_refused_handshake_is_a_clear_error_and_the_proxy_recovers() {
    let (cluster, keys, ports, proxy) = cluster_with_password("refused", 1);
    let mut con = proxy.client();
    for key in &keys {
        let _: () = con.set(key, "before").unwrap();
    }

    // The password changes under the proxy and its connections are dropped: the
    // reconnect's AUTH is refused, and the client hears why (the first request may
    // instead meet the dropped connection).
    set_password(&cluster, &ports, Some(PASSWORD), "changed", true);
    let mut errors = Vec::new();
    for _ in 0..10 {
        let err = con
            .get::<_, String>(&keys[0])
            .expect_err("a refused handshake must not look like a value");
        let text = err.to_string();
        assert!(text.contains("slotgate: backend"), "{text}");
        errors.push(text);
        if errors
            .last()
            .unwrap()
            .contains("handshake refused: WRONGPASS")
        {
            break;
        }
    }
    assert!(
        errors
            .last()
            .unwrap()
            .contains("handshake refused: WRONGPASS"),
        "{errors:#?}"
    );

    // The password comes back: the proxy reconnects and serves again.
    set_password(&cluster, &ports, Some("changed"), PASSWORD, false);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match con.get::<_, String>(&keys[0]) {
            Ok(v) => {
                assert_eq!(v, "before");
                break;
            }
            Err(e) if Instant::now() < deadline => {
                assert!(e.to_string().contains("slotgate"), "{e}");
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => panic!("the proxy did not recover: {e}"),
        }
    }
}

//! TLS on both sides, with certificates made in the test: clients on slotgate's `[tls]`
//! listener (redis-cli `--tls`, redis-py `ssl=True`, the `redis` crate), beside the
//! plain listener; client certificates checked against a CA; and a TLS-only Redis
//! Cluster reached through `[backend.tls]`, for requests, a slot migration and the
//! topology refresh.

#[macro_use]
mod support;

use std::path::Path;
use std::process::{Command, Stdio};

use support::{
    free_port, python_or_skip, require_redis, wait_until, Cluster, ClusterConfig, Proxy, TlsFiles,
    TlsPeer,
};

/// `redis-cli -p port --tls --cacert CA [extra...] args...`: (stdout, stderr), trimmed.
fn cli_tls(port: u16, ca: &Path, extra: &[&str], args: &[&str]) -> (String, String) {
    let out = Command::new("redis-cli")
        .args(["-p", &port.to_string(), "--tls", "--cacert"])
        .arg(ca)
        .args(extra)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("spawn redis-cli");
    (
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
        String::from_utf8_lossy(&out.stderr).trim().to_string(),
    )
}

/// A `redis` crate connection to slotgate's TLS port.
fn tls_client(port: u16, files: &TlsFiles, client_cert: bool) -> redis::Connection {
    let url = format!("rediss://127.0.0.1:{port}/");
    let client = redis::Client::build_with_tls(url, files.redis_certs(client_cert))
        .expect("redis TLS client");
    let con = client
        .get_connection_with_timeout(std::time::Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("TLS connect to slotgate on {port}: {e}"));
    con.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    con
}

/// The `[tls]` table for a listener on `port` with these files; `verify` adds the CA.
fn tls_table(port: u16, files: &TlsFiles, verify: bool) -> String {
    let mut toml = format!(
        "[tls]\nlisten = \"127.0.0.1:{port}\"\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
        TlsFiles::s(&files.cert),
        TlsFiles::s(&files.key)
    );
    if verify {
        toml.push_str(&format!("ca_file = \"{}\"\n", TlsFiles::s(&files.ca)));
    }
    toml
}

#[test]
fn clients_over_tls_beside_plain_ones() {
    require_redis();
    let files = TlsFiles::generate();
    let cluster = Cluster::start(3, 0);
    let tls_port = free_port();
    let proxy = Proxy::start_with_config(&cluster.seeds(), &tls_table(tls_port, &files, false));
    assert!(
        proxy
            .log()
            .contains(&format!("slotgate tls listening on 127.0.0.1:{tls_port}")),
        "{}",
        proxy.log()
    );

    // redis-cli over TLS, then the same key through the plain listener.
    let (out, err) = cli_tls(tls_port, &files.ca, &[], &["SET", "tls:k", "over tls"]);
    assert_eq!(out, "OK", "redis-cli --tls: {err}");
    let (out, _) = cli_tls(tls_port, &files.ca, &[], &["GET", "tls:k"]);
    assert_eq!(out, "over tls");
    let mut plain = proxy.client();
    let got: String = query!(&mut plain, "GET", "tls:k");
    assert_eq!(got, "over tls");
    assert_eq!(proxy.cli(&["SET", "plain:k", "plain"]), "OK");
    let (out, _) = cli_tls(tls_port, &files.ca, &[], &["GET", "plain:k"]);
    assert_eq!(out, "plain");

    // A plain client on the TLS port gets no reply it could read as Redis.
    let (out, _) = {
        let out = Command::new("redis-cli")
            .args(["-p", &tls_port.to_string(), "PING"])
            .stdin(Stdio::null())
            .output()
            .expect("spawn redis-cli");
        (String::from_utf8_lossy(&out.stdout).trim().to_string(), ())
    };
    assert_ne!(out, "PONG");

    // The redis crate: big values both ways (many TLS records, writes the socket cannot
    // take at once) and a deep pipeline (many requests per read).
    let mut con = tls_client(tls_port, &files, false);
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let _: () = query!(&mut con, "SET", "tls:big", &big[..]);
    let back: Vec<u8> = query!(&mut con, "GET", "tls:big");
    assert!(back == big, "the big value came back changed");
    let back: Vec<u8> = query!(&mut plain, "GET", "tls:big");
    assert!(
        back == big,
        "the big value written over TLS reads back plain"
    );
    let mut pipe = redis::pipe();
    for i in 0..2000 {
        pipe.cmd("SET").arg(format!("tls:p:{i}")).arg(i).ignore();
    }
    for i in 0..2000 {
        pipe.cmd("GET").arg(format!("tls:p:{i}"));
    }
    let values: Vec<u32> = pipe.query(&mut con).expect("pipeline over TLS");
    assert_eq!(values, (0..2000).collect::<Vec<u32>>());

    // QUIT is answered before the session closes (the reply leaves through TLS first).
    let (out, err) = cli_tls(tls_port, &files.ca, &[], &["QUIT"]);
    assert_eq!(out, "OK", "{err}");
    assert!(proxy.log().lines().all(|l| !l.contains("panicked")));
}

#[test]
fn redis_py_with_ssl() {
    require_redis();
    let Some(python) = python_or_skip("redis_py_with_ssl") else {
        return;
    };
    let files = TlsFiles::generate();
    let cluster = Cluster::start(3, 0);
    let tls_port = free_port();
    let proxy = Proxy::start_with_config(&cluster.seeds(), &tls_table(tls_port, &files, false));
    let script = r#"
import sys, redis
port, ca = int(sys.argv[1]), sys.argv[2]
for proto in (3, 2):
    r = redis.Redis(host="127.0.0.1", port=port, ssl=True, ssl_ca_certs=ca, protocol=proto)
    assert r.ping()
    r.set("py:tls", "yes")
    assert r.get("py:tls") == b"yes"
    p = r.pipeline(transaction=False)
    for i in range(500):
        p.set(f"py:tls:{i}", i)
    for i in range(500):
        p.get(f"py:tls:{i}")
    got = p.execute()[500:]
    assert got == [str(i).encode() for i in range(500)], got[:5]
    big = b"x" * 1_000_000
    r.set("py:tls:big", big)
    assert r.get("py:tls:big") == big
    r.close()
print("all checks passed")
"#;
    let out = Command::new(&python)
        .args(["-c", script, &tls_port.to_string()])
        .arg(&files.ca)
        .output()
        .expect("run python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("all checks passed"),
        "redis-py over TLS failed:\n{stdout}\n{}\nproxy log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        proxy.log()
    );
}

#[test]
fn client_certificates_are_required_and_checked() {
    require_redis();
    let files = TlsFiles::generate();
    let cluster = Cluster::start(3, 0);
    let tls_port = free_port();
    let proxy = Proxy::start_with_config(&cluster.seeds(), &tls_table(tls_port, &files, true));

    let (out, err) = cli_tls(tls_port, &files.ca, &[], &["PING"]);
    assert_ne!(out, "PONG", "no certificate, yet let in ({err})");

    let stranger = [
        "--cert",
        files.stranger_cert.to_str().unwrap(),
        "--key",
        files.stranger_key.to_str().unwrap(),
    ];
    let (out, err) = cli_tls(tls_port, &files.ca, &stranger, &["PING"]);
    assert_ne!(
        out, "PONG",
        "a certificate of another CA, yet let in ({err})"
    );

    let good = [
        "--cert",
        files.cert.to_str().unwrap(),
        "--key",
        files.key.to_str().unwrap(),
    ];
    let (out, err) = cli_tls(tls_port, &files.ca, &good, &["PING"]);
    assert_eq!(out, "PONG", "{err}");
    let mut con = tls_client(tls_port, &files, true);
    let _: () = query!(&mut con, "SET", "cert:k", "v");
    let got: String = query!(&mut con, "GET", "cert:k");
    assert_eq!(got, "v");
    // The plain listener does not ask for certificates.
    assert_eq!(proxy.cli(&["GET", "cert:k"]), "v");
}

#[test]
fn a_tls_only_cluster_through_backend_tls() {
    require_redis();
    let files = TlsFiles::generate();
    let peer = TlsPeer {
        ca: files.ca.clone(),
        cert: files.cert.clone(),
        key: files.key.clone(),
    };
    let cluster = Cluster::start_with(
        3,
        0,
        ClusterConfig {
            tls: Some(peer),
            ..ClusterConfig::default()
        },
    );
    // The nodes have no plain port.
    let port = cluster.ports()[0];
    let plain = Command::new("redis-cli")
        .args(["-p", &port.to_string(), "PING"])
        .stdin(Stdio::null())
        .output()
        .expect("spawn redis-cli");
    assert_ne!(String::from_utf8_lossy(&plain.stdout).trim(), "PONG");

    let toml = format!(
        "[backend.tls]\nca_file = \"{}\"\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
        TlsFiles::s(&files.ca),
        TlsFiles::s(&files.cert),
        TlsFiles::s(&files.key)
    );
    // The initial topology comes over TLS (the proxy could not start otherwise).
    let proxy = Proxy::start_with_config(&cluster.seeds(), &toml);
    let mut con = proxy.client();
    for i in 0..200 {
        let _: () = query!(&mut con, "SET", format!("tlsnode:{i}"), i);
    }
    for i in 0..200 {
        let got: u32 = query!(&mut con, "GET", format!("tlsnode:{i}"));
        assert_eq!(got, i);
    }
    // Every master was reached.
    let masters = cluster.master_ports();
    let spread: std::collections::BTreeSet<u16> = (0..200)
        .map(|i| cluster.node_for_key(&format!("tlsnode:{i}")))
        .collect();
    assert_eq!(spread.len(), masters.len());

    // Move the slot of a key: the proxy gets MOVED from the old owner over TLS, follows
    // it, and the refresh it asks for (over TLS) logs the new owner.
    let key = "tlsnode:7";
    let slot = support::key_slot(key.as_bytes());
    let from = cluster.node_for_slot(slot);
    let to = *masters.iter().find(|&&p| p != from).unwrap();
    cluster.migrate_slots(slot..=slot, from, to);
    let got: u32 = query!(&mut con, "GET", key);
    assert_eq!(got, 7);
    let _: () = query!(&mut con, "SET", key, 70);
    let direct: String = query!(&mut cluster.node_client(to), "GET", key);
    assert_eq!(direct, "70", "the write went to the new owner");
    wait_until("the refresh over TLS logs the new owner", || {
        proxy
            .log()
            .lines()
            .any(|l| l.contains("slot owner changed") && l.contains(&slot.to_string()))
    });
    assert!(
        !proxy.log().contains("topology refresh failed"),
        "{}",
        proxy.log()
    );

    // Blocking commands (pinned connections) and MULTI/EXEC go over TLS too.
    let mut other = proxy.client();
    let _: () = query!(&mut other, "RPUSH", "tlsnode:list", "a");
    let popped: Vec<String> = query!(&mut con, "BLPOP", "tlsnode:list", 1);
    assert_eq!(popped, vec!["tlsnode:list", "a"]);
    let (a, b): (String, u32) = redis::pipe()
        .atomic()
        .cmd("SET")
        .arg("{tx}a")
        .arg("1")
        .cmd("INCR")
        .arg("{tx}b")
        .query(&mut con)
        .expect("MULTI/EXEC over TLS");
    assert_eq!((a.as_str(), b), ("OK", 1));
}

#[test]
fn bad_tls_files_stop_the_start_naming_the_key() {
    let files = TlsFiles::generate();
    let missing = files.dir().join("nope.pem");
    let cases = [
        (
            format!(
                "[tls]\nlisten = \"127.0.0.1:0\"\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
                TlsFiles::s(&missing),
                TlsFiles::s(&files.key)
            ),
            "tls.cert_file",
        ),
        (
            format!(
                "[tls]\nlisten = \"127.0.0.1:0\"\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
                TlsFiles::s(&files.cert),
                TlsFiles::s(&files.cert)
            ),
            "tls.key_file",
        ),
        (
            format!(
                "[tls]\nlisten = \"127.0.0.1:0\"\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
                TlsFiles::s(&files.cert),
                TlsFiles::s(&files.stranger_key)
            ),
            "tls.key_file",
        ),
        (
            format!("[backend.tls]\nca_file = \"{}\"\n", TlsFiles::s(&files.key)),
            "backend.tls.ca_file",
        ),
        (
            format!(
                "[backend.tls]\nca_file = \"{}\"\ncert_file = \"{}\"\n",
                TlsFiles::s(&files.ca),
                TlsFiles::s(&files.cert)
            ),
            "backend.tls.key_file",
        ),
    ];
    for (toml, key) in cases {
        let path = files.dir().join("slotgate.toml");
        std::fs::write(&path, &toml).unwrap();
        let out = Command::new(support::binary())
            .args([
                "--listen",
                "127.0.0.1:0",
                "--seeds",
                "127.0.0.1:1",
                "--config",
            ])
            .arg(&path)
            .stdin(Stdio::null())
            .output()
            .expect("run slotgate");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{toml}: started");
        assert!(
            stderr.contains(key),
            "{toml}: expected `{key}` in:\n{stderr}"
        );
    }
}

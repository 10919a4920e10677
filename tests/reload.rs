//! Reloading the configuration (`SIGHUP`, `POST /reload` on the admin port) against a
//! real cluster: what applies live does so without dropping a client, a bad file is
//! refused with its reason and changes nothing, a key that needs a restart is named.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use support::{
    keys_on_every_master, require_redis, write_config, Cluster, ClusterConfig, Network, Proxy,
    RawClient,
};

/// A request in RESP.
fn resp(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n{a}\r\n", a.len()).as_bytes());
    }
    out
}

/// One request on a raw client, its reply as written.
fn ask(client: &mut RawClient, args: &[&str]) -> String {
    client.write(&resp(args));
    client.read_replies(1, Duration::from_secs(10)).remove(0)
}

/// A proxy started with `--config <file>` holding `text` and an admin port; the file's
/// path.
fn proxy_with_file(cluster: &Cluster, text: &str) -> (Proxy, String) {
    let path = write_config(text);
    let proxy = Proxy::start(
        &cluster.seeds(),
        &["--config", &path, "--admin", "127.0.0.1:0"],
    );
    (proxy, path)
}

fn rewrite(path: &str, text: &str) {
    std::fs::write(Path::new(path), text).expect("rewrite the config file");
}

/// How many lines of the proxy's log contain `needle`.
fn log_count(proxy: &Proxy, needle: &str) -> usize {
    proxy.log().lines().filter(|l| l.contains(needle)).count()
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The reload's last log line (applied or refused).
const RELOADED: [&str; 2] = ["config reloaded", "config reload refused"];

/// Send SIGHUP and wait for the reload's log line; the line.
fn sighup(proxy: &Proxy) -> String {
    let count = |proxy: &Proxy| RELOADED.iter().map(|n| log_count(proxy, n)).sum::<usize>();
    let before = count(proxy);
    let status = std::process::Command::new("kill")
        .args(["-HUP", &proxy.pid().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
    wait_until("the reload's log line", || count(proxy) > before);
    let log = proxy.log();
    let mut lines = log
        .lines()
        .filter(|l| RELOADED.iter().any(|n| l.contains(n)));
    lines.nth(before).unwrap_or_default().to_string()
}

/// An HTTP/1.0 request on the admin port at `base`: status and body.
fn http(base: &str, method: &str, path: &str) -> (u16, String) {
    let addr = base.strip_prefix("http://").expect("http:// URL");
    let mut stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: 0\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, body.to_string())
}

/// The value of the sample `series` in `/metrics`; 0 when absent.
fn metric(base: &str, series: &str) -> f64 {
    let (_, text) = http(base, "GET", "/metrics");
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

const WRONGPASS: &str = "-WRONGPASS invalid username-password pair or user is disabled.\r\n";

#[test]
fn sighup_changes_the_password_for_new_clients_and_keeps_logged_in_ones() {
    require_redis();
    let cluster = Cluster::start(3, 0);
    let users = "[[users]]\nname = \"ops\"\npassword = \"opspw\"\nrules = \"+@all ~*\"\n";
    let (proxy, path) = proxy_with_file(&cluster, &format!("requirepass = \"old\"\n{users}"));
    let port = proxy.port();

    let mut kept = RawClient::connect(port);
    assert_eq!(ask(&mut kept, &["AUTH", "old"]), "+OK\r\n");
    assert_eq!(ask(&mut kept, &["SET", "reload:k", "v1"]), "+OK\r\n");
    let mut ops = RawClient::connect(port);
    assert_eq!(ask(&mut ops, &["AUTH", "ops", "opspw"]), "+OK\r\n");
    let mut waiting = RawClient::connect(port);
    assert_eq!(
        ask(&mut waiting, &["GET", "reload:k"]),
        "-NOAUTH Authentication required.\r\n"
    );

    // A new password, and the user `ops` removed.
    rewrite(&path, "requirepass = \"new\"\n");
    let line = sighup(&proxy);
    assert!(
        line.contains("config reloaded") && line.contains("requirepass/users"),
        "{line}"
    );

    // A new client needs the new password.
    let mut fresh = RawClient::connect(port);
    assert_eq!(ask(&mut fresh, &["AUTH", "old"]), WRONGPASS);
    assert_eq!(ask(&mut fresh, &["AUTH", "new"]), "+OK\r\n");
    assert_eq!(ask(&mut fresh, &["GET", "reload:k"]), "$2\r\nv1\r\n");
    // The client logged in before keeps working, on the same connection.
    assert_eq!(ask(&mut kept, &["GET", "reload:k"]), "$2\r\nv1\r\n");
    assert_eq!(ask(&mut kept, &["SET", "reload:k", "v2"]), "+OK\r\n");
    // One that had not logged in yet logs in with the new password.
    assert_eq!(ask(&mut waiting, &["AUTH", "old"]), WRONGPASS);
    assert_eq!(ask(&mut waiting, &["AUTH", "new"]), "+OK\r\n");
    // The client of the removed user was closed (as Redis's ACL DELUSER does).
    assert!(ops.is_closed(), "the removed user's client is still open");
    assert_eq!(
        log_count(
            &proxy,
            "closing a client: a reload removed or disabled its user"
        ),
        1,
        "{}",
        proxy.log()
    );
}

#[test]
fn a_broken_file_is_refused_with_its_reason_and_changes_nothing() {
    require_redis();
    let cluster = Cluster::start(3, 0);
    let (proxy, path) = proxy_with_file(&cluster, "requirepass = \"old\"\nmax_clients = 100\n");
    let admin = proxy.admin_url().expect("admin port");
    let mut kept = RawClient::connect(proxy.port());
    assert_eq!(ask(&mut kept, &["AUTH", "old"]), "+OK\r\n");

    // Not TOML, then a bad value, then an unknown key: each refused whole, with why.
    for (text, reason) in [
        ("requirepass = \"new\"\nmax_clients = \n", "config file"),
        ("requirepass = \"new\"\nmax_clients = 0\n", "`max_clients`"),
        ("requirepass = \"new\"\nmax_client = 5\n", "max_client"),
    ] {
        rewrite(&path, text);
        let (status, body) = http(&admin, "POST", "/reload");
        assert_eq!(status, 400, "{body}");
        assert!(body.contains(reason), "{reason} not in {body:?}");
    }
    assert_eq!(
        metric(&admin, "slotgate_config_reloads_total{result=\"error\"}"),
        3.0
    );
    assert_eq!(
        metric(&admin, "slotgate_config_last_reload_successful"),
        0.0
    );
    let log = proxy.log();
    let refused: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("config reload refused"))
        .collect();
    assert_eq!(refused.len(), 3, "{log}");
    assert!(refused.iter().all(|l| l.contains("WARN")), "{refused:?}");

    // The old password still works, for new clients and the logged-in one.
    let mut fresh = RawClient::connect(proxy.port());
    assert_eq!(ask(&mut fresh, &["AUTH", "new"]), WRONGPASS);
    assert_eq!(ask(&mut fresh, &["AUTH", "old"]), "+OK\r\n");
    assert_eq!(ask(&mut kept, &["PING"]), "+PONG\r\n");

    // A good file applies; a key that needs a restart is named and the rest applies.
    rewrite(
        &path,
        "requirepass = \"new\"\nmax_clients = 100\nlog_format = \"json\"\n",
    );
    let (status, body) = http(&admin, "POST", "/reload");
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("changed: requirepass/users") && body.contains("needs a restart: log_format"),
        "{body}"
    );
    assert_eq!(
        metric(&admin, "slotgate_config_reloads_total{result=\"ok\"}"),
        1.0
    );
    assert_eq!(
        metric(&admin, "slotgate_config_last_reload_successful"),
        1.0
    );
    let restart = log_count(
        &proxy,
        "`log_format` changed in the file but needs a restart",
    );
    assert_eq!(restart, 1, "{}", proxy.log());
    let mut newer = RawClient::connect(proxy.port());
    assert_eq!(ask(&mut newer, &["AUTH", "new"]), "+OK\r\n");
    // Text logs still: log_format did not change.
    assert!(!proxy.log().contains("{\"timestamp\""));
    // GET is not a reload.
    assert_eq!(http(&admin, "GET", "/reload").0, 405);
}

#[test]
fn a_lower_max_clients_refuses_new_clients_and_keeps_the_others() {
    require_redis();
    let cluster = Cluster::start(3, 0);
    let (proxy, path) = proxy_with_file(&cluster, "max_clients = 10\n");
    let port = proxy.port();
    let mut open: Vec<RawClient> = (0..3).map(|_| RawClient::connect(port)).collect();
    for client in &mut open {
        assert_eq!(ask(client, &["PING"]), "+PONG\r\n");
    }

    rewrite(&path, "max_clients = 2\n");
    let line = sighup(&proxy);
    assert!(line.contains("changed: max_clients"), "{line}");

    let mut refused = RawClient::connect(port);
    assert_eq!(
        refused.read_quiet(),
        "-ERR max number of clients reached\r\n"
    );
    assert!(refused.is_closed());
    // The three connected before stay, over the new limit.
    for client in &mut open {
        assert_eq!(ask(client, &["PING"]), "+PONG\r\n");
    }
}

#[test]
fn a_reloaded_log_level_shows_debug_lines() {
    require_redis();
    let cluster = Cluster::start(3, 0);
    // No log_level in the file: the harness's RUST_LOG=info applies.
    let (proxy, path) = proxy_with_file(&cluster, "requirepass = \"pw\"\n");
    let debug_line = "authentication failed";
    let mut client = RawClient::connect(proxy.port());
    assert_eq!(ask(&mut client, &["AUTH", "wrong"]), WRONGPASS);
    assert_eq!(log_count(&proxy, debug_line), 0, "a debug line at info");

    rewrite(&path, "requirepass = \"pw\"\nlog_level = \"debug\"\n");
    let line = sighup(&proxy);
    assert!(line.contains("changed: log_level"), "{line}");
    assert_eq!(ask(&mut client, &["AUTH", "wrong"]), WRONGPASS);
    wait_until("the debug line", || log_count(&proxy, debug_line) == 1);
    assert!(
        proxy
            .log()
            .lines()
            .any(|l| l.contains("DEBUG") && l.contains(debug_line)),
        "{}",
        proxy.log()
    );

    // And back: without log_level in the file, RUST_LOG's info again.
    rewrite(&path, "requirepass = \"pw\"\n");
    sighup(&proxy);
    assert_eq!(ask(&mut client, &["AUTH", "wrong"]), WRONGPASS);
    assert_eq!(ask(&mut client, &["AUTH", "pw"]), "+OK\r\n");
    assert_eq!(log_count(&proxy, debug_line), 1, "{}", proxy.log());
}

#[test]
fn an_address_map_added_by_a_reload_is_dialled() {
    require_redis();
    // The nodes announce 127.0.0.2:<port> addresses this host cannot reach.
    let cluster = Cluster::start_with(
        3,
        0,
        ClusterConfig {
            network: Network::HiddenAddress,
            ..ClusterConfig::default()
        },
    );
    let (proxy, path) = proxy_with_file(&cluster, "[backend]\ntimeout_ms = 1000\n");
    let keys = keys_on_every_master(&cluster, "mapped", 1);
    let mut client = RawClient::connect(proxy.port());
    // Without a map the announced addresses cannot be reached.
    let reply = ask(&mut client, &["SET", &keys[0], "x"]);
    assert!(reply.starts_with('-'), "{reply}");

    let mut map = String::from("[backend]\ntimeout_ms = 1000\n[address_map]\n");
    for port in cluster.ports() {
        map.push_str(&format!(
            "\"{}\" = \"127.0.0.1:{port}\"\n",
            cluster.announced(port)
        ));
    }
    rewrite(&path, &map);
    let line = sighup(&proxy);
    assert!(line.contains("changed: address_map"), "{line}");

    // The same client, still connected, reaches every master now.
    for key in &keys {
        let mut attempts = 0;
        loop {
            attempts += 1;
            let reply = ask(&mut client, &["SET", key, "x"]);
            if reply == "+OK\r\n" {
                break;
            }
            assert!(attempts < 50, "SET {key} after the reload: {reply}");
            std::thread::sleep(Duration::from_millis(100));
        }
        assert_eq!(ask(&mut client, &["GET", key]), "$1\r\nx\r\n");
    }
    let info = proxy.cli(&["INFO", "nodes"]);
    for port in cluster.master_ports() {
        let line = format!("addr={},dial=127.0.0.1:{port}", cluster.announced(port));
        assert!(info.contains(&line), "{line} missing from INFO:\n{info}");
    }
}

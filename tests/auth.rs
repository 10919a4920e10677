//! Client authentication and rules, node credentials, and the connection limits, as
//! clients see them: `NOAUTH` before `AUTH` (but `PING`), each `AUTH` form and
//! `HELLO ... AUTH`, `WRONGPASS` for a wrong password or a disabled user, `NOPERM` for
//! a denied command, a denied category, a key outside the user's patterns (every key
//! of an `MGET` across slots), `ACL WHOAMI/USERS/LIST/GETUSER` without secrets,
//! passwords from an environment variable, a file and a SHA-256 digest, `requirepass`;
//! nodes protected by `requirepass` or an ACL user; `timeout` closing an idle client but
//! not a blocked or subscribed one; `max_clients_per_ip`. With the `redis` crate,
//! redis-cli (`-a`, `--user --pass`), redis-py and a raw socket.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use redis::Value;
use sha2::{Digest, Sha256};
use support::{python_or_skip, require_redis, Cluster, Proxy, RawClient};

const NOAUTH: &str = "-NOAUTH Authentication required.\r\n";
const WRONGPASS: &str = "-WRONGPASS invalid username-password pair or user is disabled.\r\n";

/// `args` as a RESP request.
fn resp(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n{a}\r\n", a.len()).as_bytes());
    }
    out
}

/// Send one request and read its one reply, as the proxy wrote it.
fn ask(raw: &mut RawClient, args: &[&str]) -> String {
    raw.write(&resp(args));
    let replies = raw.read_replies(1, Duration::from_secs(10));
    assert_eq!(replies.len(), 1, "no reply to {args:?}");
    replies.into_iter().next().unwrap_or_default()
}

fn noperm_command(user: &str, command: &str) -> String {
    format!("-NOPERM User {user} has no permissions to run the '{command}' command\r\n")
}

const NOPERM_KEY: &str = "-NOPERM No permissions to access a key\r\n";

/// `redis-cli -p PORT args...`: stdout and stderr, trimmed.
fn cli(port: u16, args: &[&str]) -> (String, String) {
    let out = Command::new("redis-cli")
        .arg("-p")
        .arg(port.to_string())
        .arg("--no-auth-warning")
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run redis-cli");
    (
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
        String::from_utf8_lossy(&out.stderr).trim().to_string(),
    )
}

fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Polls `cond` every 50 ms until it holds, for at most 15 s.
fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

const APP_PW: &str = "app-secret-from-env";
const READER_PW: &str = "reader-secret-from-file";
const ADMIN_PW: &str = "admin-secret-by-digest";
const DEFAULT_PW: &str = "default-secret";
/// A wrong password, distinctive enough to look for in the log.
const WRONG_PW: &str = "not-the-password-7";

/// A proxy with five users: `default` (clear password, the default rules), `app`
/// (password from an environment variable; no scripting, keys `app:*`), `reader` (from
/// a file; reads only), `admin` (by SHA-256 digest; everything) and `disabled`.
fn proxy_with_users(cluster: &Cluster) -> Proxy {
    std::env::set_var("SLOTGATE_AUTH_TEST_APP_PW", APP_PW);
    let dir = tempfile::tempdir().unwrap().keep();
    let reader_file = dir.join("reader.pw");
    std::fs::write(&reader_file, format!("{READER_PW}\n")).unwrap();
    let config = format!(
        "log_level = \"debug\"\n\
         [[users]]\nname = \"default\"\npassword = \"{DEFAULT_PW}\"\n\
         [[users]]\nname = \"app\"\npassword_env = \"SLOTGATE_AUTH_TEST_APP_PW\"\n\
         rules = \"+@all -@admin -@dangerous -@scripting ~app:*\"\n\
         [[users]]\nname = \"reader\"\npassword_file = \"{}\"\nrules = \"+@read +@connection +acl|whoami ~*\"\n\
         [[users]]\nname = \"admin\"\npassword_sha256 = \"{}\"\nrules = \"+@all ~* &*\"\n\
         [[users]]\nname = \"disabled\"\npassword = \"x\"\nenabled = false\nrules = \"+@all ~*\"\n",
        reader_file.display(),
        sha256_hex(ADMIN_PW),
    );
    Proxy::start_with_config(&cluster.seeds(), &config)
}

#[test]
fn clients_authenticate_and_follow_their_rules() {
    require_redis();
    let cluster = Cluster::start(3, 0);
    let proxy = proxy_with_users(&cluster);
    let port = proxy.port();

    // Before AUTH: only AUTH, HELLO, PING, QUIT and RESET; Redis's own errors first.
    let mut raw = RawClient::connect(port);
    assert_eq!(ask(&mut raw, &["GET", "app:1"]), NOAUTH);
    assert_eq!(ask(&mut raw, &["ACL", "WHOAMI"]), NOAUTH);
    assert_eq!(ask(&mut raw, &["PING"]), "+PONG\r\n");
    assert!(ask(&mut raw, &["NOSUCH", "x"]).starts_with("-ERR unknown command 'NOSUCH'"));
    assert_eq!(
        ask(&mut raw, &["GET"]),
        "-ERR wrong number of arguments for 'get' command\r\n"
    );
    assert!(ask(&mut raw, &["CLIENT", "NOSUCH"]).starts_with("-ERR unknown subcommand"));
    assert_eq!(
        ask(&mut raw, &["EVAL", "return 1", "x"]),
        NOAUTH,
        "numkeys: after auth"
    );
    assert!(ask(&mut raw, &["HELLO", "3"]).starts_with("-NOAUTH HELLO must be called"));
    assert!(ask(&mut raw, &["HELLO", "3", "SETNAME", "x"]).starts_with("-NOAUTH HELLO"));
    assert_eq!(ask(&mut raw, &["AUTH", WRONG_PW]), WRONGPASS);
    assert_eq!(ask(&mut raw, &["AUTH", "app", WRONG_PW]), WRONGPASS);
    assert_eq!(ask(&mut raw, &["AUTH", "nobody", APP_PW]), WRONGPASS);
    assert_eq!(ask(&mut raw, &["AUTH", "disabled", "x"]), WRONGPASS);
    assert_eq!(
        ask(&mut raw, &["AUTH", "a", "b", "c"]),
        "-ERR syntax error\r\n"
    );
    assert_eq!(ask(&mut raw, &["GET", "app:1"]), NOAUTH);

    // AUTH <password> logs in as default, whose rules keep @admin and @dangerous out.
    assert_eq!(ask(&mut raw, &["AUTH", DEFAULT_PW]), "+OK\r\n");
    assert_eq!(ask(&mut raw, &["ACL", "WHOAMI"]), "$7\r\ndefault\r\n");
    assert_eq!(ask(&mut raw, &["SET", "any:key", "v"]), "+OK\r\n");
    assert_eq!(
        ask(&mut raw, &["FLUSHALL"]),
        noperm_command("default", "flushall")
    );
    assert_eq!(
        ask(&mut raw, &["CONFIG", "GET", "maxmemory"]),
        noperm_command("default", "config|get")
    );
    assert_eq!(
        ask(&mut raw, &["KEYS", "*"]),
        noperm_command("default", "keys")
    );
    assert_eq!(
        ask(&mut raw, &["ACL", "LIST"]),
        noperm_command("default", "acl|list")
    );
    // A failed AUTH keeps the user; AUTH user pass switches.
    assert_eq!(ask(&mut raw, &["AUTH", "admin", WRONG_PW]), WRONGPASS);
    assert_eq!(ask(&mut raw, &["ACL", "WHOAMI"]), "$7\r\ndefault\r\n");
    assert_eq!(ask(&mut raw, &["AUTH", "app", APP_PW]), "+OK\r\n");
    assert_eq!(ask(&mut raw, &["ACL", "WHOAMI"]), "$3\r\napp\r\n");
    // RESET: back to a new connection's state, which must authenticate again.
    assert_eq!(ask(&mut raw, &["RESET"]), "+RESET\r\n");
    assert_eq!(ask(&mut raw, &["GET", "app:1"]), NOAUTH);

    // HELLO 3 AUTH and HELLO 2 AUTH.
    let hello = ask(&mut raw, &["HELLO", "3", "AUTH", "app", WRONG_PW]);
    assert_eq!(hello, WRONGPASS);
    let hello = ask(&mut raw, &["HELLO", "3", "AUTH", "app", APP_PW]);
    assert!(hello.starts_with("%7\r\n"), "{hello}");
    assert_eq!(ask(&mut raw, &["ACL", "WHOAMI"]), "$3\r\napp\r\n");
    let mut raw2 = RawClient::connect(port);
    let hello = ask(&mut raw2, &["HELLO", "2", "AUTH", "reader", READER_PW]);
    assert!(hello.starts_with("*14\r\n"), "{hello}");
    assert_eq!(ask(&mut raw2, &["ACL", "WHOAMI"]), "$6\r\nreader\r\n");

    // app: keys app:* only, checked for every key of a request split across slots;
    // no scripting (a script runs with the node's rights); no @dangerous.
    let app_keys: Vec<String> = (0..6).map(|i| format!("app:{i}")).collect();
    let slots: std::collections::BTreeSet<u16> = app_keys
        .iter()
        .map(|k| support::key_slot(k.as_bytes()))
        .collect();
    assert!(slots.len() > 1, "the keys span several slots");
    let url = format!("redis://app:{APP_PW}@127.0.0.1:{port}/");
    let mut app = redis::Client::open(url).unwrap().get_connection().unwrap();
    for k in &app_keys {
        let _: () = redis::cmd("SET").arg(k).arg(k).query(&mut app).unwrap();
    }
    let values: Vec<String> = redis::cmd("MGET").arg(&app_keys).query(&mut app).unwrap();
    assert_eq!(values, app_keys);
    let mut mget = vec!["MGET"];
    mget.extend(app_keys.iter().map(String::as_str));
    mget.push("other");
    assert_eq!(ask(&mut raw, &mget), NOPERM_KEY, "one key outside ~app:*");
    assert_eq!(ask(&mut raw, &["SET", "other", "v"]), NOPERM_KEY);
    assert_eq!(
        ask(&mut raw, &["EVAL", "return redis.call('FLUSHALL')", "0"]),
        noperm_command("app", "eval")
    );
    assert_eq!(
        ask(&mut raw, &["FLUSHALL"]),
        noperm_command("app", "flushall")
    );
    let err = redis::cmd("GET")
        .arg("other")
        .query::<Value>(&mut app)
        .unwrap_err();
    assert_eq!(err.code(), Some("NOPERM"), "{err}");
    // Inside MULTI a refused command aborts the transaction, as in Redis.
    let tag = "app:{t}";
    assert_eq!(ask(&mut raw, &["MULTI"]), "+OK\r\n");
    assert_eq!(ask(&mut raw, &["SET", tag, "1"]), "+QUEUED\r\n");
    assert_eq!(ask(&mut raw, &["SET", "other", "1"]), NOPERM_KEY);
    assert!(ask(&mut raw, &["EXEC"]).starts_with("-EXECABORT"));
    assert_eq!(ask(&mut raw, &["EXISTS", tag]), ":0\r\n");

    // reader (password from a file): reads, never writes — a denied category.
    let (out, _) = cli(
        port,
        &["--user", "reader", "--pass", READER_PW, "GET", "app:1"],
    );
    assert_eq!(out, "app:1");
    let (out, _) = cli(
        port,
        &["--user", "reader", "--pass", READER_PW, "SET", "app:1", "x"],
    );
    assert_eq!(
        out,
        "NOPERM User reader has no permissions to run the 'set' command"
    );
    assert_eq!(
        ask(&mut raw2, &["DEL", "app:1", "app:2"]),
        noperm_command("reader", "del")
    );

    // redis-cli -a: the default user.
    let (out, _) = cli(port, &["-a", DEFAULT_PW, "GET", "any:key"]);
    assert_eq!(out, "v");
    let (out, err) = cli(port, &["-a", WRONG_PW, "GET", "any:key"]);
    assert!(
        format!("{out}{err}").contains("NOAUTH") || format!("{out}{err}").contains("WRONGPASS"),
        "{out} {err}"
    );

    // admin (by digest) sees the users, without secrets.
    let admin = ["--user", "admin", "--pass", ADMIN_PW];
    let (users, _) = cli(port, &[&admin[..], &["ACL", "USERS"]].concat());
    assert_eq!(
        users.lines().collect::<Vec<_>>(),
        ["admin", "app", "default", "disabled", "reader"]
    );
    let (list, _) = cli(port, &[&admin[..], &["ACL", "LIST"]].concat());
    assert!(
        list.contains("user app on ~app:* &* +@all -@admin -@dangerous -@scripting"),
        "{list}"
    );
    assert!(list.contains("user disabled off"), "{list}");
    let (getuser, _) = cli(port, &[&admin[..], &["ACL", "GETUSER", "reader"]].concat());
    assert!(
        getuser.contains("commands\n-@all +@read +@connection +acl|whoami")
            && getuser.contains("keys\n~*"),
        "{getuser}"
    );
    let (whoami, _) = cli(port, &[&admin[..], &["ACL", "WHOAMI"]].concat());
    assert_eq!(whoami, "admin");
    let (nil, _) = cli(port, &[&admin[..], &["ACL", "GETUSER", "nobody"]].concat());
    assert_eq!(nil, "");
    let (clients, _) = cli(port, &[&admin[..], &["CLIENT", "LIST"]].concat());
    assert!(clients.contains(" user=app "), "{clients}");
    assert!(clients.contains(" user=reader "), "{clients}");
    assert!(clients.contains(" user=admin "), "{clients}");
    let (killed, _) = cli(
        port,
        &[&admin[..], &["CLIENT", "KILL", "USER", "reader"]].concat(),
    );
    assert_eq!(killed, "1", "the one reader connection");
    assert!(raw2.is_closed());
    let (nobody, _) = cli(
        port,
        &[&admin[..], &["CLIENT", "KILL", "USER", "nobody"]].concat(),
    );
    assert_eq!(nobody, "ERR No such user 'nobody'");
    let (flushed, _) = cli(port, &[&admin[..], &["FLUSHALL"]].concat());
    assert_eq!(flushed, "OK", "admin was granted everything");

    // redis-py.
    if let Some(python) = python_or_skip("clients_authenticate_and_follow_their_rules (redis-py)") {
        let script = format!(
            r#"
import redis
r = redis.Redis(port={port}, username="app", password="{APP_PW}", protocol=3)
r.set("app:py", "1")
assert r.get("app:py") == b"1"
try:
    r.get("other")
    raise SystemExit("no NOPERM")
except redis.exceptions.NoPermissionError as e:
    assert "No permissions to access a key" in str(e), e
try:
    redis.Redis(port={port}, username="app", password="{WRONG_PW}").ping()
    raise SystemExit("no WRONGPASS")
except redis.exceptions.AuthenticationError as e:
    assert "WRONGPASS" in str(e) or "invalid username-password" in str(e), e
try:
    redis.Redis(port={port}).get("app:py")
    raise SystemExit("no NOAUTH")
except redis.exceptions.AuthenticationError as e:
    # (a redis-py that opens with HELLO hears Redis's NOAUTH for HELLO)
    assert "Authentication required" in str(e) or "HELLO must be called" in str(e), e
print("all checks passed")
"#
        );
        let out = Command::new(&python)
            .args(["-c", &script])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("all checks passed"),
            "{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // No secret ever reaches the log (at debug level, after failed logins).
    let log = proxy.log();
    assert!(log.contains("authentication failed"), "{log}");
    for secret in [APP_PW, READER_PW, ADMIN_PW, DEFAULT_PW, WRONG_PW] {
        assert!(!log.contains(secret), "{secret} in the log:\n{log}");
    }
    assert!(!log.contains(&sha256_hex(ADMIN_PW)));
}

#[test]
fn requirepass_is_one_password_for_the_default_user() {
    require_redis();
    let cluster = Cluster::start(1, 0);
    let proxy = Proxy::start_with_config(&cluster.seeds(), "requirepass = \"simple\"\n");
    let port = proxy.port();
    let (out, _) = cli(port, &["GET", "k"]);
    assert_eq!(out, "NOAUTH Authentication required.");
    let (out, _) = cli(port, &["-a", "simple", "SET", "k", "v"]);
    assert_eq!(out, "OK");
    let (out, _) = cli(port, &["--user", "default", "--pass", "simple", "GET", "k"]);
    assert_eq!(out, "v");
    // The default rules: no @dangerous, no @admin.
    let (out, _) = cli(port, &["-a", "simple", "FLUSHALL"]);
    assert_eq!(
        out,
        "NOPERM User default has no permissions to run the 'flushall' command"
    );
    let url = format!("redis://:simple@127.0.0.1:{port}/");
    let mut con = redis::Client::open(url).unwrap().get_connection().unwrap();
    let v: String = redis::cmd("GET").arg("k").query(&mut con).unwrap();
    assert_eq!(v, "v");
    let url = format!("redis://:nope@127.0.0.1:{port}/");
    let err = match redis::Client::open(url).unwrap().get_connection() {
        Ok(_) => panic!("a wrong password connected"),
        Err(e) => e,
    };
    assert_eq!(err.kind(), redis::ErrorKind::AuthenticationFailed, "{err}");
}

/// `COMMAND`'s categories of every command and subcommand the installed redis-server
/// knows: slotgate's static table must say the same.
#[test]
fn acl_categories_match_the_installed_redis_server() {
    require_redis();
    let cluster = Cluster::start(1, 0);
    let mut node = cluster.node_client(cluster.ports()[0]);
    let reply: Value = redis::cmd("COMMAND").query(&mut node).unwrap();
    let text = |v: &Value| match v {
        Value::BulkString(b) => String::from_utf8_lossy(b).to_lowercase(),
        Value::SimpleString(s) => s.to_lowercase(),
        other => panic!("not a string: {other:?}"),
    };
    let mut checked = 0;
    let mut wrong = Vec::new();
    let mut entries: Vec<Value> = match reply {
        Value::Array(entries) => entries,
        other => panic!("COMMAND: {other:?}"),
    };
    while let Some(entry) = entries.pop() {
        let Value::Array(fields) = entry else {
            continue;
        };
        let name = text(&fields[0]);
        let cats: Vec<String> = match &fields[6] {
            Value::Array(c) => c
                .iter()
                .map(|c| text(c).trim_start_matches('@').to_string())
                .collect(),
            other => panic!("{name}: categories {other:?}"),
        };
        if let Some(Value::Array(subs)) = fields.get(9) {
            entries.extend(subs.iter().cloned());
        }
        let theirs = cats
            .iter()
            .map(|c| slotgate::acl::categories::bit(c).unwrap_or_else(|| panic!("{name}: @{c}")))
            .fold(0, |a, b| a | b);
        let Some(ours) = slotgate::acl::categories::of(&name) else {
            wrong.push(format!("{name}: not in slotgate's table"));
            continue;
        };
        checked += 1;
        if ours != theirs {
            let names = |b| {
                slotgate::acl::categories::names(b)
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            wrong.push(format!(
                "{name}: ours {} theirs {}",
                names(ours),
                names(theirs)
            ));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
    assert!(checked > 300, "only {checked} commands checked");
}

/// Run a few commands through a proxy whose nodes require authentication: keys on
/// every master, a RESP3 client, a blocking command (a pinned connection) and a
/// subscription (the pub/sub hub's connection): each opens its node connections with
/// the configured credentials.
fn serve_through_protected_nodes(cluster: &Cluster, proxy: &Proxy, prefix: &str) {
    let keys: Vec<String> = (0..12).map(|i| format!("{prefix}:{i}")).collect();
    let mut con = proxy.client();
    for k in &keys {
        let _: () = redis::cmd("SET").arg(k).arg(k).query(&mut con).unwrap();
    }
    let values: Vec<String> = redis::cmd("MGET").arg(&keys).query(&mut con).unwrap();
    assert_eq!(values, keys);
    let mut raw = RawClient::connect(proxy.port());
    assert!(ask(&mut raw, &["HELLO", "3"]).starts_with('%'));
    let reply = ask(&mut raw, &["GET", &keys[0]]);
    assert_eq!(reply, format!("${}\r\n{}\r\n", keys[0].len(), keys[0]));
    let list = format!("{prefix}:list");
    let mut pusher = proxy.client();
    let mut blocked = RawClient::connect(proxy.port());
    blocked.write(&resp(&["BLPOP", &list, "0"]));
    let _: () = redis::cmd("RPUSH")
        .arg(&list)
        .arg("job")
        .query(&mut pusher)
        .unwrap();
    let popped = blocked.read_replies(1, Duration::from_secs(10));
    assert_eq!(popped.len(), 1, "BLPOP got nothing");
    assert!(popped[0].ends_with("$3\r\njob\r\n"), "{popped:?}");
    let mut sub = RawClient::connect(proxy.port());
    let confirmed = ask(&mut sub, &["SUBSCRIBE", "news"]);
    assert!(confirmed.contains("subscribe"), "{confirmed}");
    // Delivered through the cluster bus whichever node takes the PUBLISH.
    let _: i64 = redis::cmd("PUBLISH")
        .arg("news")
        .arg("hi")
        .query(&mut pusher)
        .unwrap();
    let message = sub.read_replies(1, Duration::from_secs(10));
    assert!(
        message.first().is_some_and(|m| m.contains("hi")),
        "{message:?}"
    );
    let _ = cluster;
}

#[test]
fn nodes_with_requirepass() {
    require_redis();
    let cluster = Cluster::start(3, 0);
    cluster.require_auth(None, "node-pass");
    // The nodes refuse the unauthenticated.
    let (out, _) = cli(cluster.ports()[0], &["GET", "x"]);
    assert_eq!(out, "NOAUTH Authentication required.");
    let proxy = Proxy::start_with_config(&cluster.seeds(), "[backend]\npassword = \"node-pass\"\n");
    serve_through_protected_nodes(&cluster, &proxy, "rp");
}

#[test]
fn nodes_with_an_acl_user() {
    require_redis();
    let cluster = Cluster::start(3, 0);
    cluster.require_auth(Some("slotgate"), "acl-node-pass");
    let (out, _) = cli(cluster.ports()[0], &["GET", "x"]);
    assert_eq!(out, "NOAUTH Authentication required.");
    let dir = tempfile::tempdir().unwrap().keep();
    let file = dir.join("node.pw");
    std::fs::write(&file, "acl-node-pass\n").unwrap();
    let proxy = Proxy::start_with_config(
        &cluster.seeds(),
        &format!(
            "[backend]\nusername = \"slotgate\"\npassword_file = \"{}\"\n",
            file.display()
        ),
    );
    serve_through_protected_nodes(&cluster, &proxy, "acl");
    // The node's own account of who is connected: the proxy's user.
    let (out, _) = cli(
        cluster.ports()[0],
        &[
            "--user",
            "slotgate",
            "--pass",
            "acl-node-pass",
            "CLIENT",
            "LIST",
        ],
    );
    assert!(out.contains("user=slotgate"), "{out}");
    assert!(!proxy.log().contains("acl-node-pass"));
}

#[test]
fn idle_clients_are_closed_but_not_blocked_or_subscribed_ones() {
    require_redis();
    let cluster = Cluster::start(1, 0);
    let proxy = Proxy::start_with_config(&cluster.seeds(), "timeout = 1\n");
    let port = proxy.port();

    let mut idle = RawClient::connect(port);
    assert_eq!(ask(&mut idle, &["PING"]), "+PONG\r\n");
    let mut blocked = RawClient::connect(port);
    blocked.write(&resp(&["BLPOP", "idle:list", "0"]));
    let mut subscriber = RawClient::connect(port);
    assert!(ask(&mut subscriber, &["SUBSCRIBE", "idle:news"]).contains("subscribe"));

    // The idle client is closed, without a word.
    wait_until("the idle client is closed", || idle.is_closed());
    // Well past the timeout the blocked and the subscribed clients are still served.
    std::thread::sleep(Duration::from_secs(2));
    let mut con = proxy.client();
    let _: () = redis::cmd("RPUSH")
        .arg("idle:list")
        .arg("x")
        .query(&mut con)
        .unwrap();
    let popped = blocked.read_replies(1, Duration::from_secs(10));
    assert_eq!(popped, ["*2\r\n$9\r\nidle:list\r\n$1\r\nx\r\n"]);
    let n: i64 = redis::cmd("PUBLISH")
        .arg("idle:news")
        .arg("m")
        .query(&mut con)
        .unwrap();
    assert_eq!(n, 1);
    let message = subscriber.read_replies(1, Duration::from_secs(10));
    assert_eq!(
        message,
        ["*3\r\n$7\r\nmessage\r\n$9\r\nidle:news\r\n$1\r\nm\r\n"]
    );
    // The BLPOP client, answered, may idle out in turn like any other.
    wait_until("the answered client is closed too", || blocked.is_closed());
}

#[test]
fn connections_per_address_are_capped() {
    require_redis();
    let cluster = Cluster::start(1, 0);
    let proxy = Proxy::start_with_config(&cluster.seeds(), "max_clients_per_ip = 2\n");
    let port = proxy.port();
    let mut first = RawClient::connect(port);
    assert_eq!(ask(&mut first, &["PING"]), "+PONG\r\n");
    let mut second = RawClient::connect(port);
    assert_eq!(ask(&mut second, &["PING"]), "+PONG\r\n");
    // Without users every client is the unrestricted default user.
    assert_eq!(ask(&mut second, &["ACL", "WHOAMI"]), "$7\r\ndefault\r\n");
    assert_eq!(
        ask(&mut second, &["ACL", "LIST"]),
        "*1\r\n$34\r\nuser default on nopass ~* &* +@all\r\n"
    );
    let mut third = RawClient::connect(port);
    assert_eq!(
        third.read_quiet(),
        "-ERR max number of clients from this address reached\r\n"
    );
    assert!(third.is_closed());
    // One leaves: there is room again (once the proxy has seen it go).
    drop(first);
    let mut attempts = 0;
    loop {
        attempts += 1;
        let mut again = RawClient::connect(port);
        again.write(&resp(&["PING"]));
        let reply = again.read_quiet();
        if reply == "+PONG\r\n" {
            break;
        }
        assert_eq!(
            reply,
            "-ERR max number of clients from this address reached\r\n"
        );
        assert!(attempts < 50, "no room after a client left");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(ask(&mut second, &["PING"]), "+PONG\r\n");
}

//! slotgate as a server shows and manages its clients: `CLIENT LIST`/`CLIENT INFO` see
//! every client of every worker with Redis's fields, `CLIENT KILL` closes a client
//! whichever worker serves it, `MONITOR` sees every request of every client in Redis's
//! line format, `CLIENT REPLY OFF/SKIP` really suppress replies, `PING` checks its
//! arity. Each proxy runs two workers; with several clients the kernel spreads them
//! over both (`SO_REUSEPORT`), so some of what is asked of one worker concerns a
//! client of the other.

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use support::{info_counter, require_redis, Cluster, Proxy, RawClient};

/// Clients per test: with two workers, the chance that all land on one is 2^-(N-1).
const CLIENTS: usize = 8;

fn query<T: redis::FromRedisValue>(con: &mut redis::Connection, args: &[&str]) -> T {
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query(con).unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

fn try_query(con: &mut redis::Connection, args: &[&str]) -> redis::RedisResult<redis::Value> {
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query(con)
}

/// `CLIENT LIST` text as `field → value` maps, one per line.
fn parse_list(text: &str) -> Vec<HashMap<String, String>> {
    text.lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            l.split(' ')
                .filter_map(|f| f.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        })
        .collect()
}

/// A line's field names, in order.
fn field_names(line: &str) -> Vec<String> {
    line.trim_end()
        .split(' ')
        .filter_map(|f| f.split_once('=').map(|(k, _)| k.to_string()))
        .collect()
}

/// Polls `cond` every 20 ms until it holds, for at most 10 s.
fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn start() -> (Cluster, Proxy) {
    require_redis();
    let cluster = Cluster::start(3, 0);
    let proxy = Proxy::start(&cluster.seeds(), &["--workers", "2"]);
    (cluster, proxy)
}

#[test]
fn client_list_and_info_show_every_client_of_every_worker() {
    let (cluster, proxy) = start();
    let mut clients: Vec<redis::Connection> = (0..CLIENTS).map(|_| proxy.client()).collect();
    let mut ids = Vec::new();
    for (i, con) in clients.iter_mut().enumerate() {
        let _: () = query(con, &["CLIENT", "SETNAME", &format!("app-{i}")]);
        ids.push(query::<i64>(con, &["CLIENT", "ID"]).to_string());
        // Each client's last command: SET for the even ones, GET for the odd ones.
        if i % 2 == 0 {
            let _: () = query(con, &["SET", &format!("k{i}"), "v"]);
        } else {
            let _: Option<String> = query(con, &["GET", &format!("k{i}")]);
        }
    }

    let text: String = query(&mut clients[0], &["CLIENT", "LIST"]);
    let lines = parse_list(&text);
    let laddr = proxy.addr();
    for (i, id) in ids.iter().enumerate() {
        let line = lines
            .iter()
            .find(|l| l["id"] == *id)
            .unwrap_or_else(|| panic!("client {i} (id {id}) missing from:\n{text}"));
        assert_eq!(line["name"], format!("app-{i}"), "{text}");
        assert_eq!(line["laddr"], laddr, "{text}");
        assert_eq!(line["user"], "default");
        assert_eq!(line["db"], "0");
        let cmd = match i {
            0 => "client|list",
            _ if i % 2 == 0 => "set",
            _ => "get",
        };
        assert_eq!(line["cmd"], cmd, "client {i}:\n{text}");
    }
    assert_eq!(lines.len(), CLIENTS, "{text}");
    // Connection order, as Redis lists them.
    let listed: Vec<&String> = lines.iter().map(|l| &l["id"]).collect();
    assert_eq!(listed, ids.iter().collect::<Vec<_>>());

    // The same fields in the same order as a redis-server's CLIENT INFO (the nodes are
    // one), with 7.2's lib-name and lib-ver at the end.
    let info: String = query(&mut clients[1], &["CLIENT", "INFO"]);
    assert!(
        info.ends_with('\n') && info.lines().count() == 1,
        "{info:?}"
    );
    let node_info = cluster.cli(cluster.master_ports()[0], &["CLIENT", "INFO"]);
    let extra = ["lib-name", "lib-ver", "watch", "io-thread"];
    let mut ours = field_names(&info);
    let mut redis = field_names(&node_info);
    assert_eq!(ours[ours.len() - 2..], ["lib-name", "lib-ver"], "{info}");
    ours.retain(|f| !extra.contains(&f.as_str()));
    redis.retain(|f| !extra.contains(&f.as_str()));
    assert_eq!(ours, redis, "slotgate: {info}redis: {node_info}");
    let fields = &parse_list(&info)[0];
    assert_eq!(fields["id"], ids[1]);
    assert_eq!(fields["name"], "app-1");
    assert_eq!(fields["cmd"], "client|info");
    assert_eq!(fields["flags"], "N");
    assert_eq!(fields["multi"], "-1");
    assert_eq!(fields["resp"], "2");
    assert_eq!(fields["sub"], "0");
    assert!(fields["fd"].parse::<i32>().unwrap() > 0, "{info}");
    assert!(fields["age"].parse::<u64>().is_ok() && fields["idle"].parse::<u64>().is_ok());
    assert!(fields["addr"].starts_with("127.0.0.1:"), "{info}");

    // A client's library and protocol, as it set them.
    let mut raw = RawClient::connect(proxy.port());
    let reply = raw.roundtrip(
        b"CLIENT SETINFO LIB-NAME mylib\r\nCLIENT SETINFO LIB-VER 1.2\r\nHELLO 3\r\n\
          CLIENT SETNAME raw\r\n",
    );
    assert!(reply.starts_with("+OK\r\n+OK\r\n%7"), "{reply}");
    let text: String = query(&mut clients[2], &["CLIENT", "LIST"]);
    let raw_line = parse_list(&text)
        .into_iter()
        .find(|l| l["name"] == "raw")
        .unwrap_or_else(|| panic!("{text}"));
    assert_eq!(
        (&raw_line["lib-name"][..], &raw_line["lib-ver"][..]),
        ("mylib", "1.2")
    );
    assert_eq!(raw_line["resp"], "3");
    assert_eq!(raw_line["cmd"], "client|setname");
    // In RESP3, CLIENT INFO is a verbatim string.
    let reply = raw.roundtrip(b"CLIENT INFO\r\n");
    assert!(
        reply.starts_with('=') && reply.contains("\r\ntxt:id="),
        "{reply}"
    );
    assert!(
        reply.contains(" name=raw ") && reply.contains(" resp=3 "),
        "{reply}"
    );

    // Filters: TYPE and ID, with Redis's errors.
    let normal: String = query(&mut clients[0], &["CLIENT", "LIST", "TYPE", "normal"]);
    assert_eq!(parse_list(&normal).len(), CLIENTS + 1);
    let pubsub: String = query(&mut clients[0], &["CLIENT", "LIST", "TYPE", "pubsub"]);
    assert_eq!(pubsub, "");
    let two: String = query(&mut clients[0], &["CLIENT", "LIST", "ID", &ids[3], &ids[6]]);
    let two_ids: Vec<String> = parse_list(&two)
        .into_iter()
        .map(|l| l["id"].clone())
        .collect();
    assert_eq!(two_ids, [ids[3].clone(), ids[6].clone()]);
    let err = try_query(&mut clients[0], &["CLIENT", "LIST", "TYPE", "foo"]).unwrap_err();
    assert!(
        err.to_string().contains("Unknown client type 'foo'"),
        "{err}"
    );
    let err = try_query(&mut clients[0], &["CLIENT", "LIST", "ID", "x"]).unwrap_err();
    assert!(err.to_string().contains("Invalid client ID"), "{err}");

    // redis-cli shows the same list.
    let cli = proxy.cli(&["CLIENT", "LIST"]);
    assert!(cli.contains(" name=app-7 "), "{cli}");
    assert!(cli.contains(" name=raw "), "{cli}");

    // A client that leaves is no longer listed.
    let gone = ids[5].clone();
    drop(clients.remove(5));
    wait_until("the closed client leaves the list", || {
        let text: String = query(&mut clients[0], &["CLIENT", "LIST"]);
        !parse_list(&text).iter().any(|l| l["id"] == gone)
    });
}

/// `con`'s next command fails: slotgate closed it.
fn assert_closed(con: &mut redis::Connection, who: &str) {
    let result = try_query(con, &["PING"]);
    assert!(result.is_err(), "{who} still answers: {result:?}");
}

#[test]
fn client_kill_closes_clients_of_any_worker() {
    let (_cluster, proxy) = start();
    let mut killer = proxy.client();
    let mut victims: Vec<(String, redis::Connection)> = (0..CLIENTS)
        .map(|_| {
            let mut con = proxy.client();
            let id: i64 = query(&mut con, &["CLIENT", "ID"]);
            (id.to_string(), con)
        })
        .collect();

    // By ID: the count, and the victim's next command fails, whichever worker it is on.
    for (id, mut con) in victims.drain(..4) {
        let killed: i64 = query(&mut killer, &["CLIENT", "KILL", "ID", &id]);
        assert_eq!(killed, 1, "id {id}");
        assert_closed(&mut con, &format!("client {id}"));
        let again: i64 = query(&mut killer, &["CLIENT", "KILL", "ID", &id]);
        assert_eq!(again, 0, "id {id} is gone");
    }

    // By address, new form and old form.
    let addr_of = |killer: &mut redis::Connection, id: &str| -> String {
        let text: String = query(killer, &["CLIENT", "LIST", "ID", id]);
        parse_list(&text)[0]["addr"].clone()
    };
    let (id, mut con) = victims.remove(0);
    let addr = addr_of(&mut killer, &id);
    let killed: i64 = query(&mut killer, &["CLIENT", "KILL", "ADDR", &addr]);
    assert_eq!(killed, 1);
    assert_closed(&mut con, "the client killed by ADDR");
    let (id, mut con) = victims.remove(0);
    let addr = addr_of(&mut killer, &id);
    let ok: String = query(&mut killer, &["CLIENT", "KILL", &addr]);
    assert_eq!(ok, "OK");
    assert_closed(&mut con, "the client killed by the old form");
    let err = try_query(&mut killer, &["CLIENT", "KILL", &addr]).unwrap_err();
    assert!(err.to_string().contains("No such client"), "{err}");

    // An idle client is closed at once, without sending anything: its worker is woken.
    let mut idle = RawClient::connect(proxy.port());
    let reply = idle.roundtrip(b"CLIENT ID\r\n");
    let idle_id = reply.trim_start_matches(':').trim().to_string();
    let killed: i64 = query(&mut killer, &["CLIENT", "KILL", "ID", &idle_id]);
    assert_eq!(killed, 1);
    assert!(idle.is_closed(), "the idle client was not closed");

    // Filters that match nobody, and Redis's errors.
    for args in [
        &["CLIENT", "KILL", "TYPE", "pubsub"][..],
        &["CLIENT", "KILL", "TYPE", "master"],
        &["CLIENT", "KILL", "MAXAGE", "100000"],
        &["CLIENT", "KILL", "ID", "999999"],
    ] {
        let killed: i64 = query(&mut killer, args);
        assert_eq!(killed, 0, "{args:?}");
    }
    for (args, error) in [
        (
            &["CLIENT", "KILL", "ID", "abc"][..],
            "client-id should be greater than 0",
        ),
        (
            &["CLIENT", "KILL", "USER", "nobody"],
            "No such user 'nobody'",
        ),
        (&["CLIENT", "KILL", "SKIPME", "maybe"], "syntax error"),
        (&["CLIENT", "KILL", "ID", "1", "TYPE"], "syntax error"),
        (&["CLIENT", "KILL", "1.2.3.4:5"], "No such client"),
    ] {
        let err = try_query(&mut killer, args).unwrap_err();
        assert!(err.to_string().contains(error), "{args:?}: {err}");
    }

    // LADDR and USER match every client but the one asking (SKIPME yes by default).
    let left = victims.len() as i64;
    let killed: i64 = query(&mut killer, &["CLIENT", "KILL", "LADDR", &proxy.addr()]);
    assert_eq!(killed, left);
    for (id, con) in victims.iter_mut() {
        assert_closed(con, &format!("client {id}"));
    }
    let _: String = query(&mut killer, &["PING"]);
    let mut other = proxy.client();
    let killed: i64 = query(&mut killer, &["CLIENT", "KILL", "USER", "default"]);
    assert_eq!(killed, 1);
    assert_closed(&mut other, "the client killed by USER");

    // SKIPME no: the client asking gets its reply, then is closed.
    let me: i64 = query(&mut killer, &["CLIENT", "ID"]);
    let killed: i64 = query(
        &mut killer,
        &["CLIENT", "KILL", "ID", &me.to_string(), "SKIPME", "no"],
    );
    assert_eq!(killed, 1);
    assert_closed(&mut killer, "the client that killed itself");
}

/// Reads from a monitoring client until `n` lines came, or 10 s pass.
fn monitor_lines(monitor: &mut RawClient, n: usize) -> Vec<String> {
    let lines = monitor.read_replies(n, Duration::from_secs(10));
    assert_eq!(lines.len(), n, "{lines:?}");
    lines
}

/// A line without its timestamp: `[0 ADDR] "ARG" ...`, after checking the timestamp's
/// form (`+SECONDS.MICROS `).
fn untimed(line: &str) -> String {
    let rest = line.strip_prefix('+').unwrap_or_else(|| panic!("{line:?}"));
    let (time, rest) = rest.split_once(' ').unwrap_or_else(|| panic!("{line:?}"));
    let (secs, micros) = time.split_once('.').unwrap_or_else(|| panic!("{line:?}"));
    assert!(secs.parse::<u64>().unwrap() > 1_600_000_000, "{line:?}");
    assert!(
        micros.len() == 6 && micros.parse::<u32>().is_ok(),
        "{line:?}"
    );
    rest.trim_end_matches("\r\n").to_string()
}

fn addr_of(con: &mut redis::Connection) -> String {
    let info: String = query(con, &["CLIENT", "INFO"]);
    parse_list(&info)[0]["addr"].clone()
}

#[test]
fn monitor_sees_every_clients_requests_in_order_in_redis_format() {
    let (_cluster, proxy) = start();
    let mut writers: Vec<redis::Connection> = (0..4).map(|_| proxy.client()).collect();
    let addrs: Vec<String> = writers.iter_mut().map(addr_of).collect();
    let mut monitor = RawClient::connect(proxy.port());
    assert_eq!(monitor.roundtrip(b"MONITOR\r\n"), "+OK\r\n");

    // A key with spaces and a quote, a value with a NUL, a high byte and a newline.
    let mut set = redis::cmd("SET");
    set.arg("key with \"spaces\"")
        .arg(b"v\x00\xff\n".as_slice());
    let _: () = set.query(&mut writers[0]).unwrap();
    let lines = monitor_lines(&mut monitor, 1);
    assert_eq!(
        untimed(&lines[0]),
        format!(
            "[0 {}] \"SET\" \"key with \\\"spaces\\\"\" \"v\\x00\\xff\\n\"",
            addrs[0]
        )
    );

    // Every writer's requests, interleaved over the workers, each writer's in order.
    for round in 0..5 {
        for (i, con) in writers.iter_mut().enumerate() {
            let _: () = query(con, &["SET", &format!("w{i}"), &round.to_string()]);
            let _: String = query(con, &["GET", &format!("w{i}")]);
        }
    }
    // Administrative and refused commands are not shown; passwords are redacted.
    let _: String = query(&mut writers[1], &["CLIENT", "LIST"]);
    assert!(try_query(&mut writers[1], &["NOSUCHCOMMAND"]).is_err());
    let _: () = query(&mut writers[1], &["AUTH", "default", "secret"]);
    let lines = monitor_lines(&mut monitor, 4 * 5 * 2 + 1);
    let mut seen: Vec<Vec<String>> = vec![Vec::new(); 4];
    for line in &lines[..40] {
        let line = untimed(line);
        let i = addrs
            .iter()
            .position(|a| line.starts_with(&format!("[0 {a}] ")))
            .unwrap_or_else(|| panic!("{line}"));
        seen[i].push(line[addrs[i].len() + 5..].to_string());
    }
    for (i, got) in seen.iter().enumerate() {
        let want: Vec<String> = (0..5)
            .flat_map(|round| {
                [
                    format!("\"SET\" \"w{i}\" \"{round}\""),
                    format!("\"GET\" \"w{i}\""),
                ]
            })
            .collect();
        assert_eq!(*got, want, "writer {i}");
    }
    assert_eq!(
        untimed(&lines[40]),
        format!("[0 {}] \"AUTH\" \"(redacted)\" \"(redacted)\"", addrs[1])
    );

    // The monitor itself may ping (and sees its own PING), but not touch keys.
    monitor.write(b"PING\r\n");
    let replies = monitor.read_replies(2, Duration::from_secs(10));
    assert_eq!(replies[0], "+PONG\r\n", "{replies:?}");
    assert!(untimed(&replies[1]).ends_with("] \"PING\""), "{replies:?}");
    assert_eq!(
        monitor.roundtrip(b"GET w0\r\n"),
        "-ERR Replica can't interact with the keyspace\r\n"
    );
    let text: String = query(&mut writers[0], &["CLIENT", "LIST"]);
    assert!(
        parse_list(&text).iter().any(|l| l["flags"] == "O"),
        "{text}"
    );
    // QUIT ends it; nobody monitors any more.
    assert_eq!(monitor.roundtrip(b"QUIT\r\n"), "+OK\r\n");
    wait_until("the monitor leaves the list", || {
        let text: String = query(&mut writers[0], &["CLIENT", "LIST"]);
        !parse_list(&text).iter().any(|l| l["flags"] == "O")
    });

    // redis-cli's MONITOR prints the same lines.
    let mut cli = std::process::Command::new("redis-cli")
        .args(["-p", &proxy.port().to_string(), "MONITOR"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("redis-cli");
    let stdout = cli.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let next_line = || {
        rx.recv_timeout(Duration::from_secs(10))
            .expect("a line from redis-cli MONITOR")
    };
    assert_eq!(next_line(), "OK");
    let _: () = query(&mut writers[2], &["SET", "cli key", "x"]);
    let line = next_line();
    let _ = cli.kill();
    let _ = cli.wait();
    assert!(
        line.ends_with(&format!("[0 {}] \"SET\" \"cli key\" \"x\"", addrs[2])),
        "{line}"
    );
}

#[test]
fn a_monitor_that_does_not_read_is_closed_at_the_output_limit() {
    require_redis();
    let cluster = Cluster::start(3, 0);
    let proxy = Proxy::start(
        &cluster.seeds(),
        &[
            "--workers",
            "2",
            "--config",
            &support::write_config("[limits]\nmax_output_buffer = 1048576\n"),
        ],
    );
    let mut monitor = RawClient::connect(proxy.port());
    assert_eq!(monitor.roundtrip(b"MONITOR\r\n"), "+OK\r\n");
    // 64 MiB of SETs: their lines are more than the sockets hold, and the monitor reads
    // nothing.
    let value = "x".repeat(64 * 1024);
    let mut con = proxy.client();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut sent = 0;
    while info_counter(&proxy, "clients_over_output_limit") == 0 {
        assert!(
            Instant::now() < deadline && sent < 1024,
            "the monitor was not closed after {sent} SETs:\n{}",
            proxy.log()
        );
        let mut pipe = redis::pipe();
        for i in 0..64 {
            pipe.cmd("SET").arg(format!("m{i}")).arg(&value).ignore();
        }
        let _: () = pipe.query(&mut con).unwrap();
        sent += 64;
    }
    assert!(proxy.log().contains("limits.max_output_buffer"));
    // Nobody monitors any more, and the others are served.
    let text: String = query(&mut con, &["CLIENT", "LIST"]);
    assert!(!text.contains("flags=O"), "{text}");
    let v: String = query(&mut con, &["GET", "m0"]);
    assert_eq!(v.len(), value.len());
}

#[test]
fn ping_echo_time_lolwut_and_client_reply() {
    let (_cluster, proxy) = start();
    let mut con = proxy.client();
    let err = try_query(&mut con, &["PING", "a", "b"]).unwrap_err();
    assert!(
        err.to_string()
            .contains("wrong number of arguments for 'ping' command"),
        "{err}"
    );
    assert_eq!(query::<String>(&mut con, &["PING", "hi"]), "hi");
    assert_eq!(query::<String>(&mut con, &["ECHO", "hello"]), "hello");
    let time: Vec<String> = query(&mut con, &["TIME"]);
    assert_eq!(time.len(), 2);
    assert!(time[0].parse::<u64>().unwrap() > 1_600_000_000, "{time:?}");
    let lolwut: String = query(&mut con, &["LOLWUT"]);
    assert!(lolwut.contains("Redis ver."), "{lolwut}");

    // CLIENT REPLY OFF: nothing until ON, whose OK comes back.
    let mut raw = RawClient::connect(proxy.port());
    let reply = raw.roundtrip(
        b"CLIENT REPLY OFF\r\nSET r:a 1\r\nGET r:a\r\nPING\r\nNOSUCH\r\nCLIENT REPLY ON\r\nGET r:a\r\n",
    );
    assert_eq!(reply, "+OK\r\n$1\r\n1\r\n");
    // The SET ran while its reply was suppressed.
    assert_eq!(query::<String>(&mut con, &["GET", "r:a"]), "1");
    // CLIENT REPLY SKIP: its own reply and the next one's are not written.
    let reply = raw.roundtrip(b"CLIENT REPLY SKIP\r\nSET r:b 2\r\nGET r:b\r\n");
    assert_eq!(reply, "$1\r\n2\r\n");
    // Sent one at a time, as a client waiting for nothing would.
    raw.write(b"CLIENT REPLY OFF\r\n");
    raw.write(b"SET r:c 3\r\n");
    assert_eq!(raw.read_quiet(), "");
    assert_eq!(raw.roundtrip(b"CLIENT REPLY ON\r\n"), "+OK\r\n");
    assert_eq!(raw.roundtrip(b"GET r:c\r\n"), "$1\r\n3\r\n");
    assert_eq!(
        raw.roundtrip(b"CLIENT REPLY MAYBE\r\n"),
        "-ERR syntax error\r\n"
    );

    // NO-EVICT is kept (flag `e`); NO-TOUCH on cannot be honoured behind shared
    // connections and says so.
    let _: () = query(&mut con, &["CLIENT", "NO-EVICT", "on"]);
    let info: String = query(&mut con, &["CLIENT", "INFO"]);
    assert_eq!(parse_list(&info)[0]["flags"], "e", "{info}");
    let _: () = query(&mut con, &["CLIENT", "NO-EVICT", "off"]);
    let info: String = query(&mut con, &["CLIENT", "INFO"]);
    assert_eq!(parse_list(&info)[0]["flags"], "N", "{info}");
    let _: () = query(&mut con, &["CLIENT", "NO-TOUCH", "off"]);
    let err = try_query(&mut con, &["CLIENT", "NO-TOUCH", "on"]).unwrap_err();
    assert!(err.to_string().contains("NO-TOUCH"), "{err}");
    let err = try_query(&mut con, &["CLIENT", "NO-EVICT", "maybe"]).unwrap_err();
    assert!(err.to_string().contains("syntax error"), "{err}");
}

#[test]
fn client_list_shows_a_subscribers_subscriptions() {
    require_redis();
    let cluster = Cluster::start(3, 0);
    let proxy = Proxy::start(&cluster.seeds(), &[]);
    let mut sub = RawClient::connect(proxy.port());
    sub.write(
        b"*3\r\n$9\r\nSUBSCRIBE\r\n$2\r\nc1\r\n$2\r\nc2\r\n*2\r\n$10\r\nPSUBSCRIBE\r\n$2\r\np*\r\n",
    );
    let confirmations = sub.read_replies(3, Duration::from_secs(10));
    assert_eq!(confirmations.len(), 3, "{confirmations:?}");
    let mut con = proxy.client();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let list: String = query(&mut con, &["CLIENT", "LIST", "TYPE", "pubsub"]);
        let clients = parse_list(&list);
        if let Some(c) = clients.first() {
            assert_eq!(clients.len(), 1, "{list}");
            assert_eq!(
                (c["sub"].as_str(), c["psub"].as_str()),
                ("2", "1"),
                "{list}"
            );
            assert!(c["flags"].contains('P'), "{list}");
            break;
        }
        assert!(Instant::now() < deadline, "no pubsub client listed: {list}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

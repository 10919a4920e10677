//! Pub/sub through slotgate: plain, pattern and shard channels deliver every message to
//! every subscriber in RESP2 and RESP3; RESP2 subscriber mode answers as Redis does;
//! subscribers of one channel on one worker share one node subscription, which goes
//! with the last of them; subscriptions follow a manual failover and a shard channel's
//! slot migration without the client doing anything.

mod support;

use std::time::{Duration, Instant};

use support::{info_counter, key_slot, require_redis, Cluster, Proxy, RawClient};

/// Polls `cond` every 20 ms until it holds, for at most 20 s.
fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A command as RESP.
fn resp(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n{a}\r\n", a.len()).as_bytes());
    }
    out
}

/// A bulk string as RESP.
fn bulk(s: &str) -> String {
    format!("${}\r\n{s}\r\n", s.len())
}

/// A pub/sub frame (`*` in RESP2, `>` in RESP3) of bulk strings and a final integer.
fn frame(head: char, strings: &[&str], count: Option<i64>) -> String {
    let len = strings.len() + usize::from(count.is_some());
    let mut out = format!("{head}{len}\r\n");
    for s in strings {
        out.push_str(&bulk(s));
    }
    if let Some(n) = count {
        out.push_str(&format!(":{n}\r\n"));
    }
    out
}

/// `PUBSUB NUMSUB channel` summed over every running node.
fn numsub_on_nodes(cluster: &Cluster, channel: &str) -> u64 {
    cluster
        .live_ports()
        .into_iter()
        .map(|port| {
            let out = cluster.cli(port, &["PUBSUB", "NUMSUB", channel]);
            out.lines()
                .nth(1)
                .and_then(|n| n.trim().parse::<u64>().ok())
                .unwrap_or(0)
        })
        .sum()
}

/// `PUBSUB SHARDNUMSUB channel` on one node.
fn shardnumsub_on(cluster: &Cluster, port: u16, channel: &str) -> u64 {
    let out = cluster.cli(port, &["PUBSUB", "SHARDNUMSUB", channel]);
    out.lines()
        .nth(1)
        .and_then(|n| n.trim().parse::<u64>().ok())
        .unwrap_or(0)
}

/// Two shard channel names on different masters.
fn shard_channels_on_two_masters(cluster: &Cluster) -> (String, String) {
    let a = "{sa}news".to_string();
    let owner = cluster.node_for_key(&a);
    let b = (0..)
        .map(|i| format!("{{sb{i}}}news"))
        .find(|c| cluster.node_for_key(c) != owner)
        .unwrap();
    (a, b)
}

#[test]
fn every_subscriber_gets_every_message_in_resp2_and_resp3() {
    require_redis();
    let cluster = Cluster::start(3, 0);
    let proxy = Proxy::start(&cluster.seeds(), &["--workers", "2"]);
    let port = proxy.port();
    let (shard_a, shard_b) = shard_channels_on_two_masters(&cluster);

    // RESP2 through the redis crate: one channel and one pattern. `subscribe` returns
    // once the confirmation is in, and that comes once the node has subscribed.
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/")).unwrap();
    let mut con2 = client.get_connection().unwrap();
    let mut sub2 = con2.as_pubsub();
    sub2.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    sub2.subscribe("news").unwrap();
    sub2.psubscribe("ne*").unwrap();

    // RESP3 through the redis crate.
    let client3 = redis::Client::open(format!("redis://127.0.0.1:{port}/?protocol=resp3")).unwrap();
    let mut con3 = client3.get_connection().unwrap();
    let mut sub3 = con3.as_pubsub();
    sub3.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    sub3.subscribe("news").unwrap();

    // Raw RESP2: shard channels on two masters, one SSUBSCRIBE each (Redis wants one
    // slot per call), and the exact confirmations.
    let mut raw2 = RawClient::connect(port);
    raw2.write(&resp(&["SSUBSCRIBE", &shard_a]));
    raw2.write(&resp(&["SSUBSCRIBE", &shard_b]));
    assert_eq!(
        raw2.read_replies(2, Duration::from_secs(10)),
        vec![
            frame('*', &["ssubscribe", &shard_a], Some(1)),
            frame('*', &["ssubscribe", &shard_b], Some(2)),
        ]
    );

    // Raw RESP3: a channel, then an ordinary command among the pushes.
    let mut raw3 = RawClient::connect(port);
    raw3.write(&resp(&["HELLO", "3"]));
    assert_eq!(raw3.read_replies(1, Duration::from_secs(5)).len(), 1);
    raw3.write(&resp(&["SUBSCRIBE", "news", &shard_a]));
    assert_eq!(
        raw3.read_replies(2, Duration::from_secs(10)),
        vec![
            frame('>', &["subscribe", "news"], Some(1)),
            frame('>', &["subscribe", &shard_a], Some(2)),
        ]
    );
    raw3.write(&resp(&["SET", "k3", "v"]));
    assert_eq!(
        raw3.read_replies(1, Duration::from_secs(5)),
        vec!["+OK\r\n"]
    );

    // The RESP3 crate client does not wait for its confirmation: publish until it has
    // one message, then every one counts.
    let mut publisher = proxy.client();
    let mut probes = 0;
    wait_until("the RESP3 subscriber gets a probe", || {
        let _: i64 = redis::cmd("PUBLISH")
            .arg("news")
            .arg("probe")
            .query(&mut publisher)
            .unwrap();
        probes += 1;
        sub3.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        sub3.get_message().is_ok()
    });
    sub3.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();

    const N: usize = 50;
    for i in 0..N {
        let _: i64 = redis::cmd("PUBLISH")
            .arg("news")
            .arg(format!("m{i}"))
            .query(&mut publisher)
            .unwrap();
        let _: i64 = redis::cmd("SPUBLISH")
            .arg(&shard_a)
            .arg(format!("a{i}"))
            .query(&mut publisher)
            .unwrap();
        let _: i64 = redis::cmd("SPUBLISH")
            .arg(&shard_b)
            .arg(format!("b{i}"))
            .query(&mut publisher)
            .unwrap();
    }

    // RESP2 crate: each message twice, as `message` and as `pmessage` (as Redis sends).
    let mut plain = Vec::new();
    let mut pattern = Vec::new();
    while plain.len() < N + probes || pattern.len() < N + probes {
        let msg = sub2
            .get_message()
            .expect("a message for the RESP2 subscriber");
        let payload: String = msg.get_payload().unwrap();
        assert_eq!(msg.get_channel_name(), "news");
        match msg.get_pattern::<Option<String>>().unwrap() {
            Some(p) => {
                assert_eq!(p, "ne*");
                pattern.push(payload);
            }
            None => plain.push(payload),
        }
    }
    let expected: Vec<String> = (0..probes)
        .map(|_| "probe".to_string())
        .chain((0..N).map(|i| format!("m{i}")))
        .collect();
    assert_eq!(plain, expected);
    assert_eq!(pattern, expected);

    // RESP3 crate: every message after its first probe, in order.
    let got3: Vec<String> = (0..probes - 1 + N)
        .map(|_| sub3.get_message().unwrap().get_payload().unwrap())
        .filter(|p: &String| p != "probe")
        .collect();
    assert_eq!(got3, (0..N).map(|i| format!("m{i}")).collect::<Vec<_>>());

    // Raw RESP2: shard messages exactly as Redis writes them, in order per channel (the
    // two channels live on two masters: their messages may interleave either way).
    let got = raw2.read_replies(2 * N, Duration::from_secs(10));
    let of = |channel: &str| -> Vec<String> {
        got.iter()
            .filter(|f| f.contains(&format!("\r\n{channel}\r\n")))
            .cloned()
            .collect()
    };
    assert_eq!(got.len(), 2 * N, "{got:?}");
    let want = |channel: &str, prefix: &str| -> Vec<String> {
        (0..N)
            .map(|i| frame('*', &["smessage", channel, &format!("{prefix}{i}")], None))
            .collect()
    };
    assert_eq!(of(&shard_a), want(&shard_a, "a"));
    assert_eq!(of(&shard_b), want(&shard_b, "b"));

    // Raw RESP3: pushes; the plain channel's after the probes.
    let got = raw3.read_replies(probes + N, Duration::from_secs(10));
    let want: Vec<String> = (0..probes)
        .map(|_| frame('>', &["message", "news", "probe"], None))
        .chain((0..N).map(|i| frame('>', &["message", "news", &format!("m{i}")], None)))
        .collect();
    assert_eq!(got, want);
    drop(sub2);
    drop(sub3);
}

#[test]
fn resp2_subscriber_mode_answers_as_redis_does() {
    require_redis();
    let cluster = Cluster::start(3, 0);
    let proxy = Proxy::start(&cluster.seeds(), &[]);
    let mut c = RawClient::connect(proxy.port());

    // Nothing to leave: a nil channel and a count of 0.
    c.write(&resp(&["UNSUBSCRIBE"]));
    c.write(&resp(&["PUNSUBSCRIBE"]));
    c.write(&resp(&["SUNSUBSCRIBE"]));
    assert_eq!(
        c.read_replies(3, Duration::from_secs(5)),
        vec![
            "*3\r\n$11\r\nunsubscribe\r\n$-1\r\n:0\r\n",
            "*3\r\n$12\r\npunsubscribe\r\n$-1\r\n:0\r\n",
            "*3\r\n$12\r\nsunsubscribe\r\n$-1\r\n:0\r\n",
        ]
    );
    // One slot per SSUBSCRIBE, as Redis.
    c.write(&resp(&["SSUBSCRIBE", "a", "b"]));
    assert_eq!(
        c.read_replies(1, Duration::from_secs(5)),
        vec!["-CROSSSLOT Keys in request don't hash to the same slot\r\n"]
    );

    c.write(&resp(&["SUBSCRIBE", "a", "b"]));
    c.write(&resp(&["PSUBSCRIBE", "p*"]));
    c.write(&resp(&["SSUBSCRIBE", "s"]));
    c.write(&resp(&["PING"]));
    c.write(&resp(&["PING", "x"]));
    c.write(&resp(&["GET", "k"]));
    c.write(&resp(&["CLIENT", "ID"]));
    c.write(&resp(&["HELLO", "3"]));
    c.write(&resp(&["NOSUCH"]));
    c.write(&resp(&["GET"]));
    let only =
        "only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context";
    assert_eq!(
        c.read_replies(11, Duration::from_secs(10)),
        vec![
            frame('*', &["subscribe", "a"], Some(1)),
            frame('*', &["subscribe", "b"], Some(2)),
            frame('*', &["psubscribe", "p*"], Some(3)),
            // Shard channels count apart.
            frame('*', &["ssubscribe", "s"], Some(1)),
            frame('*', &["pong", ""], None),
            frame('*', &["pong", "x"], None),
            format!("-ERR Can't execute 'get': {only}\r\n"),
            format!("-ERR Can't execute 'client|id': {only}\r\n"),
            format!("-ERR Can't execute 'hello': {only}\r\n"),
            // Redis's own checks come first.
            "-ERR unknown command 'NOSUCH', with args beginning with: \r\n".to_string(),
            "-ERR wrong number of arguments for 'get' command\r\n".to_string(),
        ]
    );
    // Leaving: the counts go down, then subscriber mode ends.
    c.write(&resp(&["UNSUBSCRIBE"]));
    c.write(&resp(&["SUNSUBSCRIBE"]));
    c.write(&resp(&["PUNSUBSCRIBE", "p*"]));
    c.write(&resp(&["PING"]));
    let replies = c.read_replies(5, Duration::from_secs(10));
    // UNSUBSCRIBE with no argument leaves both channels, in no set order.
    let (first, second) = if replies[0].contains("\r\na\r\n") {
        ("a", "b")
    } else {
        ("b", "a")
    };
    assert_eq!(
        replies,
        vec![
            frame('*', &["unsubscribe", first], Some(2)),
            frame('*', &["unsubscribe", second], Some(1)),
            frame('*', &["sunsubscribe", "s"], Some(0)),
            frame('*', &["punsubscribe", "p*"], Some(0)),
            "+PONG\r\n".to_string(),
        ]
    );

    // RESET leaves every subscription and subscriber mode.
    c.write(&resp(&["SUBSCRIBE", "a"]));
    c.write(&resp(&["RESET"]));
    c.write(&resp(&["GET", "k"]));
    assert_eq!(
        c.read_replies(3, Duration::from_secs(10)),
        vec![
            frame('*', &["subscribe", "a"], Some(1)),
            "+RESET\r\n".to_string(),
            "$-1\r\n".to_string(),
        ]
    );
    wait_until("RESET left the node subscription", || {
        numsub_on_nodes(&cluster, "a") == 0
    });
}

#[test]
fn subscribers_on_one_worker_share_one_node_subscription_that_leaves_with_the_last() {
    require_redis();
    let cluster = Cluster::start(3, 0);
    let proxy = Proxy::start(&cluster.seeds(), &["--workers", "1"]);
    let shard = "{one}shard";
    let owner = cluster.node_for_key(shard);

    let mut subscribers: Vec<RawClient> =
        (0..2).map(|_| RawClient::connect(proxy.port())).collect();
    for (i, c) in subscribers.iter_mut().enumerate() {
        c.write(&resp(&["SUBSCRIBE", "shared"]));
        c.write(&resp(&["SSUBSCRIBE", shard]));
        assert_eq!(
            c.read_replies(2, Duration::from_secs(10)),
            vec![
                frame('*', &["subscribe", "shared"], Some(1)),
                frame('*', &["ssubscribe", shard], Some(1)),
            ],
            "subscriber {i}"
        );
    }
    // One subscription at one node for the channel, one at the owner for the shard
    // channel, through one connection per node.
    assert_eq!(numsub_on_nodes(&cluster, "shared"), 1);
    assert_eq!(shardnumsub_on(&cluster, owner, shard), 1);
    let conns = info_counter(&proxy, "subscriber_connections");
    assert!((1..=2).contains(&conns), "{conns} subscriber connections");

    // Both get each message.
    let mut publisher = proxy.client();
    let _: i64 = redis::cmd("PUBLISH")
        .arg("shared")
        .arg("hi")
        .query(&mut publisher)
        .unwrap();
    let _: i64 = redis::cmd("SPUBLISH")
        .arg(shard)
        .arg("there")
        .query(&mut publisher)
        .unwrap();
    // The two arrive through two node connections: in either order.
    for c in &mut subscribers {
        let mut got = c.read_replies(2, Duration::from_secs(10));
        got.sort();
        let mut want = vec![
            frame('*', &["message", "shared", "hi"], None),
            frame('*', &["smessage", shard, "there"], None),
        ];
        want.sort();
        assert_eq!(got, want);
    }

    // One leaves: the node subscription stays for the other.
    let mut second = subscribers.pop().unwrap();
    drop(subscribers);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(numsub_on_nodes(&cluster, "shared"), 1);
    let _: i64 = redis::cmd("PUBLISH")
        .arg("shared")
        .arg("still")
        .query(&mut publisher)
        .unwrap();
    assert_eq!(
        second.read_replies(1, Duration::from_secs(10)),
        vec![frame('*', &["message", "shared", "still"], None)]
    );
    // The last one goes: nothing is left behind at the nodes, connections included.
    drop(second);
    wait_until("the node subscriptions are gone", || {
        numsub_on_nodes(&cluster, "shared") == 0 && shardnumsub_on(&cluster, owner, shard) == 0
    });
    wait_until("the subscriber connections are closed", || {
        info_counter(&proxy, "subscriber_connections") == 0
    });
}

/// Publish `probe` messages on `channel` (with PUBLISH or SPUBLISH) until every one of
/// `subs` has one, then drain the probes still on their way: every message published
/// after this returns is delivered.
fn probe_until_delivered(
    publisher: &mut redis::Connection,
    command: &str,
    channel: &str,
    subs: &mut [&mut RawClient],
) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut got = vec![false; subs.len()];
    while got.contains(&false) {
        assert!(
            Instant::now() < deadline,
            "no probe on {channel} was delivered"
        );
        let _: i64 = redis::cmd(command)
            .arg(channel)
            .arg("probe")
            .query(publisher)
            .unwrap();
        for (i, sub) in subs.iter_mut().enumerate() {
            if !got[i] {
                got[i] = !sub.read_replies(1, Duration::from_millis(100)).is_empty();
            }
        }
    }
    for sub in subs {
        let rest = sub.read_replies(10_000, Duration::from_millis(500));
        assert!(rest.iter().all(|r| r.contains("probe")), "{rest:?}");
    }
}

/// Split pub/sub frames by channel (the second element), keeping each one's order:
/// messages of different channels come from different nodes, in no common order.
fn by_channel(frames: Vec<String>) -> std::collections::BTreeMap<String, Vec<String>> {
    let mut out: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for f in frames {
        let channel = f.split("\r\n").nth(4).unwrap_or_default().to_string();
        out.entry(channel).or_default().push(f);
    }
    out
}

#[test]
fn subscriptions_follow_a_manual_failover() {
    require_redis();
    let cluster = Cluster::start(3, 1);
    let proxy = Proxy::start(&cluster.seeds(), &["--workers", "1"]);
    let shard = "{fo}shard";
    let victim = cluster.node_for_key(shard);
    let replica = cluster.replica_of(victim).expect("a replica");

    let mut sub = RawClient::connect(proxy.port());
    sub.write(&resp(&["SUBSCRIBE", "plain"]));
    sub.write(&resp(&["SSUBSCRIBE", shard]));
    assert_eq!(sub.read_replies(2, Duration::from_secs(10)).len(), 2);
    let mut publisher = proxy.client();
    let _: i64 = redis::cmd("SPUBLISH")
        .arg(shard)
        .arg("before")
        .query(&mut publisher)
        .unwrap();
    assert_eq!(
        sub.read_replies(1, Duration::from_secs(10)),
        vec![frame('*', &["smessage", shard, "before"], None)]
    );
    let resubscribed = info_counter(&proxy, "pubsub_resubscribes");

    assert_eq!(cluster.cli(replica, &["CLUSTER", "FAILOVER"]), "OK");
    wait_until("the replica is promoted", || {
        cluster.cli(replica, &["ROLE"]).starts_with("master")
    });
    cluster.wait_for_ok(Duration::from_secs(30));

    // Slotgate subscribes again at the new master by itself; once a message gets
    // through, every later one does.
    probe_until_delivered(&mut publisher, "SPUBLISH", shard, &mut [&mut sub]);
    probe_until_delivered(&mut publisher, "PUBLISH", "plain", &mut [&mut sub]);
    for i in 0..20 {
        let _: i64 = redis::cmd("SPUBLISH")
            .arg(shard)
            .arg(format!("s{i}"))
            .query(&mut publisher)
            .unwrap();
        let _: i64 = redis::cmd("PUBLISH")
            .arg("plain")
            .arg(format!("p{i}"))
            .query(&mut publisher)
            .unwrap();
    }
    let want: Vec<String> = (0..20)
        .flat_map(|i| {
            [
                frame('*', &["smessage", shard, &format!("s{i}")], None),
                frame('*', &["message", "plain", &format!("p{i}")], None),
            ]
        })
        .collect();
    assert_eq!(
        by_channel(sub.read_replies(40, Duration::from_secs(10))),
        by_channel(want)
    );
    assert_eq!(
        shardnumsub_on(&cluster, replica, shard),
        1,
        "at the new master"
    );
    assert!(info_counter(&proxy, "pubsub_resubscribes") > resubscribed);
    assert!(proxy.log().contains("subscribing again"), "{}", proxy.log());
}

#[test]
fn a_shard_channel_follows_its_slot_to_another_master() {
    require_redis();
    let cluster = Cluster::start(3, 0);
    let proxy = Proxy::start(&cluster.seeds(), &["--workers", "2"]);
    let shard = "{mig}shard";
    let slot = key_slot(shard.as_bytes());
    let from = cluster.node_for_key(shard);
    let to = *cluster.master_ports().iter().find(|&&p| p != from).unwrap();

    // Two subscribers, on whichever workers they land.
    let mut subs: Vec<RawClient> = (0..2).map(|_| RawClient::connect(proxy.port())).collect();
    for c in &mut subs {
        c.write(&resp(&["SSUBSCRIBE", shard]));
        assert_eq!(
            c.read_replies(1, Duration::from_secs(10)),
            vec![frame('*', &["ssubscribe", shard], Some(1))]
        );
    }
    let resubscribed = info_counter(&proxy, "pubsub_resubscribes");

    cluster.migrate_slots(slot..=slot, from, to);
    cluster.wait_for_ok(Duration::from_secs(30));
    let mut publisher = proxy.client();
    let (first, second) = subs.split_at_mut(1);
    probe_until_delivered(
        &mut publisher,
        "SPUBLISH",
        shard,
        &mut [&mut first[0], &mut second[0]],
    );
    for i in 0..20 {
        let _: i64 = redis::cmd("SPUBLISH")
            .arg(shard)
            .arg(format!("m{i}"))
            .query(&mut publisher)
            .unwrap();
    }
    let want: Vec<String> = (0..20)
        .map(|i| frame('*', &["smessage", shard, &format!("m{i}")], None))
        .collect();
    for c in &mut subs {
        assert_eq!(c.read_replies(20, Duration::from_secs(10)), want);
    }
    assert!(
        shardnumsub_on(&cluster, to, shard) >= 1,
        "subscribed at the new owner"
    );
    assert_eq!(
        shardnumsub_on(&cluster, from, shard),
        0,
        "and not at the old one"
    );
    assert!(info_counter(&proxy, "pubsub_resubscribes") > resubscribed);
}

/// Connections in subscriber mode (`flags=P` in `CLIENT LIST`) over every node.
fn subscribed_connections_at_nodes(cluster: &Cluster) -> u64 {
    cluster
        .live_ports()
        .into_iter()
        .map(|port| {
            let list = cluster.cli(port, &["CLIENT", "LIST"]);
            list.lines().filter(|l| l.contains(" flags=P ")).count() as u64
        })
        .sum()
}

/// 1,000 idle subscribers cost the nodes one connection per worker and node the hub
/// needs, however the channels are spread: all on one channel, one channel each, one
/// shard channel each (over every master).
#[test]
fn a_thousand_idle_subscribers_cost_a_connection_per_worker_and_node() {
    require_redis();
    const CLIENTS: usize = 1000;
    const WORKERS: u64 = 2;
    let cluster = Cluster::start(3, 0);
    let proxy = Proxy::start(&cluster.seeds(), &["--workers", "2"]);
    let masters = cluster.master_ports().len() as u64;

    let mut report = Vec::new();
    for (case, command) in [
        ("one channel", "SUBSCRIBE"),
        ("1,000 channels", "SUBSCRIBE"),
        ("1,000 shard channels", "SSUBSCRIBE"),
    ] {
        let rss_before = proxy.rss();
        let mut clients: Vec<RawClient> = (0..CLIENTS)
            .map(|i| {
                let mut c = RawClient::connect(proxy.port());
                let channel = match case {
                    "one channel" => "idle".to_string(),
                    _ => format!("idle:{i}"),
                };
                c.write(&resp(&[command, &channel]));
                c
            })
            .collect();
        for (i, c) in clients.iter_mut().enumerate() {
            let reply = c.read_replies(1, Duration::from_secs(20));
            assert_eq!(reply.len(), 1, "{case}: client {i} got no confirmation");
        }
        let hub = info_counter(&proxy, "subscriber_connections");
        let at_nodes = subscribed_connections_at_nodes(&cluster);
        let limit = if command == "SSUBSCRIBE" {
            WORKERS * masters
        } else {
            WORKERS
        };
        assert!(hub <= limit, "{case}: {hub} subscriber connections");
        assert_eq!(
            at_nodes, hub,
            "{case}: the nodes see the hub's connections subscribed, no more"
        );
        report.push(format!(
            "{case}: {CLIENTS} subscribers, {hub} node connections, proxy RSS +{} KiB (clients included)",
            proxy.rss().saturating_sub(rss_before) / 1024
        ));
        drop(clients);
        wait_until("the subscriber connections are closed", || {
            info_counter(&proxy, "subscriber_connections") == 0
        });
    }
    for line in report {
        println!("{line}");
    }
}

#[test]
fn plain_subscriptions_move_when_their_node_dies() {
    require_redis();
    let mut cluster = Cluster::start(3, 1);
    let proxy = Proxy::start(&cluster.seeds(), &["--workers", "1"]);
    let mut sub = RawClient::connect(proxy.port());
    sub.write(&resp(&["SUBSCRIBE", "plain"]));
    sub.write(&resp(&["PSUBSCRIBE", "pl*"]));
    assert_eq!(sub.read_replies(2, Duration::from_secs(10)).len(), 2);
    // The node holding them (one worker: one node).
    let holder = cluster
        .live_ports()
        .into_iter()
        .find(|&p| {
            let out = cluster.cli(p, &["PUBSUB", "NUMSUB", "plain"]);
            out.lines().nth(1).map(str::trim) == Some("1")
        })
        .expect("a node holds the subscription");
    let resubscribed = info_counter(&proxy, "pubsub_resubscribes");

    cluster.kill(holder);
    let mut publisher = proxy.client();
    // Another node takes them at once (no failover needed for plain channels).
    probe_until_delivered(&mut publisher, "PUBLISH", "plain", &mut [&mut sub]);
    for i in 0..20 {
        let _: i64 = redis::cmd("PUBLISH")
            .arg("plain")
            .arg(format!("m{i}"))
            .query(&mut publisher)
            .unwrap();
    }
    let want: Vec<String> = (0..20)
        .flat_map(|i| {
            let m = format!("m{i}");
            [
                frame('*', &["message", "plain", &m], None),
                frame('*', &["pmessage", "pl*", "plain", &m], None),
            ]
        })
        .collect();
    assert_eq!(sub.read_replies(40, Duration::from_secs(10)), want);
    assert_eq!(
        info_counter(&proxy, "pubsub_resubscribes"),
        resubscribed + 2
    );
    assert!(
        proxy.log().contains("connection to a node lost"),
        "{}",
        proxy.log()
    );
    assert_eq!(numsub_on_nodes(&cluster, "plain"), 1);
}

#[test]
fn a_subscriber_that_does_not_read_is_closed_at_its_output_limit() {
    require_redis();
    let cluster = Cluster::start(3, 0);
    let proxy =
        Proxy::start_with_config(&cluster.seeds(), "[limits]\nmax_output_buffer = 2097152\n");
    const N: usize = 200;
    let payload = "x".repeat(256 * 1024);

    // One subscriber reads everything, one reads nothing.
    let mut slow = RawClient::connect(proxy.port());
    slow.write(&resp(&["SUBSCRIBE", "firehose"]));
    assert_eq!(slow.read_replies(1, Duration::from_secs(10)).len(), 1);
    let port = proxy.port();
    let (subscribed_tx, subscribed) = std::sync::mpsc::channel();
    // The reader acknowledges each message, and the next is published after that: it
    // never lags (on a loaded machine a reader descheduled for a moment would otherwise
    // pass the limit too).
    let (got_tx, got_rx) = std::sync::mpsc::channel();
    let fast = std::thread::spawn(move || {
        let client = redis::Client::open(format!("redis://127.0.0.1:{port}/")).unwrap();
        let mut con = client.get_connection().unwrap();
        let mut sub = con.as_pubsub();
        sub.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        // Returns once the confirmation is in: from then on every message counts.
        sub.subscribe("firehose").unwrap();
        subscribed_tx.send(()).unwrap();
        let mut got = 0;
        while got < N {
            let msg = sub.get_message().expect("the reading subscriber is served");
            let payload: Vec<u8> = msg.get_payload().unwrap();
            if payload.len() == 256 * 1024 {
                got += 1;
                let _ = got_tx.send(got);
            }
        }
        got
    });
    subscribed
        .recv_timeout(Duration::from_secs(10))
        .expect("the reader subscribed");
    let mut publisher = proxy.client();
    for i in 1..=N {
        let _: i64 = redis::cmd("PUBLISH")
            .arg("firehose")
            .arg(&payload)
            .query(&mut publisher)
            .unwrap();
        assert_eq!(
            got_rx.recv_timeout(Duration::from_secs(60)),
            Ok(i),
            "the reading subscriber got message {i}"
        );
    }
    assert_eq!(fast.join().unwrap(), N);
    wait_until("the slow subscriber is closed", || {
        info_counter(&proxy, "clients_over_output_limit") == 1
    });
    assert!(proxy.log().contains("limits.max_output_buffer"));
    // What it was sent before the limit, then the end of the stream.
    let mut sink = vec![0u8; 1 << 20];
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        assert!(
            Instant::now() < deadline,
            "the slow subscriber was not closed"
        );
        match std::io::Read::read(&mut slow.stream, &mut sink) {
            Ok(0) => break,
            Ok(_) => continue,
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                continue
            }
            Err(_) => break,
        }
    }
}

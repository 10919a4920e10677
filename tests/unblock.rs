//! `CLIENT UNBLOCK <slotgate client id> [TIMEOUT|ERROR]`: a client blocked through
//! slotgate (a blocking command on its pinned connection, a pop over several slots,
//! `WAIT`) is unblocked as Redis does it, and nothing is popped for it afterwards.

mod support;

use std::thread;
use std::time::{Duration, Instant};

use support::{require_redis, Cluster, Proxy};

/// Polls `cond` every 20 ms until it holds, for at most 10 s.
fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        thread::sleep(Duration::from_millis(20));
    }
}

/// `blocked_clients` summed over the cluster's nodes.
fn blocked_in_cluster(cluster: &Cluster) -> u64 {
    cluster
        .master_ports()
        .iter()
        .map(|&port| {
            let info = cluster.cli(port, &["INFO", "clients"]);
            info.lines()
                .find_map(|l| l.strip_prefix("blocked_clients:"))
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(0)
        })
        .sum()
}

/// `CLIENT UNBLOCK id [how]` from `con`.
fn unblock(con: &mut redis::Connection, id: i64, how: Option<&str>) -> redis::RedisResult<i64> {
    let mut cmd = redis::cmd("CLIENT");
    cmd.arg("UNBLOCK").arg(id);
    if let Some(how) = how {
        cmd.arg(how);
    }
    cmd.query(con)
}

/// Runs `command` on a new client of `proxy` in a thread, once it is blocked (at a node
/// of `cluster`) unblocks it with `how`, and returns its reply.
fn unblocked(
    proxy: &Proxy,
    cluster: &Cluster,
    command: redis::Cmd,
    how: Option<&str>,
) -> redis::RedisResult<redis::Value> {
    let mut blocked = proxy.client();
    let id: i64 = redis::cmd("CLIENT").arg("ID").query(&mut blocked).unwrap();
    let before = blocked_in_cluster(cluster);
    let waiter = thread::spawn(move || command.query::<redis::Value>(&mut blocked));
    wait_until("the command blocks at its node", || {
        blocked_in_cluster(cluster) > before
    });
    let mut con = proxy.client();
    assert_eq!(unblock(&mut con, id, how).unwrap(), 1, "it was blocked");
    let reply = waiter.join().unwrap();
    assert_eq!(unblock(&mut con, id, how).unwrap(), 0, "no longer blocked");
    reply
}

fn blpop(keys: &[&str]) -> redis::Cmd {
    let mut cmd = redis::cmd("BLPOP");
    cmd.arg(keys).arg(0);
    cmd
}

fn assert_unblocked_error(reply: redis::RedisResult<redis::Value>) {
    let err = reply.expect_err("an error");
    assert_eq!(err.code(), Some("UNBLOCKED"), "{err}");
    assert!(
        err.to_string()
            .contains("client unblocked via CLIENT UNBLOCK"),
        "{err}"
    );
}

#[test]
fn a_blocked_pop_is_unblocked_with_its_null_reply_or_an_error_and_pops_nothing() {
    require_redis();
    let cluster = Cluster::start(3, 0);
    let proxy = Proxy::start(&cluster.seeds(), &[]);
    let mut con = proxy.client();

    // TIMEOUT (the default): the null reply of the command, as if its timeout ran out.
    let reply = unblocked(&proxy, &cluster, blpop(&["{ub}q"]), None).unwrap();
    assert_eq!(reply, redis::Value::Nil);
    let reply = unblocked(&proxy, &cluster, blpop(&["{ub}q"]), Some("TIMEOUT")).unwrap();
    assert_eq!(reply, redis::Value::Nil);
    // ERROR: Redis's -UNBLOCKED.
    assert_unblocked_error(unblocked(
        &proxy,
        &cluster,
        blpop(&["{ub}q"]),
        Some("error"),
    ));
    // Another blocking command: the same.
    let mut bzpop = redis::cmd("BZPOPMIN");
    bzpop.arg("{ub}z").arg(0);
    assert_eq!(
        unblocked(&proxy, &cluster, bzpop, None).unwrap(),
        redis::Value::Nil
    );

    // Nothing was popped for the clients unblocked: an element pushed now stays.
    let _: () = redis::cmd("RPUSH")
        .arg("{ub}q")
        .arg("job")
        .query(&mut con)
        .unwrap();
    let len: i64 = redis::cmd("LLEN").arg("{ub}q").query(&mut con).unwrap();
    assert_eq!(len, 1);

    // A client that is not blocked, one that does not exist, the caller itself: 0.
    let other = proxy.client();
    drop(other);
    let me: i64 = redis::cmd("CLIENT").arg("ID").query(&mut con).unwrap();
    assert_eq!(unblock(&mut con, me, None).unwrap(), 0);
    assert_eq!(unblock(&mut con, 999_999, Some("ERROR")).unwrap(), 0);
    // Redis's errors.
    let err = unblock(&mut con, 1, Some("now")).unwrap_err();
    assert!(
        err.to_string()
            .contains("CLIENT UNBLOCK reason should be TIMEOUT or ERROR"),
        "{err}"
    );
    let err = redis::cmd("CLIENT")
        .arg("UNBLOCK")
        .arg("x")
        .query::<i64>(&mut con)
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("value is not an integer or out of range"),
        "{err}"
    );
}

#[test]
fn a_pop_over_several_slots_and_wait_are_unblocked_too() {
    require_redis();
    let cluster = Cluster::start(3, 0);
    let proxy = Proxy::start(&cluster.seeds(), &[]);

    // BLPOP over lists of several slots (slotgate goes round the slots).
    let keys = ["ua", "ub", "uc"];
    assert_ne!(support::key_slot(b"ua"), support::key_slot(b"ub"));
    let reply = unblocked(&proxy, &cluster, blpop(&keys), None).unwrap();
    assert_eq!(reply, redis::Value::Nil);
    assert_unblocked_error(unblocked(&proxy, &cluster, blpop(&keys), Some("ERROR")));
    let mut con = proxy.client();
    let _: () = redis::cmd("RPUSH")
        .arg("ub")
        .arg("x")
        .query(&mut con)
        .unwrap();
    let len: i64 = redis::cmd("LLEN").arg("ub").query(&mut con).unwrap();
    assert_eq!(len, 1, "nothing popped for the unblocked clients");

    // WAIT for a replica that does not exist, after a write: blocks until unblocked;
    // TIMEOUT answers what it counted.
    let wait = || {
        let mut pipe = redis::pipe();
        pipe.cmd("SET").arg("{uw}k").arg("v").ignore();
        pipe.cmd("WAIT").arg(1).arg(0);
        pipe
    };
    let run = |pipe: redis::Pipeline, how: Option<&str>| {
        let mut blocked = proxy.client();
        let id: i64 = redis::cmd("CLIENT").arg("ID").query(&mut blocked).unwrap();
        let waiter = thread::spawn(move || pipe.query::<Vec<i64>>(&mut blocked));
        wait_until("WAIT blocks at its node", || {
            blocked_in_cluster(&cluster) == 1
        });
        let mut con = proxy.client();
        assert_eq!(unblock(&mut con, id, how).unwrap(), 1);
        waiter.join().unwrap()
    };
    assert_eq!(run(wait(), None).unwrap(), vec![0]);
    let err = run(wait(), Some("ERROR")).unwrap_err();
    assert_eq!(err.code(), Some("UNBLOCKED"), "{err}");
}

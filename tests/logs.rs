//! What an operator reads in the log at info: refused commands once a minute per
//! command with a count, a node going unreachable and coming back once per change.

mod support;

use std::time::{Duration, Instant};

use support::{key_slot, require_redis, Cluster, Proxy};

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The log lines containing `needle`.
fn lines_with(log: &str, needle: &str) -> Vec<String> {
    log.lines()
        .filter(|l| l.contains(needle))
        .map(str::to_string)
        .collect()
}

#[test]
fn a_refused_command_sent_in_a_loop_logs_one_line() {
    require_redis();
    let cluster = Cluster::start(3, 0);
    let proxy = Proxy::start(&cluster.seeds(), &[]);
    let mut con = proxy.client();
    for _ in 0..500 {
        let err = redis::cmd("CLIENT")
            .arg("GETREDIR")
            .query::<i64>(&mut con)
            .unwrap_err();
        assert!(
            err.to_string().contains("not supported"),
            "unexpected reply: {err}"
        );
    }
    // Still served after the refusals.
    let pong: String = redis::cmd("PING").query(&mut con).unwrap();
    assert_eq!(pong, "PONG");
    let log = proxy.log();
    let lines = lines_with(&log, "refused a command");
    assert_eq!(
        lines.len(),
        1,
        "one line for 500 refusals, got:\n{}",
        lines.join("\n")
    );
    assert!(
        lines[0].contains("CLIENT GETREDIR"),
        "the line names the command: {}",
        lines[0]
    );
}

#[test]
fn a_node_that_goes_away_and_comes_back_logs_one_line_each() {
    require_redis();
    let mut cluster = Cluster::start(3, 0);
    let proxy = Proxy::start(&cluster.seeds(), &[]);
    let mut con = proxy.client();
    let victim = cluster.master_ports()[2];
    // A key on the victim, so a request makes slotgate dial it.
    let owners = cluster.owners_by_slot();
    let key = (0..10_000)
        .map(|i| format!("k{i}"))
        .find(|k| owners[key_slot(k.as_bytes()) as usize] == victim)
        .expect("a key on the last master");
    let _: () = redis::cmd("SET")
        .arg(&key)
        .arg("1")
        .query(&mut con)
        .unwrap();
    cluster.kill(victim);
    let announced = format!("127.0.0.1:{victim}");
    // Requests for its keys fail (no replica) and make slotgate try the node; both
    // workers' connections fail, again and again: one line.
    wait_until("the log says the node is unreachable", || {
        let _ = redis::cmd("GET")
            .arg(&key)
            .query::<Option<String>>(&mut con);
        lines_with(&proxy.log(), "node unreachable")
            .iter()
            .any(|l| l.contains(&announced))
    });
    // One more failure after the line: still one line.
    let _ = redis::cmd("GET")
        .arg(&key)
        .query::<Option<String>>(&mut con);
    cluster.restart(victim);
    wait_until("the node serves again through slotgate", || {
        let mut c = proxy.client();
        redis::cmd("GET")
            .arg(&key)
            .query::<Option<String>>(&mut c)
            .is_ok()
    });
    let log = proxy.log();
    let down: Vec<_> = lines_with(&log, "node unreachable")
        .into_iter()
        .filter(|l| l.contains(&announced))
        .collect();
    let up: Vec<_> = lines_with(&log, "node reachable again")
        .into_iter()
        .filter(|l| l.contains(&announced))
        .collect();
    assert_eq!(down.len(), 1, "one down line:\n{}", down.join("\n"));
    assert_eq!(up.len(), 1, "one up line:\n{}", up.join("\n"));
}

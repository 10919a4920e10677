//! Transactions until slotgate supports them: a refused `MULTI` must not half-run the
//! transaction. Every command up to `EXEC`/`DISCARD` is refused too (nothing of it runs)
//! and `EXEC` answers `EXECABORT`, as Redis does for a transaction with an error in it,
//! so clients that send MULTI ... EXEC in one pipeline (redis-py's default `pipeline()`,
//! RQ, Celery) are told it failed and nothing was applied.

mod support;

use std::time::Duration;

use support::{require_redis, Cluster, Proxy, RawClient};

#[test]
fn a_refused_multi_runs_nothing_until_exec_or_discard() {
    require_redis();
    let cluster = Cluster::start(3, 0);
    let proxy = Proxy::start(&cluster.seeds(), &[]);
    let mut raw = RawClient::connect(proxy.port());

    // One pipeline, as clients send it.
    raw.write(
        b"MULTI\r\nSET tx:a applied\r\nINCR tx:n\r\nWATCH tx:a\r\nMULTI\r\nEXEC\r\n\
          SET tx:after yes\r\n",
    );
    let replies = raw.read_replies(7, Duration::from_secs(10));
    assert_eq!(replies.len(), 7, "{replies:?}");
    assert!(
        replies[0].starts_with("-ERR 'MULTI' is not supported"),
        "{replies:?}"
    );
    for reply in &replies[1..3] {
        assert!(reply.starts_with("-ERR slotgate: not run"), "{replies:?}");
    }
    assert_eq!(replies[3], "-ERR WATCH inside MULTI is not allowed\r\n");
    assert_eq!(replies[4], "-ERR MULTI calls can not be nested\r\n");
    assert_eq!(
        replies[5],
        "-EXECABORT Transaction discarded because of previous errors.\r\n"
    );
    // After EXEC the session is back to normal.
    assert_eq!(replies[6], "+OK\r\n");

    // Nothing of the transaction ran.
    let mut con = proxy.client();
    let a: Option<String> = redis::cmd("GET").arg("tx:a").query(&mut con).unwrap();
    let n: Option<i64> = redis::cmd("GET").arg("tx:n").query(&mut con).unwrap();
    assert_eq!((a, n), (None, None), "the refused transaction was applied");

    // DISCARD ends it too; EXEC and DISCARD outside a transaction get Redis's errors.
    raw.write(b"MULTI\r\nDEL tx:after\r\nDISCARD\r\nGET tx:after\r\nEXEC\r\nDISCARD\r\n");
    let replies = raw.read_replies(6, Duration::from_secs(10));
    assert_eq!(replies.len(), 6, "{replies:?}");
    assert!(
        replies[1].starts_with("-ERR slotgate: not run"),
        "{replies:?}"
    );
    assert_eq!(replies[2], "+OK\r\n");
    assert_eq!(replies[3], "$3\r\nyes\r\n", "the DEL inside ran");
    assert_eq!(replies[4], "-ERR EXEC without MULTI\r\n");
    assert_eq!(replies[5], "-ERR DISCARD without MULTI\r\n");

    // RESET leaves it as well.
    raw.write(b"MULTI\r\nRESET\r\nGET tx:after\r\n");
    let replies = raw.read_replies(3, Duration::from_secs(10));
    assert_eq!(replies[1..], ["+RESET\r\n", "$3\r\nyes\r\n"], "{replies:?}");
}

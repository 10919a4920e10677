//! The control plane's own queries to a real node (`slotgate::backend::control`): dial,
//! the one handshake, one request, one decoded reply, or a typed error that says what
//! failed.

mod support;

use redis_protocol::resp2::types::BytesFrame;
use slotgate::backend::control::{self, ControlError};
use slotgate::backend::handshake::{HandshakeError, Step};
use slotgate::cluster::topology::parse_cluster_shards;
use slotgate::cluster::NodeAddr;
use slotgate::config::BackendConfig;
use support::Cluster;

fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}

fn addr(port: u16) -> NodeAddr {
    NodeAddr::new("127.0.0.1", port)
}

fn with_password(password: &str) -> BackendConfig {
    BackendConfig {
        password: Some(password.to_string()),
        ..BackendConfig::default()
    }
}

#[test]
fn a_query_gets_one_decoded_reply_and_a_refused_handshake_says_why() {
    let cluster = Cluster::start(1, 0);
    let port = cluster.ports()[0];
    let node = addr(port);

    // No credentials: no handshake; the topology reply decodes and parses.
    let frame = block_on(control::query(
        &node,
        &BackendConfig::default(),
        &[b"CLUSTER", b"SHARDS"],
    ))
    .unwrap();
    let topology = parse_cluster_shards(&frame.to_owned_frame(), &node).unwrap();
    assert!(topology.covers_all(), "{topology:?}");
    assert_eq!(topology.shards[0].master, node);

    // An error reply is a reply, not a failed query.
    let frame = block_on(control::query(
        &node,
        &BackendConfig::default(),
        &[b"NOSUCHCMD"],
    ))
    .unwrap();
    assert!(
        matches!(&frame, BytesFrame::Error(text) if text.starts_with("ERR unknown command")),
        "{frame:?}"
    );

    let mut admin = cluster.node_client(port);
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("requirepass")
        .arg("right")
        .query(&mut admin)
        .unwrap();

    // The right password: `AUTH default right`, then the request.
    let frame = block_on(control::query(&node, &with_password("right"), &[b"PING"])).unwrap();
    assert_eq!(frame, BytesFrame::SimpleString("PONG".into()));

    // A wrong one: the handshake's typed error, with the node's own text.
    let err = block_on(control::query(&node, &with_password("wrong"), &[b"PING"])).unwrap_err();
    match &err {
        ControlError::Refused(HandshakeError { step, text }) => {
            assert_eq!(*step, Step::Auth);
            assert!(text.starts_with("WRONGPASS"), "{text}");
        }
        other => panic!("expected a refused handshake, got {other:?}"),
    }
    assert!(
        err.to_string().starts_with("handshake refused: WRONGPASS"),
        "{err}"
    );
}

#[test]
fn a_node_that_is_not_there_is_a_connect_error() {
    let err = block_on(async {
        // A port bound but not listening: a connect to it is refused, and no other
        // process can start listening on it while the test holds it.
        let held = tokio::net::TcpSocket::new_v4().unwrap();
        held.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let node = addr(held.local_addr().unwrap().port());
        control::query(&node, &BackendConfig::default(), &[b"PING"]).await
    })
    .unwrap_err();
    assert!(matches!(err, ControlError::Connect(_)), "{err:?}");
    assert!(err.to_string().starts_with("cannot connect: "), "{err}");
}

//! `[address_map]`: nodes announce addresses the proxy must not dial as they are
//! (Docker, Kubernetes, NAT). slotgate dials the mapped address instead — an IP, or a
//! host name, looked up by the refresher (after each refresh) so that workers do not
//! block on the resolver.

mod support;

use redis::Commands;
use support::{keys_on_every_master, require_redis, Cluster, ClusterConfig, Proxy};

/// A proxy whose `[address_map]` sends each master's announced `127.0.0.1:port` to
/// `dial(port)`.
fn mapped_proxy(cluster: &Cluster, dial: impl Fn(u16) -> String) -> Proxy {
    let mut text = String::from("[address_map]\n");
    for port in cluster.master_ports() {
        text.push_str(&format!("\"127.0.0.1:{port}\" = \"{}\"\n", dial(port)));
    }
    Proxy::start_with_config(&cluster.seeds(), &text)
}

/// Every key on every master is served through the proxy.
fn serves_every_master(cluster: &Cluster, proxy: &Proxy, prefix: &str) {
    let mut con = proxy.client();
    for key in keys_on_every_master(cluster, prefix, 2) {
        let _: () = con.set(&key, format!("{key}!")).unwrap();
        let v: String = con.get(&key).unwrap();
        assert_eq!(v, format!("{key}!"));
    }
}

#[test]
fn requests_go_to_the_mapped_address_not_the_announced_one() {
    require_redis();
    // The nodes also listen on 127.0.0.2 (loopback), which they never announce.
    let cluster = Cluster::start_with(
        3,
        0,
        ClusterConfig {
            extra_config: vec!["bind 127.0.0.1 127.0.0.2".into()],
            ..ClusterConfig::default()
        },
    );
    let proxy = mapped_proxy(&cluster, |port| format!("127.0.0.2:{port}"));
    serves_every_master(&cluster, &proxy, "mapped");

    // Each node sees the proxy's data connection arrive on the mapped address.
    for port in cluster.master_ports() {
        let clients = cluster.cli(port, &["CLIENT", "LIST"]);
        assert!(
            clients.contains(&format!("laddr=127.0.0.2:{port}")),
            "no connection to 127.0.0.2:{port} on the node:\n{clients}"
        );
    }
    let info = proxy.cli(&["INFO"]);
    for port in cluster.master_ports() {
        let line = format!("addr=127.0.0.1:{port},dial=127.0.0.2:{port},down=0");
        assert!(info.contains(&line), "{line} missing from INFO:\n{info}");
    }
}

#[test]
fn a_mapped_host_name_is_resolved() {
    require_redis();
    let cluster = Cluster::start(3, 0);
    let proxy = mapped_proxy(&cluster, |port| format!("localhost:{port}"));
    serves_every_master(&cluster, &proxy, "named");
    let info = proxy.cli(&["INFO"]);
    for port in cluster.master_ports() {
        let line = format!("dial=localhost:{port},down=0");
        assert!(info.contains(&line), "{line} missing from INFO:\n{info}");
    }
    // The name was looked up by the refresher, off the workers' event loops.
    let log = proxy.log();
    for port in cluster.master_ports() {
        let line = format!("dial=localhost:{port} addr=127.0.0.1:{port} by=refresher");
        assert!(log.contains(&line), "{line} missing from the log:\n{log}");
    }
}

//! The admin port against a real cluster, as an operator uses it: `/metrics` moves
//! when clients make requests and `promtool` accepts it, `/healthz` and `/readyz`
//! answer what Kubernetes probes need, and the status page draws in a real browser.
//!
//! `promtool` (Debian's `prometheus`) and `chromium` are installed by `.ci/run`; a test
//! that finds one missing tries `apt-get install` itself (as root), and otherwise says
//! why it skips its check.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use redis::Commands;
use support::{free_port, keys_in_slot, require_redis, Cluster, Proxy};

/// A proxy with its admin port on a free port, and the port's base URL.
fn proxy_with_admin(cluster: &Cluster) -> (Proxy, String) {
    let proxy = Proxy::start(&cluster.seeds(), &["--admin", "127.0.0.1:0"]);
    let url = proxy
        .admin_url()
        .unwrap_or_else(|| panic!("no admin line printed:\n{}", proxy.log()));
    (proxy, url)
}

/// `GET path` on the admin port at `base` (`http://127.0.0.1:PORT`): status and body.
fn get(base: &str, path: &str) -> (u16, String) {
    let addr = base.strip_prefix("http://").expect("http:// URL");
    let mut stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    // HTTP/1.0: the server closes after one response, with no chunked encoding.
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .unwrap_or_else(|e| panic!("read GET {path}: {e}"));
    let (head, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {response:?}"));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    (status, body.to_string())
}

/// The value of the sample `series` (name and labels exactly as printed) in the text
/// format; 0 when absent.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0.0, |v| v.trim().parse().unwrap_or(f64::NAN))
}

fn scrape(base: &str) -> String {
    let (status, body) = get(base, "/metrics");
    assert_eq!(status, 200, "{body}");
    body
}

/// Polls `check` every 50 ms until it is true, at most `limit`.
fn wait_until(limit: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check() {
        assert!(Instant::now() < deadline, "not within {limit:?}: {what}");
        sleep(Duration::from_millis(50));
    }
}

/// `bin` on the PATH; else, as root with apt-get, Debian's `package` installed for it
/// (an `apt-get update` first if the install fails); else `None` with the reason
/// printed.
fn tool_or_install(bin: &str, package: &str) -> Option<PathBuf> {
    let find = || {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join(bin))
                .find(|p| p.is_file())
        })
    };
    if let Some(path) = find() {
        return Some(path);
    }
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    if !root || !Path::new("/usr/bin/apt-get").exists() {
        eprintln!("SKIP: `{bin}` not found and cannot be installed here (needs root and apt-get: apt-get install {package})");
        return None;
    }
    let install = || {
        Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends", package])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    eprintln!("installing {package} for `{bin}`");
    if !install() {
        let _ = Command::new("apt-get")
            .args(["update", "-qq"])
            .stdin(Stdio::null())
            .status();
        install();
    }
    let found = find();
    if found.is_none() {
        eprintln!("SKIP: `{bin}` not found and `apt-get install {package}` did not provide it");
    }
    found
}

#[test]
fn metrics_move_with_requests_and_promtool_accepts_them() {
    require_redis();
    let cluster = Cluster::start(3, 0);
    let (proxy, admin) = proxy_with_admin(&cluster);
    let mut con = proxy.client();
    let _: () = con.set("admin:list", "x").unwrap();
    let read = "slotgate_requests_total{class=\"read\"}";
    let write = "slotgate_requests_total{class=\"write\"}";
    let multi = "slotgate_requests_total{class=\"multi_slot\"}";
    let rejected = "slotgate_errors_total{class=\"rejected\",kind=\"client\"}";
    let node_error = "slotgate_errors_total{class=\"write\",kind=\"reply\"}";

    let before = scrape(&admin);
    let _: Option<String> = con.get("admin:a").unwrap();
    let after = scrape(&admin);
    assert_eq!(sample(&after, read), sample(&before, read) + 1.0, "one GET");
    assert_eq!(sample(&after, write), sample(&before, write));

    let _: () = con.set("admin:a", "1").unwrap();
    let _: Vec<Option<String>> = con.mget(&["admin:a", "admin:b", "admin:c"]).unwrap();
    let unknown = redis::cmd("NOSUCHCOMMAND").query::<String>(&mut con);
    assert!(unknown.is_err());
    let wrongtype = redis::cmd("LPUSH")
        .arg("admin:list")
        .arg("y")
        .query::<i64>(&mut con);
    assert!(format!("{:?}", wrongtype.unwrap_err()).contains("WRONGTYPE"));
    let later = scrape(&admin);
    assert_eq!(
        sample(&later, write),
        sample(&after, write) + 2.0,
        "SET, LPUSH"
    );
    assert_eq!(
        sample(&later, multi),
        sample(&after, multi) + 1.0,
        "MGET over 3 slots"
    );
    assert_eq!(
        sample(&later, rejected),
        sample(&after, rejected) + 1.0,
        "unknown command"
    );
    assert_eq!(
        sample(&later, node_error),
        sample(&after, node_error) + 1.0,
        "WRONGTYPE"
    );
    assert!(
        sample(&later, "slotgate_client_received_bytes_total")
            > sample(&after, "slotgate_client_received_bytes_total")
    );
    assert!(
        sample(&later, "slotgate_client_sent_bytes_total")
            > sample(&after, "slotgate_client_sent_bytes_total")
    );
    assert_eq!(
        sample(&later, "slotgate_client_connections"),
        1.0,
        "this test's client"
    );
    assert_eq!(sample(&later, "slotgate_slots_unserved"), 0.0);
    assert_eq!(sample(&later, "slotgate_cluster_masters"), 3.0);
    assert_eq!(
        sample(
            &later,
            "slotgate_topology_refreshes_total{cause=\"startup\",result=\"ok\"}"
        ),
        1.0
    );
    // The gauge is refreshed every 100 ms tick.
    wait_until(
        Duration::from_secs(5),
        "shared node connections counted",
        || {
            sample(
                &scrape(&admin),
                "slotgate_node_connections{kind=\"shared\"}",
            ) >= 1.0
        },
    );

    // Enough requests that the sampled latency histograms (one in 16) fill.
    for i in 0..200 {
        let _: Option<String> = con.get(format!("admin:k{i}")).unwrap();
    }
    let timed = scrape(&admin);
    assert!(
        sample(
            &timed,
            "slotgate_request_duration_seconds_count{class=\"read\"}"
        ) >= 10.0
    );
    let per_node: f64 = cluster
        .master_ports()
        .iter()
        .map(|p| {
            sample(
                &timed,
                &format!("slotgate_node_request_duration_seconds_count{{node=\"127.0.0.1:{p}\"}}"),
            )
        })
        .sum();
    assert!(per_node >= 10.0, "per-node histograms: {per_node}");

    // Every metric the Grafana dashboard queries is one slotgate serves (the node
    // gauges once the prober has asked every node).
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut timed = timed;
    while !timed.contains("slotgate_node_up{") {
        assert!(
            Instant::now() < deadline,
            "no node probed within 30 s:\n{timed}"
        );
        sleep(Duration::from_millis(100));
        timed = scrape(&admin);
    }
    let dashboard = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/grafana/slotgate.json"),
    )
    .unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&dashboard).expect("dashboard is JSON");
    let mut queried = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().unwrap();
            for (at, _) in expr.match_indices("slotgate_") {
                let name: String = expr[at..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                queried.push(name);
            }
        }
    }
    assert!(queried.len() >= 20, "{queried:?}");
    for name in &queried {
        // A histogram's series are declared under the histogram's name.
        let declared = ["", "_bucket", "_sum", "_count"].iter().any(|suffix| {
            let base = name.strip_suffix(suffix).unwrap_or(name);
            timed.contains(&format!("# TYPE {base} "))
        });
        assert!(
            declared,
            "the dashboard queries {name}, which /metrics lacks"
        );
    }

    // Prometheus itself asks for OpenMetrics and gets it.
    let addr = admin.strip_prefix("http://").unwrap();
    let mut stream = TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "GET /metrics HTTP/1.0\r\nAccept: application/openmetrics-text;version=1.0.0,text/plain;q=0.5\r\n\r\n"
    )
    .unwrap();
    let mut open = String::new();
    stream.read_to_string(&mut open).unwrap();
    assert!(open.contains("application/openmetrics-text"), "{open}");
    assert!(open.trim_end().ends_with("# EOF"));

    let Some(promtool) = tool_or_install("promtool", "prometheus") else {
        return;
    };
    let mut check = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    check
        .stdin
        .take()
        .unwrap()
        .write_all(timed.as_bytes())
        .unwrap();
    let out = check.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}\n{}{}\n--- metrics ---\n{timed}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_moved_during_a_reshard_is_counted_and_refreshes_the_table() {
    require_redis();
    let cluster = Cluster::start(3, 0);
    let (proxy, admin) = proxy_with_admin(&cluster);
    let slot = 4242;
    let from = cluster.node_for_slot(slot);
    let to = cluster
        .master_ports()
        .into_iter()
        .find(|&p| p != from)
        .expect("another master");
    let keys = keys_in_slot(slot, "admin-moved", 3);
    let mut con = proxy.client();
    for k in &keys {
        let _: () = con.set(k, "v").unwrap();
    }
    let moved = "slotgate_redirects_total{kind=\"moved\"}";
    let refreshes = "slotgate_topology_refreshes_total{cause=\"moved\",result=\"ok\"}";
    let before = scrape(&admin);
    assert_eq!(sample(&before, moved), 0.0);

    cluster.migrate_slots(slot..=slot, from, to);
    for k in &keys {
        let v: String = con.get(k).unwrap();
        assert_eq!(v, "v");
    }
    let after = scrape(&admin);
    assert!(sample(&after, moved) >= 1.0, "MOVED counted:\n{after}");
    wait_until(
        Duration::from_secs(10),
        "a refresh asked for by MOVED",
        || sample(&scrape(&admin), refreshes) >= 1.0,
    );
    assert!(
        sample(
            &scrape(&admin),
            "slotgate_topology_refresh_duration_seconds_count"
        ) >= 2.0
    );
}

#[test]
fn healthz_and_readyz_follow_the_masters() {
    require_redis();
    let mut cluster = Cluster::start(3, 0);
    let (_proxy, admin) = proxy_with_admin(&cluster);
    assert_eq!(get(&admin, "/healthz"), (200, "ok\n".to_string()));
    // Ready once every master has answered a probe (one a second).
    wait_until(Duration::from_secs(10), "/readyz says ready", || {
        get(&admin, "/readyz").0 == 200
    });
    assert_eq!(get(&admin, "/readyz").1, "ready\n");
    assert_eq!(sample(&scrape(&admin), "slotgate_ready"), 1.0);

    let victim = cluster.master_ports()[1];
    cluster.kill(victim);
    let mut last = (0, String::new());
    wait_until(Duration::from_secs(10), "/readyz says 503", || {
        last = get(&admin, "/readyz");
        last.0 == 503
    });
    assert!(
        last.1.contains(&format!("127.0.0.1:{victim} unreachable")),
        "{}",
        last.1
    );
    let metrics = scrape(&admin);
    assert_eq!(sample(&metrics, "slotgate_ready"), 0.0);
    assert_eq!(
        sample(
            &metrics,
            &format!("slotgate_node_up{{node=\"127.0.0.1:{victim}\",role=\"master\"}}")
        ),
        0.0
    );
    assert_eq!(get(&admin, "/healthz").0, 200, "alive all the same");
}

#[test]
fn readyz_is_503_until_the_slot_table_is_learned() {
    require_redis();
    let cluster = Cluster::start(3, 0);
    // A seed that accepts connections and never answers holds the first topology query
    // for the connect timeout: the admin port is up meanwhile, the proxy not ready.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_addr = silent.local_addr().unwrap().to_string();
    let seeds = format!("{silent_addr},{}", cluster.seeds());
    let admin_port = free_port();
    let admin = format!("http://127.0.0.1:{admin_port}");
    let config = support::write_config("[backend]\nconnect_timeout_ms = 3000\n");
    let admin_arg = format!("127.0.0.1:{admin_port}");
    let starting = std::thread::spawn(move || {
        Proxy::start(&seeds, &["--admin", &admin_arg, "--config", &config])
    });

    let mut first = None;
    wait_until(Duration::from_secs(20), "the admin port answers", || {
        first = TcpStream::connect(("127.0.0.1", admin_port))
            .ok()
            .map(|_| get(&admin, "/readyz"));
        first.is_some()
    });
    let (status, body) = first.unwrap();
    assert_eq!(status, 503, "{body}");
    assert!(body.starts_with("not ready: starting"), "{body}");
    assert_eq!(get(&admin, "/healthz").0, 200, "alive while starting");

    let proxy = starting.join().expect("proxy started");
    wait_until(Duration::from_secs(10), "/readyz says ready", || {
        get(&admin, "/readyz").0 == 200
    });
    let mut con = proxy.client();
    let _: () = con.set("admin:ready", "1").unwrap();
    drop(silent);
}

#[test]
fn admin_port_off_and_in_use() {
    require_redis();
    let cluster = Cluster::start(1, 0);
    let off = Proxy::start(&cluster.seeds(), &["--admin", "off"]);
    assert_eq!(off.admin_url(), None);

    // An address given explicitly must be free.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_slotgate"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--seeds",
            &cluster.seeds(),
            "--admin",
            &addr,
        ])
        .stdin(Stdio::null())
        .output()
        .expect("run slotgate");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("admin port: cannot listen on") && stderr.contains("admin.listen"),
        "{stderr}"
    );
}

/// Whether a row of the RGB image has at least `colours` distinct saturated colours,
/// each over at least `min_share` of the width: the slot strip of that many masters.
fn has_strip_row(rgb: &[[u8; 3]], width: usize, colours: usize, min_share: f64) -> bool {
    rgb.chunks(width).any(|row| {
        let mut runs: Vec<([u8; 3], usize)> = Vec::new();
        for px in row {
            let (max, min) = (*px.iter().max().unwrap(), *px.iter().min().unwrap());
            if max - min < 60 {
                continue; // grey, white, black: not a master's colour
            }
            match runs.iter_mut().find(|(c, _)| c == px) {
                Some((_, n)) => *n += 1,
                None => runs.push((*px, 1)),
            }
        }
        runs.iter()
            .filter(|(_, n)| *n as f64 >= min_share * width as f64)
            .count()
            >= colours
    })
}

#[test]
fn status_page_draws_the_slot_strip_and_the_nodes_in_chromium() {
    require_redis();
    let cluster = Cluster::start(3, 0);
    let (proxy, admin) = proxy_with_admin(&cluster);
    let mut con = proxy.client();
    for i in 0..50 {
        let _: () = con.set(format!("page:{i}"), i).unwrap();
    }
    // A slot on its way between two masters is marked on the strip.
    let slot = 777;
    let from = cluster.node_for_slot(slot);
    let to = cluster
        .master_ports()
        .into_iter()
        .find(|&p| p != from)
        .unwrap();
    cluster.begin_slot_migration(slot, from, to);
    wait_until(Duration::from_secs(10), "/readyz says ready", || {
        get(&admin, "/readyz").0 == 200
    });
    let (status, json) = get(&admin, "/status.json");
    assert_eq!(status, 200);
    assert!(json.contains("\"migrating\":[{\"slot\":777"), "{json}");

    let (status, page) = get(&admin, "/");
    assert_eq!(status, 200);
    assert!(page.contains("<canvas id=\"strip\""));
    assert!(
        !page.contains("src=\"http") && !page.contains("href=\"http"),
        "no external assets"
    );

    let Some(chromium) = tool_or_install("chromium", "chromium")
        .or_else(|| tool_or_install("chromium-browser", "chromium"))
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let browse = |extra: &[&str]| {
        let profile = dir.path().join("profile");
        let out = Command::new("timeout")
            .arg("120")
            .arg(&chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
                "--window-size=1280,1000",
                "--virtual-time-budget=5000",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .args(extra)
            .arg(format!("{admin}/?every=500"))
            .stdin(Stdio::null())
            .output()
            .expect("run chromium");
        assert!(
            out.status.success(),
            "chromium: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };

    // After the page's script ran: a row per node, the strip drawn over every slot, the
    // migration marked on both ends.
    let dom = browse(&["--dump-dom"]);
    assert_eq!(dom.matches("<tr class=\"node master\"").count(), 3, "{dom}");
    assert!(dom.contains("data-drawn-slots=\"16384\""), "{dom}");
    assert!(dom.contains("data-migrating=\"2\""), "{dom}");
    assert!(dom.contains(">ready<"), "{dom}");
    for port in cluster.master_ports() {
        assert!(dom.contains(&format!("127.0.0.1:{port}")), "{dom}");
    }

    // The screenshot shows it: a band of three master colours, a third each.
    let shot = dir.path().join("status.png");
    browse(&[&format!("--screenshot={}", shot.display())]);
    let decoder = png::Decoder::new(std::fs::File::open(&shot).expect("screenshot written"));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    let channels = info.color_type.samples();
    assert!(channels >= 3, "{:?}", info.color_type);
    let rgb: Vec<[u8; 3]> = buf[..info.buffer_size()]
        .chunks(channels)
        .map(|p| [p[0], p[1], p[2]])
        .collect();
    let width = info.width as usize;
    assert!(
        has_strip_row(&rgb, width, 3, 0.2),
        "no row with three master colours across the screenshot ({})",
        shot.display()
    );
    // Not a blank page: more than a few colours in all.
    let distinct: std::collections::HashSet<[u8; 3]> = rgb.iter().copied().collect();
    assert!(distinct.len() > 20, "{} colours", distinct.len());
    if let Ok(keep) = std::env::var("SLOTGATE_KEEP_SCREENSHOT") {
        let _ = std::fs::copy(&shot, keep);
    }
}

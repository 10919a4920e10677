//! The command line as an operator meets it: help, version, bad values that stop
//! start-up with a message naming the key, and an address another slotgate listens on.

mod support;

use std::net::TcpListener;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use support::{free_port, require_redis, Cluster, Proxy};

fn slotgate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_slotgate"))
        .args(args)
        .output()
        .expect("run slotgate")
}

#[test]
fn help_and_version() {
    let out = slotgate(&["--version"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with(&format!("slotgate {}", env!("CARGO_PKG_VERSION"))),
        "{text}"
    );

    let out = slotgate(&["--help"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--listen",
        "--seeds",
        "--config",
        "--log-level",
        "--log-format",
        "--workers",
    ] {
        assert!(text.contains(flag), "{flag} missing from --help:\n{text}");
    }
}

#[test]
fn bad_values_name_their_key() {
    let cases: [(&[&str], &str); 4] = [
        (
            &["--seeds", "127.0.0.1:7001", "--listen", "nowhere"],
            "`listen`",
        ),
        (
            &["--seeds", "127.0.0.1:7001", "--log-format", "xml"],
            "`log_format`",
        ),
        (&["--listen", "127.0.0.1:0"], "`seeds`"),
        (
            &["--seeds", "127.0.0.1:7001", "--workers", "100000"],
            "`workers`",
        ),
    ];
    for (args, key) in cases {
        let out = slotgate(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(key), "{args:?}: {err}");
    }

    let config = support::write_config("seeds = [\"127.0.0.1:7001\"]\n[backend]\ntimeout_ms = 0\n");
    let out = slotgate(&["--config", &config]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("backend.timeout_ms"), "{err}");

    let config = support::write_config("seeds = [\"127.0.0.1:7001\"]\nunknown_key = 1\n");
    let out = slotgate(&["--config", &config]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown_key"), "{err}");

    let out = slotgate(&["--config", "/nonexistent/slotgate.toml"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/slotgate.toml"), "{err}");
}

/// `slotgate args...` with `RUST_LOG` as given (`None`: unset), run to its exit.
fn slotgate_env(args: &[&str], rust_log: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_slotgate"));
    cmd.args(args).env_remove("RUST_LOG");
    if let Some(filter) = rust_log {
        cmd.env("RUST_LOG", filter);
    }
    cmd.output().expect("run slotgate")
}

/// A seed that accepts connections and never answers, and can tell whether anyone
/// connected: a filter error must stop start-up before slotgate dials any seed.
struct SilentSeed(TcpListener);

impl SilentSeed {
    fn new() -> SilentSeed {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a silent seed");
        listener.set_nonblocking(true).expect("non-blocking seed");
        SilentSeed(listener)
    }

    fn addr(&self) -> String {
        self.0.local_addr().expect("seed address").to_string()
    }

    /// Whether a connection has arrived (the kernel queues it without an accept).
    fn contacted(&self) -> bool {
        self.0.accept().is_ok()
    }
}

#[test]
fn a_bad_log_filter_stops_start_up_before_any_seed_is_dialed() {
    for filter in ["inof", "slotgate=verbose", "info,slotgate=", ""] {
        let seed = SilentSeed::new();
        let addr = seed.addr();
        let args = [
            "--listen",
            "127.0.0.1:0",
            "--seeds",
            &addr,
            "--log-level",
            filter,
        ];
        let out = slotgate_env(&args, None);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "--log-level {filter:?}: {err}");
        assert!(err.contains("`log_level`"), "--log-level {filter:?}: {err}");
        assert!(!seed.contacted(), "--log-level {filter:?} dialed the seed");
    }

    let seed = SilentSeed::new();
    let config = support::write_config(&format!(
        "seeds = [\"{}\"]\nlisten = \"127.0.0.1:0\"\nlog_level = \"inof\"\n",
        seed.addr()
    ));
    let out = slotgate_env(&["--config", &config], None);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("`log_level`") && err.contains("inof"), "{err}");
    assert!(!seed.contacted(), "log_level = \"inof\" dialed the seed");

    // RUST_LOG is used when neither the flag nor the file sets a level.
    let seed = SilentSeed::new();
    let addr = seed.addr();
    let out = slotgate_env(&["--listen", "127.0.0.1:0", "--seeds", &addr], Some("inof"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("RUST_LOG") && err.contains("inof"), "{err}");
    assert!(!seed.contacted(), "RUST_LOG=inof dialed the seed");
}

#[test]
fn good_log_filters_get_past_validation() {
    // An unreachable seed: a filter that passes fails later, on the topology, with 1.
    let unreachable = ["--listen", "127.0.0.1:0", "--seeds", "127.0.0.1:1"];
    for filter in [
        "debug",
        "WARN",
        "off",
        "slotgate=debug",
        "info,slotgate::backend=trace",
        "warn,mio=off",
    ] {
        let mut args = unreachable.to_vec();
        args.extend(["--log-level", filter]);
        let out = slotgate_env(&args, None);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "--log-level {filter:?}: {err}");
        assert!(
            err.contains("slotgate: cluster topology") && !err.contains("log_level"),
            "--log-level {filter:?}: {err}"
        );
    }

    let out = slotgate_env(&unreachable, Some("slotgate=debug"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(!err.contains("RUST_LOG"), "{err}");

    // A level set in the file wins over RUST_LOG, as documented.
    let config = support::write_config(
        "seeds = [\"127.0.0.1:1\"]\nlisten = \"127.0.0.1:0\"\nlog_level = \"info\"\n",
    );
    let out = slotgate_env(&["--config", &config], Some("inof"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("slotgate: cluster topology"), "{err}");
}

#[test]
fn a_second_slotgate_on_the_same_address_fails() {
    require_redis();
    let cluster = Cluster::start(3, 0);
    let seeds = cluster.seeds();
    let listen = format!("127.0.0.1:{}", free_port());
    let mut first = Proxy::start_args(&["--listen", &listen, "--seeds", &seeds]);

    let mut second = Command::new(env!("CARGO_BIN_EXE_slotgate"))
        .args(["--listen", &listen, "--seeds", &seeds])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn a second slotgate");
    let deadline = Instant::now() + Duration::from_secs(10);
    while second
        .try_wait()
        .expect("poll the second slotgate")
        .is_none()
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    // Still running past the deadline: it joined the first one's port. Stop it (by
    // its own pid) and report what it printed.
    let _ = second.kill();
    let out = second.wait_with_output().expect("reap the second slotgate");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        !stdout.contains("slotgate listening"),
        "the second slotgate listens on {listen} too:\n{stdout}{stderr}"
    );
    assert!(
        out.status.code().is_some_and(|code| code != 0),
        "{}:\n{stdout}{stderr}",
        out.status
    );
    assert!(stderr.contains("address in use"), "{stderr}");

    assert!(first.try_wait().is_none(), "the first slotgate exited");
    for _ in 0..8 {
        assert_eq!(first.cli(&["PING"]), "PONG");
    }
}

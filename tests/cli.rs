//! The command line as an operator meets it: help, version, bad values that stop
//! start-up with a message naming the key, and an address another slotgate listens on.

mod support;

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

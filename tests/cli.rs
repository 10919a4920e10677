//! The command line as an operator meets it: help, version, and bad values that stop
//! start-up with a message naming the key.

mod support;

use std::process::{Command, Output};

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

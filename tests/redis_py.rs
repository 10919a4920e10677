//! The current redis-py from PyPI, in a virtual environment this test makes, with its
//! default settings (RESP3: it opens with `HELLO 3`) and with `protocol=2`.

mod support;

use std::path::PathBuf;
use std::process::Command;

use support::{require_redis, Cluster, Proxy};

/// A venv under target/ with redis-py installed; `Err(reason)` when that cannot be made.
fn python_with_redis_py() -> Result<PathBuf, String> {
    let venv = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("redis-py-venv");
    let python = venv.join("bin/python");
    if !python.exists() {
        let status = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .map_err(|e| format!("python3 not runnable: {e}"))?;
        if !status.success() {
            return Err("python3 -m venv failed (is python3-venv installed?)".into());
        }
    }
    let have = Command::new(&python).args(["-c", "import redis"]).status();
    if !have.map(|s| s.success()).unwrap_or(false) {
        let out = Command::new(&python)
            .args(["-m", "pip", "install", "--quiet", "--upgrade", "redis"])
            .output()
            .map_err(|e| format!("pip not runnable: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "pip install redis failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    Ok(python)
}

#[test]
fn redis_py_default_resp3_and_resp2() {
    require_redis();
    let python = match python_with_redis_py() {
        Ok(p) => p,
        Err(reason) => {
            // Only where PyPI cannot be reached; CI installs it.
            if std::env::var_os("CI").is_some() {
                panic!("redis-py is needed in CI: {reason}");
            }
            eprintln!("SKIPPED redis_py_default_resp3_and_resp2: {reason}");
            return;
        }
    };
    let cluster = Cluster::start(3, 0);
    let proxy = Proxy::start(&cluster.seeds(), &[]);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/py/redis_py_check.py");
    let out = Command::new(&python)
        .arg(script)
        .arg(proxy.port().to_string())
        .output()
        .expect("run python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("all checks passed"),
        "redis-py checks failed:\n{stdout}\n{stderr}\nproxy log:\n{}",
        proxy.log()
    );
    println!("{}", stdout.lines().next().unwrap_or_default());
}

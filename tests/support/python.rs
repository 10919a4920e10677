//! redis-py from PyPI in a virtual environment under target/, made on first use, and
//! the scripts in tests/py run with it.

use std::path::PathBuf;
use std::process::Command;

/// A venv under target/ with redis-py installed; `Err(reason)` when that cannot be made.
pub fn python_with_redis_py() -> Result<PathBuf, String> {
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

/// [`python_with_redis_py`], or `None` (with a SKIPPED line naming `test`) where PyPI
/// cannot be reached outside CI; in CI it must be there.
pub fn python_or_skip(test: &str) -> Option<PathBuf> {
    match python_with_redis_py() {
        Ok(python) => Some(python),
        Err(reason) => {
            if std::env::var_os("CI").is_some() {
                panic!("redis-py is needed in CI: {reason}");
            }
            eprintln!("SKIPPED {test}: {reason}");
            None
        }
    }
}

/// Runs `tests/py/<script> PORT` with `python`; panics with its output and `log` (the
/// proxy's) unless it exits 0 and prints `all checks passed`. Returns its stdout.
pub fn run_py_check(
    python: &PathBuf,
    script: &str,
    port: u16,
    log: impl FnOnce() -> String,
) -> String {
    let path = format!("{}/tests/py/{script}", env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(python)
        .arg(&path)
        .arg(port.to_string())
        .output()
        .expect("run python");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("all checks passed"),
        "{script} failed:\n{stdout}\n{stderr}\nproxy log:\n{}",
        log()
    );
    stdout
}

//! Python packages from PyPI in virtual environments under target/, made on first use
//! (redis-py; RQ and Celery for the job-queue tests), and the scripts in tests/py run
//! with them.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;

/// Held while a venv is made or filled: the tests of one binary run in parallel, and two
/// `pip install`s into one venv (or two `python -m venv` of one folder) would race.
static VENV: Mutex<()> = Mutex::new(());

/// A venv named `name` under target/ in which every module of `imports` imports; what is
/// missing is installed with `pip install --upgrade packages...`. `Err(reason)` when that
/// cannot be made (no python3, no venv module, PyPI unreachable).
pub fn python_venv(name: &str, packages: &[&str], imports: &[&str]) -> Result<PathBuf, String> {
    let _made_one_at_a_time = VENV.lock().unwrap_or_else(|e| e.into_inner());
    let venv = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
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
    let check = format!("import {}", imports.join(", "));
    let have = Command::new(&python).args(["-c", &check]).output();
    if !have.map(|o| o.status.success()).unwrap_or(false) {
        let out = Command::new(&python)
            .args(["-m", "pip", "install", "--quiet", "--upgrade"])
            .args(packages)
            .output()
            .map_err(|e| format!("pip not runnable: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "pip install {} failed: {}",
                packages.join(" "),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    Ok(python)
}

/// A venv under target/ with redis-py installed; `Err(reason)` when that cannot be made.
pub fn python_with_redis_py() -> Result<PathBuf, String> {
    python_venv("redis-py-venv", &["redis"], &["redis"])
}

/// [`python_venv`], or `None` (with a SKIPPED line naming `test`) where it cannot be
/// made outside CI (PyPI unreachable); in CI it must be there.
pub fn venv_or_skip(
    test: &str,
    name: &str,
    packages: &[&str],
    imports: &[&str],
) -> Option<PathBuf> {
    match python_venv(name, packages, imports) {
        Ok(python) => Some(python),
        Err(reason) => {
            if std::env::var_os("CI").is_some() {
                panic!("{} is needed in CI: {reason}", packages.join(" "));
            }
            eprintln!("SKIPPED {test}: {reason}");
            None
        }
    }
}

/// [`python_with_redis_py`], or `None` (with a SKIPPED line naming `test`) where PyPI
/// cannot be reached outside CI; in CI it must be there.
pub fn python_or_skip(test: &str) -> Option<PathBuf> {
    venv_or_skip(test, "redis-py-venv", &["redis"], &["redis"])
}

/// The path of `tests/py/<script>`.
pub fn py_script(script: &str) -> String {
    format!("{}/tests/py/{script}", env!("CARGO_MANIFEST_DIR"))
}

/// Runs `tests/py/<script> PORT` with `python`; panics with its output and `log` (the
/// proxy's) unless it exits 0 and prints `all checks passed`. Returns its stdout.
pub fn run_py_check(
    python: &PathBuf,
    script: &str,
    port: u16,
    log: impl FnOnce() -> String,
) -> String {
    let out = Command::new(python)
        .arg(py_script(script))
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

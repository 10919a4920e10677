//! Job queues from PyPI, unmodified, through slotgate: RQ with a normal (not burst)
//! worker, and Celery with the Redis broker and result backend. They use redis-py's
//! default `pipeline()` (MULTI ... EXEC over keys of many slots), blocking pops over
//! several slots, and pub/sub; every job's result must come back right.

mod support;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use std::os::unix::process::CommandExt;

use support::{py_script, require_redis, tail_file, venv_or_skip, Cluster, Proxy};

/// The packages both tests use, in one venv.
const VENV: &str = "jobqueue-venv";
const PACKAGES: &[&str] = &["rq", "celery[redis]"];
const IMPORTS: &[&str] = &["rq", "celery", "redis"];

/// How long a worker has to stop after SIGTERM before it is killed.
const STOP_WITHIN: Duration = Duration::from_secs(15);

/// A worker process started by the test in a process group of its own (RQ forks a work
/// horse per job), stopped by its id: SIGTERM, then SIGKILL after [`STOP_WITHIN`].
struct WorkerProcess {
    child: Option<Child>,
    log: PathBuf,
}

impl WorkerProcess {
    fn start(program: &Path, args: &[&str], env: &[(&str, String)], log: PathBuf) -> WorkerProcess {
        let out = File::create(&log).expect("worker log");
        let err = out.try_clone().expect("worker log");
        let child = Command::new(program)
            .args(args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .env("PYTHONPATH", py_dir())
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", program.display()));
        WorkerProcess {
            child: Some(child),
            log,
        }
    }

    /// The last lines the worker logged.
    fn log(&self) -> String {
        tail_file(&self.log, 60)
    }

    /// Still running?
    fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    /// SIGTERM to its process group, then SIGKILL if it has not exited within
    /// [`STOP_WITHIN`]. Its exit status, and whether it exited on SIGTERM.
    fn stop(&mut self) -> Option<(ExitStatus, bool)> {
        let mut child = self.child.take()?;
        let group = format!("-{}", child.id());
        let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
        let deadline = Instant::now() + STOP_WITHIN;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                // Its work horses too, if any is left.
                let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
                return Some((status, true));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let status = child.wait().ok()?;
        Some((status, false))
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.stop();
            if std::thread::panicking() {
                eprintln!(
                    "===== worker log {} =====\n{}",
                    self.log.display(),
                    self.log()
                );
            }
        }
    }
}

fn py_dir() -> String {
    format!("{}/tests/py", env!("CARGO_MANIFEST_DIR"))
}

/// Runs `python tests/py/<script> args...` with `env`; panics with its output, the
/// worker's log and the proxy's unless it exits 0 (and prints `all checks passed` when
/// `checks`). Returns its stdout.
fn run_script(
    python: &Path,
    script: &str,
    args: &[&str],
    env: &[(&str, String)],
    checks: bool,
    worker: Option<&WorkerProcess>,
    proxy: &Proxy,
) -> String {
    let out = Command::new(python)
        .arg(py_script(script))
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env("PYTHONPATH", py_dir())
        .stdin(Stdio::null())
        .output()
        .expect("run python");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let ok = out.status.success() && (!checks || stdout.contains("all checks passed"));
    assert!(
        ok,
        "{script} {args:?} failed:\n{stdout}\n{stderr}\nworker log:\n{}\nproxy log:\n{}",
        worker.map(|w| w.log()).unwrap_or_default(),
        proxy.log()
    );
    stdout
}

#[test]
fn rq_runs_200_jobs_with_a_normal_worker() {
    require_redis();
    let test = "rq_runs_200_jobs_with_a_normal_worker";
    let Some(python) = venv_or_skip(test, VENV, PACKAGES, IMPORTS) else {
        return;
    };
    let cluster = Cluster::start(3, 0);
    let proxy = Proxy::start(&cluster.seeds(), &[]);
    let port = proxy.port().to_string();
    let out = run_script(
        &python,
        "rq_check.py",
        &[&port, "enqueue"],
        &[],
        false,
        None,
        &proxy,
    );
    print!("{out}");

    // A normal worker: it waits for jobs (a blocking pop) until it is told to stop.
    let url = format!("redis://127.0.0.1:{port}/0");
    let rq = python.with_file_name("rq");
    let log = proxy.dir().join("rq-worker.log");
    let mut worker = WorkerProcess::start(
        &rq,
        &["worker", "--url", &url, "--name", "slotgate-rq", "default"],
        &[],
        log,
    );
    let out = run_script(
        &python,
        "rq_check.py",
        &[&port, "wait"],
        &[],
        true,
        Some(&worker),
        &proxy,
    );
    print!("{out}");
    assert!(
        worker.running(),
        "the worker stopped by itself:\n{}",
        worker.log()
    );
    let (status, on_sigterm) = worker.stop().expect("the worker was running");
    println!("rq worker stopped ({status}) on SIGTERM: {on_sigterm}");
    let log = tail_file(&proxy.dir().join("rq-worker.log"), 400);
    assert!(
        !log.contains("Traceback"),
        "the worker logged an error:\n{log}"
    );
}

#[test]
fn celery_runs_200_tasks_with_the_redis_broker_and_result_backend() {
    require_redis();
    let test = "celery_runs_200_tasks_with_the_redis_broker_and_result_backend";
    let Some(python) = venv_or_skip(test, VENV, PACKAGES, IMPORTS) else {
        return;
    };
    let cluster = Cluster::start(3, 0);
    let proxy = Proxy::start(&cluster.seeds(), &[]);
    let url = format!("redis://127.0.0.1:{}/0", proxy.port());
    let env = [("SLOTGATE_URL", url)];
    let celery = python.with_file_name("celery");
    let log = proxy.dir().join("celery-worker.log");
    let mut worker = WorkerProcess::start(
        &celery,
        &[
            "-A",
            "celery_app",
            "worker",
            "--pool",
            "solo",
            "--loglevel",
            "INFO",
            "--hostname",
            "slotgate-celery@%h",
            // Their queues expire, which kombu binds with a script over two slots.
            "--without-mingle",
            "--without-gossip",
        ],
        &env,
        log,
    );
    let out = run_script(
        &python,
        "celery_check.py",
        &[],
        &env,
        true,
        Some(&worker),
        &proxy,
    );
    print!("{out}");
    assert!(
        worker.running(),
        "the worker stopped by itself:\n{}",
        worker.log()
    );
    let (status, on_sigterm) = worker.stop().expect("the worker was running");
    println!("celery worker stopped ({status}) on SIGTERM: {on_sigterm}");
}

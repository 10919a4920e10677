//! Job queues from PyPI, unmodified, through slotgate: RQ with a normal (not burst)
//! worker, and Celery with the Redis broker and result backend. They use redis-py's
//! default `pipeline()` (MULTI ... EXEC over keys of many slots), blocking pops over
//! several slots, and pub/sub; every job's result must come back right.

mod support;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use std::os::unix::process::CommandExt;

use redis::Commands;
use support::{
    cluster_and_proxy, info_counter, keys_on_masters, py_script, require_redis, tail_file,
    venv_or_skip, wait_until, Cluster, Proxy, RawClient,
};

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

    /// The end of a test: the worker ran until now, stops on [`stop`](Self::stop) and
    /// logged no error. The last `lines` lines of its log.
    fn stop_after_work(&mut self, name: &str, lines: usize) -> String {
        assert!(
            self.running(),
            "the worker stopped by itself:\n{}",
            self.log()
        );
        let (status, on_sigterm) = self.stop().expect("the worker was running");
        println!("{name} worker stopped ({status}) on SIGTERM: {on_sigterm}");
        let log = tail_file(&self.log, lines);
        assert!(
            !log.contains("Traceback"),
            "the worker logged an error:\n{log}"
        );
        log
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
    worker.stop_after_work("rq", 400);
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
    let log = worker.stop_after_work("celery", 2000);
    let done = log.matches("succeeded in").count();
    assert_eq!(done, 200, "tasks the worker logged as done:\n{log}");
}

#[test]
fn list_moves_across_slots_move_the_element_or_leave_it() {
    let (cluster, proxy) = cluster_and_proxy(3, 0, &[]);
    let mut raw = RawClient::connect(proxy.port());
    let mut con = proxy.client();
    let [src, dst, other] = keys_on_masters(&cluster, ["mv0", "mv1", "mv2"]);
    let _: () = con.rpush(&src, &["a", "b", "c"]).unwrap();

    let replies = raw.pipeline(&[
        &format!("LMOVE {src} {dst} LEFT RIGHT"),
        &format!("RPOPLPUSH {src} {dst}"),
        &format!("LRANGE {dst} 0 -1"),
        &format!("LMOVE {other} {dst} LEFT LEFT"),
    ]);
    assert_eq!(
        replies,
        [
            "$1\r\na\r\n",
            "$1\r\nc\r\n",
            "*2\r\n$1\r\nc\r\n$1\r\na\r\n",
            "$-1\r\n"
        ]
    );
    // A destination of the wrong type: Redis's error, and the element stays where it was.
    let _: () = con.set(&other, "string").unwrap();
    let replies = raw.pipeline(&[
        &format!("LMOVE {src} {other} RIGHT LEFT"),
        &format!("LRANGE {src} 0 -1"),
    ]);
    assert!(replies[0].starts_with("-WRONGTYPE"), "{replies:?}");
    assert_eq!(replies[1], "*1\r\n$1\r\nb\r\n");

    // Blocking: the element pushed by another client is moved, and answered.
    let _: () = redis::cmd("DEL")
        .arg(&src)
        .arg(&dst)
        .query(&mut con)
        .unwrap();
    raw.write(format!("BLMOVE {src} {dst} LEFT RIGHT 10\r\n").as_bytes());
    wait_until("the client is blocked", || {
        info_counter(&proxy, "blocked_clients") == 1
    });
    let _: () = con.rpush(&src, "job").unwrap();
    assert_eq!(
        raw.read_replies(1, Duration::from_secs(10)),
        ["$3\r\njob\r\n"]
    );
    let moved: Vec<String> = con.lrange(&dst, 0, -1).unwrap();
    assert_eq!(moved, ["job"]);
    // Its timeout: nil, in RESP2 and RESP3.
    let replies = raw.pipeline(&[&format!("BRPOPLPUSH {src} {dst} 0.2")]);
    assert_eq!(replies, ["*-1\r\n"]);
    let replies = raw.pipeline(&["HELLO 3", &format!("BLMOVE {src} {dst} LEFT LEFT 0.2")]);
    assert_eq!(replies[1], "_\r\n");
}

#[test]
fn a_pop_over_several_slots_serves_the_keys_in_order_and_loses_nothing() {
    let (cluster, proxy) = cluster_and_proxy(3, 0, &[]);
    let mut raw = RawClient::connect(proxy.port());
    let mut con = proxy.client();
    let [k1, k2, k3] = keys_on_masters(&cluster, ["pop0", "pop1", "pop2"]);
    let pop = format!("BRPOP {k1} {k2} {k3} 5");

    // Elements in the second and third lists: the second's first, as Redis does.
    let _: () = con.lpush(&k2, &["x1", "x2"]).unwrap();
    let _: () = con.lpush(&k3, "y").unwrap();
    let replies = raw.pipeline(&[&pop, &pop, &pop]);
    assert_eq!(
        replies,
        [
            format!("*2\r\n${}\r\n{k2}\r\n$2\r\nx1\r\n", k2.len()),
            format!("*2\r\n${}\r\n{k2}\r\n$2\r\nx2\r\n", k2.len()),
            format!("*2\r\n${}\r\n{k3}\r\n$1\r\ny\r\n", k3.len()),
        ]
    );
    // Blocked, then an element arrives in the last list.
    raw.write(format!("BLPOP {k1} {k2} {k3} 0\r\n").as_bytes());
    wait_until("the client is blocked", || {
        info_counter(&proxy, "blocked_clients") == 1
    });
    let _: () = con.rpush(&k3, "late").unwrap();
    assert_eq!(
        raw.read_replies(1, Duration::from_secs(10)),
        [format!("*2\r\n${}\r\n{k3}\r\n$4\r\nlate\r\n", k3.len())]
    );
    // The timeout: nil.
    assert_eq!(
        raw.pipeline(&[&format!("BRPOP {k1} {k2} {k3} 0.3")]),
        ["*-1\r\n"]
    );

    // A client that leaves while blocked pops nothing.
    let mut gone = RawClient::connect(proxy.port());
    gone.write(format!("BRPOP {k1} {k2} 0\r\n").as_bytes());
    wait_until("the client is blocked", || {
        info_counter(&proxy, "blocked_clients") == 1
    });
    drop(gone);
    wait_until("the client's pinned connection is closed", || {
        info_counter(&proxy, "blocked_clients") == 0
    });
    let _: () = con.lpush(&k2, "kept").unwrap();
    // Another client's pop takes it: no pop of the client that left was left waiting.
    assert_eq!(
        raw.pipeline(&[&format!("BRPOP {k2} {k1} 1")]),
        [format!("*2\r\n${}\r\n{k2}\r\n$4\r\nkept\r\n", k2.len())]
    );

    // 100 elements pushed over three lists while 4 clients pop: each popped exactly once.
    let popped = Arc::new(AtomicUsize::new(0));
    let consumers: Vec<_> = (0..4)
        .map(|_| {
            let mut raw = RawClient::connect(proxy.port());
            let (k1, k2, k3) = (k1.clone(), k2.clone(), k3.clone());
            let popped = popped.clone();
            std::thread::spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(60);
                let mut got = Vec::new();
                while popped.load(SeqCst) < 100 && Instant::now() < deadline {
                    let reply = raw.pipeline(&[&format!("BRPOP {k1} {k2} {k3} 0.5")]);
                    if reply[0] != "*-1\r\n" {
                        got.push(reply[0].rsplit("\r\n").nth(1).unwrap().to_string());
                        popped.fetch_add(1, SeqCst);
                    }
                }
                got
            })
        })
        .collect();
    for i in 0..100 {
        let key = [&k1, &k2, &k3][i % 3];
        let _: () = con.lpush(key, format!("e{i}")).unwrap();
    }
    let mut all: Vec<String> = consumers
        .into_iter()
        .flat_map(|c| c.join().unwrap())
        .collect();
    all.sort();
    let mut want: Vec<String> = (0..100).map(|i| format!("e{i}")).collect();
    want.sort();
    assert_eq!(all, want);
}

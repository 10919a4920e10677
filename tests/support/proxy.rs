//! The `slotgate` binary as a child process of the test.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::sleep;
use std::time::{Duration, Instant};

use super::tail_file;

/// How long the proxy may take to print its listening line.
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// Read/write timeout of [`Proxy::client`] connections.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);
const LOG_TAIL_LINES: usize = 50;
const READY_PREFIX: &str = "slotgate listening on ";

/// The binary the tests start: this crate's, or `SLOTGATE_TEST_BIN` when set (to show
/// that a new test fails against an older build).
pub fn binary() -> PathBuf {
    std::env::var_os("SLOTGATE_TEST_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_slotgate")))
}

/// A running slotgate. Dropping it SIGKILLs and reaps the process; if the thread is
/// panicking it first prints the log tail to stderr.
pub struct Proxy {
    /// `None` once reaped.
    child: Option<Child>,
    pid: u32,
    port: u16,
    log_path: PathBuf,
    /// stdout lines after the listening line, collected by the reader thread (which
    /// ends when the proxy closes stdout).
    stdout_rest: Arc<Mutex<String>>,
    /// Holds `slotgate.log`.
    tmp: tempfile::TempDir,
}

impl Proxy {
    /// Starts this crate's `slotgate` binary with
    /// `--listen 127.0.0.1:0 --seeds <seeds> <extra_args...>` and waits for it to say
    /// where it listens.
    pub fn start(seeds: &str, extra_args: &[&str]) -> Proxy {
        Self::start_bin(&binary(), seeds, extra_args)
    }

    /// [`Proxy::start`] with an explicit binary.
    pub fn start_bin(bin: &Path, seeds: &str, extra_args: &[&str]) -> Proxy {
        let mut args = vec!["--listen", "127.0.0.1:0", "--seeds", seeds];
        args.extend_from_slice(extra_args);
        Self::start_bin_args(bin, &args)
    }

    /// [`Proxy::start`] with a config file holding `toml` (the seeds come from the
    /// command line, which wins over the file).
    pub fn start_with_config(seeds: &str, toml: &str) -> Proxy {
        Self::start(seeds, &["--config", &super::write_config(toml)])
    }

    /// Starts this crate's `slotgate` binary with exactly `args` (e.g. `--config f.toml`);
    /// they must make it listen on 127.0.0.1.
    pub fn start_args(args: &[&str]) -> Proxy {
        Self::start_bin_args(&binary(), args)
    }

    /// Spawns `bin args...` (stdout piped, stderr to `slotgate.log` in a temp dir,
    /// `RUST_LOG=info` unless set) and reads stdout until the line
    /// `slotgate listening on 127.0.0.1:PORT`. Panics with the log on early exit or
    /// after 20 s.
    pub fn start_bin_args(bin: &Path, args: &[&str]) -> Proxy {
        let tmp = tempfile::Builder::new()
            .prefix("slotgate-proxy-")
            .tempdir()
            .expect("create temp dir for the proxy");
        let log_path = tmp.path().join("slotgate.log");
        let log = File::create(&log_path).expect("create slotgate.log");
        let mut cmd = Command::new(bin);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log);
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "info");
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {} {}: {e}", bin.display(), args.join(" ")));
        let stdout = child.stdout.take().expect("piped stdout");

        // The reader thread sends the port once, then keeps draining stdout into
        // `stdout_rest` so the proxy never blocks on a full pipe; it ends at EOF.
        // Dropping `ready_tx` (EOF before the line) tells the waiter the proxy exited.
        let stdout_rest = Arc::new(Mutex::new(String::new()));
        let rest = Arc::clone(&stdout_rest);
        let (ready_tx, ready_rx) = mpsc::channel::<u16>();
        std::thread::spawn(move || {
            let mut ready_tx = Some(ready_tx);
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let port = line
                    .trim()
                    .strip_prefix(READY_PREFIX)
                    .and_then(|addr| addr.rsplit(':').next())
                    .and_then(|p| p.parse::<u16>().ok());
                match (port, ready_tx.take()) {
                    (Some(port), Some(tx)) => {
                        let _ = tx.send(port);
                    }
                    (_, tx) => {
                        ready_tx = tx;
                        let mut rest = rest.lock().unwrap_or_else(|e| e.into_inner());
                        rest.push_str(&line);
                        rest.push('\n');
                    }
                }
            }
        });

        let what = format!("{} {}", bin.display(), args.join(" "));
        let port = match ready_rx.recv_timeout(READY_TIMEOUT) {
            Ok(port) => port,
            Err(e) => {
                let exited = child.try_wait().ok().flatten();
                if exited.is_none() {
                    let _ = child.kill();
                }
                let status = child.wait().map(|s| s.to_string()).unwrap_or_default();
                let reason = match (e, exited) {
                    (mpsc::RecvTimeoutError::Timeout, None) => {
                        format!(
                            "printed no `{READY_PREFIX}...` line within {READY_TIMEOUT:?} (killed)"
                        )
                    }
                    _ => format!("exited ({status}) before printing `{READY_PREFIX}...`"),
                };
                let stdout = stdout_rest.lock().map(|s| s.clone()).unwrap_or_default();
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                panic!("slotgate ({what}) {reason}\n--- stdout ---\n{stdout}--- log ---\n{log}");
            }
        };
        Proxy {
            pid: child.id(),
            child: Some(child),
            port,
            log_path,
            stdout_rest,
            tmp,
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `"127.0.0.1:PORT"`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// A plain (non-cluster) `redis` connection to the proxy with 10 s read/write timeouts.
    pub fn client(&self) -> redis::Connection {
        self.client_in("resp2")
    }

    /// [`Proxy::client`] speaking `protocol`: `"resp2"`, or `"resp3"` (`HELLO 3`).
    pub fn client_in(&self, protocol: &str) -> redis::Connection {
        let url = format!("redis://{}/?protocol={protocol}", self.addr());
        let client = redis::Client::open(url).expect("redis client for the proxy");
        let con = client
            .get_connection_with_timeout(CLIENT_TIMEOUT)
            .unwrap_or_else(|e| panic!("connect to slotgate at {}: {e}", self.addr()));
        con.set_read_timeout(Some(CLIENT_TIMEOUT))
            .expect("set read timeout");
        con.set_write_timeout(Some(CLIENT_TIMEOUT))
            .expect("set write timeout");
        con
    }

    /// Runs `redis-cli -p PORT args...` against the proxy; stdout, trimmed.
    pub fn cli(&self, args: &[&str]) -> String {
        super::cluster::redis_cli(self.port, args)
    }

    /// Everything slotgate logged so far (stderr), followed by any stdout lines after
    /// the listening line.
    pub fn log(&self) -> String {
        let mut log = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let rest = self
            .stdout_rest
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default();
        if !rest.is_empty() {
            log.push_str("--- stdout ---\n");
            log.push_str(&rest);
        }
        log
    }

    /// `http://ADDR` of the admin port, from the `slotgate admin on http://ADDR` line the
    /// proxy prints before it listens (start it with `--admin 127.0.0.1:0`); `None` when
    /// it runs without one.
    pub fn admin_url(&self) -> Option<String> {
        let rest = self.stdout_rest.lock().ok()?;
        rest.lines()
            .find_map(|l| l.trim().strip_prefix("slotgate admin on "))
            .map(str::to_string)
    }

    /// The proxy's resident memory now, in bytes (`VmRSS` from /proc).
    pub fn rss(&self) -> u64 {
        super::rss_of(self.pid)
    }

    /// Path of the stderr log file.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// A temp dir that lives as long as the proxy (for config files and the like).
    pub fn dir(&self) -> &Path {
        self.tmp.path()
    }

    /// Sends SIGTERM and waits up to `timeout` for a graceful exit; `None` if it is
    /// still running then (it is SIGKILLed on drop). Calling it again after an exit
    /// returns `None`.
    pub fn terminate(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            sleep(Duration::from_millis(20));
        }
    }

    /// `Some(status)` if the proxy has exited (e.g. it crashed), `None` while it runs.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        let status = self.child.as_mut()?.try_wait().ok().flatten();
        if status.is_some() {
            self.child = None;
        }
        status
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "===== slotgate on {} (log {}): last {LOG_TAIL_LINES} lines =====\n{}",
                self.addr(),
                self.log_path.display(),
                tail_file(&self.log_path, LOG_TAIL_LINES)
            );
        }
    }
}

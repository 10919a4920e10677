//! A standalone (non-cluster) `redis-server` on a free loopback port: what a client of
//! one plain server sees, to compare slotgate's replies with.

use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::free_port;

pub struct Standalone {
    pub port: u16,
    child: Child,
    dir: tempfile::TempDir,
}

impl Standalone {
    /// Starts `redis-server` (no persistence) and waits until it accepts connections.
    pub fn start() -> Standalone {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .args(["--appendonly", "no", "--logfile", "redis.log"])
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        let server = Standalone { port, child, dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "standalone redis-server on {port} did not start: {}",
                super::tail_file(&server.dir.path().join("redis.log"), 20)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    pub fn client(&self) -> redis::Connection {
        redis::Client::open(format!("redis://127.0.0.1:{}/", self.port))
            .and_then(|c| c.get_connection())
            .expect("connect to the standalone server")
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Standalone {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

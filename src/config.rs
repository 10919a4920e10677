//! Configuration: the TOML file (`config/slotgate.toml` documents every key) with
//! command-line flags on top. Every bad value is an error naming its key.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use serde::Deserialize;
use tracing_subscriber::EnvFilter;

use crate::cluster::NodeAddr;
use crate::protocol::scan::Limits;

/// Command-line flags. Each overrides the same key of the config file.
#[derive(Parser, Debug, Default)]
#[command(
    name = "slotgate",
    version,
    about = "A Redis Cluster proxy: one port, any plain Redis client"
)]
pub struct Cli {
    /// Address to accept clients on [default: 127.0.0.1:6380]
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Cluster nodes to learn the topology from, comma-separated host:port; any may be down
    #[arg(long, value_name = "HOST:PORT,...", value_delimiter = ',')]
    pub seeds: Option<Vec<String>>,
    /// TOML configuration file
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Log filter: off, error, warn, info, debug, trace, or tracing directives such as
    /// info,slotgate=debug [default: RUST_LOG, else info]
    #[arg(long, value_name = "LEVEL")]
    pub log_level: Option<String>,
    /// Log format: text or json [default: text]
    #[arg(long, value_name = "FORMAT")]
    pub log_format: Option<String>,
    /// Worker threads; 0 means one per CPU core, less one per cluster node on this
    /// host's loopback (at least 1) [default: 0]
    #[arg(long, value_name = "N")]
    pub workers: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config key `{key}`: {message}")]
    Invalid { key: &'static str, message: String },
}

/// `limits.max_output_buffer` unless configured: a client that reads nothing while
/// this much waits for it is closed.
pub const DEFAULT_MAX_OUTPUT_BUFFER: u64 = 64 * 1024 * 1024;
/// `limits.max_output_total` unless configured.
pub const DEFAULT_MAX_OUTPUT_TOTAL: u64 = 512 * 1024 * 1024;
/// `limits.reply_window` unless configured.
pub const DEFAULT_REPLY_WINDOW: u64 = 4 * 1024 * 1024;

fn invalid(key: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        message: message.into(),
    }
}

#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<String>,
    seeds: Option<Vec<String>>,
    log_level: Option<String>,
    log_format: Option<String>,
    max_clients: Option<u64>,
    workers: Option<u64>,
    #[serde(default)]
    backend: BackendFile,
    #[serde(default)]
    cluster: ClusterFile,
    #[serde(default)]
    limits: LimitsFile,
    #[serde(default)]
    address_map: HashMap<String, String>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
struct BackendFile {
    connections_per_node: Option<u64>,
    max_pinned: Option<u64>,
    max_pinned_per_node: Option<u64>,
    pinned_wait_ms: Option<u64>,
    timeout_ms: Option<u64>,
    connect_timeout_ms: Option<u64>,
    username: Option<String>,
    password: Option<String>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
struct ClusterFile {
    refresh_interval_ms: Option<u64>,
    redirect_budget: Option<u64>,
    config_commands: Option<bool>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
struct LimitsFile {
    max_bulk_len: Option<u64>,
    max_pipeline: Option<u64>,
    max_output_buffer: Option<u64>,
    max_output_total: Option<u64>,
    reply_window: Option<u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// The validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    pub listen: SocketAddr,
    pub seeds: Vec<NodeAddr>,
    /// A filter [`log_filter`] accepts; `None`: neither `--log-level` nor the file sets
    /// one (the binary then uses `RUST_LOG`, else `info`).
    pub log_level: Option<String>,
    pub log_format: LogFormat,
    pub max_clients: usize,
    /// Worker threads, each with its own event loop, listener socket and connections;
    /// `None`: chosen at start-up from the cores and the nodes (`server::auto_workers`).
    pub workers: Option<usize>,
    pub backend: BackendConfig,
    /// Periodic topology refresh, on top of the refreshes redirects trigger.
    pub refresh_interval: Duration,
    /// How many redirects one request may follow before the client gets an error.
    pub redirect_budget: u32,
    /// `CONFIG SET` and `CONFIG RESETSTAT` go to every node; false refuses them.
    pub config_commands: bool,
    /// Replies a client may have outstanding before the proxy stops reading from it.
    pub max_pipeline: usize,
    /// Bytes of replies slotgate may hold for a client that does not read them (beyond
    /// the one reply being written) before it closes that client; 0: no limit.
    pub max_output_buffer: usize,
    /// Bytes of replies slotgate may hold for all clients together (as Redis's
    /// `maxmemory-clients`); past it the client holding the most is closed. 0: no limit.
    pub max_output_total: usize,
    /// Bytes of replies one client may have on their way or unwritten before its next
    /// requests wait in slotgate (reply sizes estimated from its recent replies): the
    /// per-client flow control that keeps a big pipeline from crowding out others.
    pub reply_window: usize,
    pub limits: Limits,
    /// Announced address → address to dial (Docker, Kubernetes, NAT).
    pub address_map: HashMap<NodeAddr, NodeAddr>,
}

#[derive(Clone, Debug)]
pub struct BackendConfig {
    pub connections_per_node: usize,
    /// Connections pinned to one client at a time (blocking commands, transactions), in all.
    pub max_pinned: usize,
    /// The same, to any one node.
    pub max_pinned_per_node: usize,
    /// How long a request that needs a pinned connection waits for one to free when a
    /// cap is reached, before it fails; zero: it fails at once.
    pub pinned_wait: Duration,
    /// A request with no reply for this long fails, and so does its connection.
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub username: Option<String>,
    pub password: Option<String>,
}

impl Default for BackendConfig {
    fn default() -> Self {
        BackendConfig {
            connections_per_node: 1,
            max_pinned: 1024,
            max_pinned_per_node: 1024,
            pinned_wait: Duration::from_secs(3),
            timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(1),
            username: None,
            password: None,
        }
    }
}

impl Config {
    /// The address to dial for a node announced as `addr`: its `[address_map]` entry, or
    /// `addr` itself.
    pub fn dial_addr<'a>(&'a self, addr: &'a NodeAddr) -> &'a NodeAddr {
        self.address_map.get(addr).unwrap_or(addr)
    }

    /// Read the file named by `--config` (if any) and apply the flags on top.
    pub fn load(cli: &Cli) -> Result<Config, ConfigError> {
        let file = match &cli.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        Config::build(cli, file)
    }

    /// Parse a config file's text (flags none); for tests and `--check`-style use.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        let file = parse_file(Path::new("<inline>"), text)?;
        Config::build(&Cli::default(), file)
    }

    fn build(cli: &Cli, file: FileConfig) -> Result<Config, ConfigError> {
        let listen_text = cli
            .listen
            .clone()
            .or(file.listen)
            .unwrap_or_else(|| "127.0.0.1:6380".to_string());
        let listen: SocketAddr = listen_text.parse().map_err(|_| {
            invalid(
                "listen",
                format!("`{listen_text}` is not an ip:port address"),
            )
        })?;

        let seed_texts = cli.seeds.clone().or(file.seeds).unwrap_or_default();
        let mut seeds = Vec::new();
        for text in seed_texts
            .iter()
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
        {
            seeds.push(
                NodeAddr::parse(text)
                    .ok_or_else(|| invalid("seeds", format!("`{text}` is not host:port")))?,
            );
        }
        if seeds.is_empty() {
            return Err(invalid(
                "seeds",
                "at least one cluster node is needed (e.g. --seeds 127.0.0.1:7001)",
            ));
        }

        let log_level = cli.log_level.clone().or(file.log_level);
        if let Some(filter) = &log_level {
            log_filter(filter).map_err(|e| invalid("log_level", e))?;
        }
        let log_format = match cli
            .log_format
            .clone()
            .or(file.log_format)
            .as_deref()
            .unwrap_or("text")
        {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => {
                return Err(invalid(
                    "log_format",
                    format!("`{other}`: use text or json"),
                ))
            }
        };

        let max_clients = positive("max_clients", file.max_clients, 10_000)?;
        let workers = match cli.workers.or(file.workers).unwrap_or(0) {
            0 => None,
            n if n > 256 => return Err(invalid("workers", "at most 256")),
            n => Some(n as usize),
        };
        let max_pinned = positive("backend.max_pinned", file.backend.max_pinned, 1024)?;
        let pinned_wait_ms = file.backend.pinned_wait_ms.unwrap_or(3_000);
        if pinned_wait_ms > 3_600_000 {
            return Err(invalid(
                "backend.pinned_wait_ms",
                "at most 3600000 (one hour)",
            ));
        }
        let backend = BackendConfig {
            connections_per_node: positive(
                "backend.connections_per_node",
                file.backend.connections_per_node,
                1,
            )?,
            max_pinned,
            max_pinned_per_node: positive(
                "backend.max_pinned_per_node",
                file.backend.max_pinned_per_node,
                max_pinned,
            )?,
            pinned_wait: Duration::from_millis(pinned_wait_ms),
            timeout: millis("backend.timeout_ms", file.backend.timeout_ms, 5_000)?,
            connect_timeout: millis(
                "backend.connect_timeout_ms",
                file.backend.connect_timeout_ms,
                1_000,
            )?,
            username: file.backend.username.filter(|u| !u.is_empty()),
            password: file.backend.password.filter(|p| !p.is_empty()),
        };
        if backend.connections_per_node > 64 {
            return Err(invalid("backend.connections_per_node", "at most 64"));
        }
        if backend.username.is_some() && backend.password.is_none() {
            return Err(invalid("backend.password", "a username needs a password"));
        }

        let refresh_interval = millis(
            "cluster.refresh_interval_ms",
            file.cluster.refresh_interval_ms,
            10_000,
        )?;
        let redirect_budget = positive("cluster.redirect_budget", file.cluster.redirect_budget, 5)?;
        if redirect_budget > 100 {
            return Err(invalid("cluster.redirect_budget", "at most 100"));
        }

        let mut limits = Limits::default();
        if let Some(n) = file.limits.max_bulk_len {
            if n == 0 || n > 512 * 1024 * 1024 {
                return Err(invalid(
                    "limits.max_bulk_len",
                    "between 1 and 536870912 (512 MiB, Redis's own maximum)",
                ));
            }
            limits.max_bulk_len = n as usize;
        }
        let max_pipeline = positive("limits.max_pipeline", file.limits.max_pipeline, 16_384)?;
        let max_output_buffer = file
            .limits
            .max_output_buffer
            .unwrap_or(DEFAULT_MAX_OUTPUT_BUFFER);
        if max_output_buffer > 0 && max_output_buffer < 64 * 1024 {
            return Err(invalid(
                "limits.max_output_buffer",
                "0 (no limit) or at least 65536 bytes",
            ));
        }
        let max_output_total = file
            .limits
            .max_output_total
            .unwrap_or(DEFAULT_MAX_OUTPUT_TOTAL);
        if max_output_total > 0 && max_output_total < 1024 * 1024 {
            return Err(invalid(
                "limits.max_output_total",
                "0 (no limit) or at least 1048576 bytes",
            ));
        }
        let reply_window = file.limits.reply_window.unwrap_or(DEFAULT_REPLY_WINDOW);
        if !(64 * 1024..=1 << 30).contains(&reply_window) {
            return Err(invalid(
                "limits.reply_window",
                "between 65536 and 1073741824 bytes",
            ));
        }

        let mut address_map = HashMap::new();
        for (from, to) in &file.address_map {
            let f = NodeAddr::parse(from)
                .ok_or_else(|| invalid("address_map", format!("`{from}` is not host:port")))?;
            let t = NodeAddr::parse(to)
                .ok_or_else(|| invalid("address_map", format!("`{to}` is not host:port")))?;
            address_map.insert(f, t);
        }

        Ok(Config {
            listen,
            seeds,
            log_level,
            log_format,
            max_clients,
            workers,
            backend,
            refresh_interval,
            redirect_budget: redirect_budget as u32,
            config_commands: file.cluster.config_commands.unwrap_or(true),
            max_pipeline,
            max_output_buffer: usize::try_from(max_output_buffer).unwrap_or(usize::MAX),
            max_output_total: usize::try_from(max_output_total).unwrap_or(usize::MAX),
            reply_window: reply_window as usize,
            limits,
            address_map,
        })
    }
}

/// The levels a filter may name, matched in any case.
const LOG_LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];

/// The tracing filter `text` (`log_level`, `--log-level` or `RUST_LOG`), or why it is
/// not one. Stricter than tracing's parser, which takes a misspelt level (`inof`) for a
/// target and so logs next to nothing: a bare word must be a level, and so must the
/// part after `=` of each `target[span]=level` directive. Spaces around commas are
/// dropped.
pub fn log_filter(text: &str) -> Result<EnvFilter, String> {
    let directives: Vec<&str> = text
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .collect();
    if directives.is_empty() {
        return Err("empty: name a level (off logs nothing)".to_string());
    }
    let is_level = |word: &str| LOG_LEVELS.iter().any(|l| l.eq_ignore_ascii_case(word));
    for directive in &directives {
        // Span fields may hold `=`: the level's `=` is the first after the span's `]`.
        let head = directive.rfind(']').map_or(0, |i| i + 1);
        match directive[head..].split_once('=') {
            None if head == 0 && is_level(directive) => {}
            None if head == 0 => {
                return Err(format!(
                    "`{directive}` is not a level: use off, error, warn, info, debug or \
                     trace, or target=level directives such as slotgate=debug"
                ))
            }
            None => return Err(format!("`{directive}` has no level: add =LEVEL")),
            Some((_, level)) if is_level(level) => {}
            Some((_, level)) => {
                return Err(format!(
                    "`{directive}`: `{level}` is not a level (off, error, warn, info, \
                     debug, trace)"
                ))
            }
        }
    }
    let text = directives.join(",");
    EnvFilter::try_new(&text).map_err(|e| format!("`{text}`: {e}"))
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse_file(path, &text)
}

fn parse_file(path: &Path, text: &str) -> Result<FileConfig, ConfigError> {
    toml::from_str(text).map_err(|e| ConfigError::Parse {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

fn positive(key: &'static str, value: Option<u64>, default: usize) -> Result<usize, ConfigError> {
    match value {
        None => Ok(default),
        Some(0) => Err(invalid(key, "must be greater than 0")),
        Some(n) => usize::try_from(n).map_err(|_| invalid(key, "too large")),
    }
}

fn millis(key: &'static str, value: Option<u64>, default: u64) -> Result<Duration, ConfigError> {
    match value {
        None => Ok(Duration::from_millis(default)),
        Some(0) => Err(invalid(key, "must be greater than 0")),
        Some(n) if n > 3_600_000 => Err(invalid(key, "at most 3600000 (one hour)")),
        Some(n) => Ok(Duration::from_millis(n)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pinned_connection_caps_and_wait() {
        let c = Config::from_toml("seeds = [\"127.0.0.1:7001\"]").unwrap();
        assert_eq!(c.backend.max_pinned, 1024);
        assert_eq!(c.backend.max_pinned_per_node, 1024);
        assert_eq!(c.backend.pinned_wait, Duration::from_secs(3));
        let c = Config::from_toml(
            "seeds = [\"127.0.0.1:7001\"]\n[backend]\nmax_pinned = 50\npinned_wait_ms = 0\n",
        )
        .unwrap();
        assert_eq!(c.backend.max_pinned_per_node, 50, "the total unless set");
        assert_eq!(c.backend.pinned_wait, Duration::ZERO, "0 fails at once");
        let c =
            Config::from_toml("seeds = [\"127.0.0.1:7001\"]\n[backend]\nmax_pinned_per_node = 7\n")
                .unwrap();
        assert_eq!(c.backend.max_pinned_per_node, 7);
        for (text, key) in [
            ("max_pinned_per_node = 0", "backend.max_pinned_per_node"),
            ("pinned_wait_ms = 3600001", "backend.pinned_wait_ms"),
        ] {
            let err = Config::from_toml(&format!(
                "seeds = [\"127.0.0.1:7001\"]\n[backend]\n{text}\n"
            ))
            .unwrap_err();
            assert!(err.to_string().contains(key), "{err}");
        }
    }

    #[test]
    fn defaults_and_overrides() {
        let c = Config::from_toml("seeds = [\"127.0.0.1:7001\"]").unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:6380");
        assert_eq!(c.backend.timeout, Duration::from_secs(5));
        let cli = Cli {
            listen: Some("127.0.0.1:0".into()),
            ..Cli::default()
        };
        let file = parse_file(
            Path::new("x"),
            "seeds = [\"a:1\"]\nlisten = \"127.0.0.1:9\"",
        )
        .unwrap();
        assert_eq!(Config::build(&cli, file).unwrap().listen.port(), 0);
    }

    #[test]
    fn errors_name_the_key() {
        let e = Config::from_toml("seeds = [\"x\"]")
            .unwrap_err()
            .to_string();
        assert!(e.contains("`seeds`"), "{e}");
        let e = Config::from_toml("seeds = [\"a:1\"]\n[backend]\ntimeout_ms = 0")
            .unwrap_err()
            .to_string();
        assert!(e.contains("backend.timeout_ms"), "{e}");
        let e = Config::from_toml("seeds = [\"a:1\"]\nbogus = 1")
            .unwrap_err()
            .to_string();
        assert!(e.contains("bogus"), "{e}");
        let e = Config::from_toml("").unwrap_err().to_string();
        assert!(e.contains("`seeds`"), "{e}");
        let e = Config::from_toml("seeds = [\"a:1\"]\nlisten = \"nope\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("`listen`"), "{e}");
        let e = Config::from_toml("seeds = [\"a:1\"]\n[limits]\nmax_output_buffer = 100")
            .unwrap_err()
            .to_string();
        assert!(e.contains("limits.max_output_buffer"), "{e}");
        let e = Config::from_toml("seeds = [\"a:1\"]\n[limits]\nreply_window = 10")
            .unwrap_err()
            .to_string();
        assert!(e.contains("limits.reply_window"), "{e}");
        let e = Config::from_toml("seeds = [\"a:1\"]\n[limits]\nmax_output_total = 10")
            .unwrap_err()
            .to_string();
        assert!(e.contains("limits.max_output_total"), "{e}");
        let c = Config::from_toml("seeds = [\"a:1\"]").unwrap();
        assert_eq!(c.max_output_buffer, 64 << 20, "bounded unless configured");
        assert_eq!(c.max_output_total, 512 << 20);
        assert_eq!(c.reply_window, 4 << 20);
        let c = Config::from_toml("seeds = [\"a:1\"]\n[limits]\nmax_output_buffer = 0").unwrap();
        assert_eq!(c.max_output_buffer, 0, "0 switches the limit off");
    }

    #[test]
    fn log_filters_are_levels_or_directives_with_levels() {
        for good in [
            "off",
            "error",
            "warn",
            "info",
            "debug",
            "trace",
            "INFO",
            "Debug",
            "slotgate=debug",
            "info,slotgate::backend=trace",
            "warn,mio=off",
            "info, slotgate=DEBUG,",
            "[refresh]=debug",
            "slotgate[refresh{node=a}]=trace",
        ] {
            assert!(
                log_filter(good).is_ok(),
                "{good:?}: {:?}",
                log_filter(good).err()
            );
        }
        for (bad, says) in [
            ("inof", "`inof` is not a level"),
            ("slotgate", "`slotgate` is not a level"),
            ("info,slotgate", "`slotgate` is not a level"),
            ("slotgate=verbose", "`verbose` is not a level"),
            ("slotgate=", "`` is not a level"),
            ("info=", "`` is not a level"),
            ("slotgate=3", "`3` is not a level"),
            ("warn,mio=of", "`of` is not a level"),
            ("slotgate[refresh]", "has no level"),
            ("", "empty"),
            (" , ", "empty"),
            ("slotgate[refresh=debug", "slotgate[refresh=debug"),
        ] {
            match log_filter(bad) {
                Ok(_) => panic!("{bad:?} accepted"),
                Err(e) => assert!(e.contains(says), "{bad:?}: {e}"),
            }
        }
    }

    #[test]
    fn a_bad_log_level_names_its_key() {
        let e = Config::from_toml("seeds = [\"a:1\"]\nlog_level = \"inof\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("`log_level`") && e.contains("inof"), "{e}");
        let cli = Cli {
            log_level: Some("slotgate=verbose".into()),
            ..Cli::default()
        };
        let file = parse_file(Path::new("x"), "seeds = [\"a:1\"]\nlog_level = \"info\"").unwrap();
        let e = Config::build(&cli, file).unwrap_err().to_string();
        assert!(e.contains("`log_level`") && e.contains("verbose"), "{e}");
        let c = Config::from_toml("seeds = [\"a:1\"]").unwrap();
        assert_eq!(c.log_level, None, "unset, so RUST_LOG can apply");
    }

    #[test]
    fn address_map_parses() {
        let c = Config::from_toml(
            "seeds = [\"a:1\"]\n[address_map]\n\"172.18.0.3:6379\" = \"127.0.0.1:7003\"",
        )
        .unwrap();
        let to = c
            .address_map
            .get(&NodeAddr::parse("172.18.0.3:6379").unwrap())
            .unwrap();
        assert_eq!(to.as_str(), "127.0.0.1:7003");
    }
}

#[cfg(test)]
mod example_file {
    use super::*;

    /// The documented example must stay loadable.
    #[test]
    fn example_config_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/slotgate.toml");
        let cli = Cli {
            config: Some(path),
            ..Cli::default()
        };
        let c = Config::load(&cli).unwrap();
        assert_eq!(c.seeds.len(), 3);
        assert_eq!(c.redirect_budget, 5);
        assert_eq!(c.max_pipeline, 16384);
    }
}

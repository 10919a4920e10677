//! Configuration: the TOML file (`config/slotgate.toml` documents every key) with
//! command-line flags on top. Every bad value is an error naming its key.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use serde::Deserialize;
use tracing_subscriber::EnvFilter;

use crate::acl::{Rules, Secret, User, Users, DEFAULT_RULES};
use crate::cluster::NodeAddr;
use crate::net::tls;
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
    /// Admin HTTP port (metrics, health, status page), or `off` [default: 127.0.0.1:9380]
    #[arg(long, value_name = "ADDR")]
    pub admin: Option<String>,
    /// Where reads go: master, replica, prefer-replica or nearest [default: master]
    #[arg(long, value_name = "MODE")]
    pub read_from: Option<String>,
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

// No `Debug` for the file's structs: they hold passwords in clear.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<String>,
    seeds: Option<Vec<String>>,
    log_level: Option<String>,
    log_format: Option<String>,
    max_clients: Option<u64>,
    max_clients_per_ip: Option<u64>,
    workers: Option<u64>,
    timeout: Option<u64>,
    read_from: Option<String>,
    replica_max_lag: Option<u64>,
    replica_timeout_ms: Option<u64>,
    requirepass: Option<String>,
    requirepass_env: Option<String>,
    requirepass_file: Option<PathBuf>,
    #[serde(default)]
    users: Vec<UserFile>,
    #[serde(default)]
    backend: BackendFile,
    #[serde(default)]
    cluster: ClusterFile,
    #[serde(default)]
    limits: LimitsFile,
    #[serde(default)]
    address_map: HashMap<String, String>,
    #[serde(default)]
    admin: AdminFile,
    tls: Option<TlsFile>,
}

/// `[tls]`: the TLS listener for clients.
#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
struct TlsFile {
    listen: Option<String>,
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    ca_file: Option<PathBuf>,
}

/// `[backend.tls]`: TLS to the nodes.
#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
struct BackendTlsFile {
    ca_file: Option<PathBuf>,
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    server_name: Option<String>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
struct AdminFile {
    listen: Option<String>,
}

#[derive(Deserialize, Default)]
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
    password_env: Option<String>,
    password_file: Option<PathBuf>,
    tls: Option<BackendTlsFile>,
}

/// One `[[users]]` table.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserFile {
    name: String,
    password: Option<String>,
    password_sha256: Option<String>,
    password_env: Option<String>,
    password_file: Option<PathBuf>,
    nopass: Option<bool>,
    enabled: Option<bool>,
    rules: Option<String>,
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
    /// Connections accepted at once from one client IP address; 0: no limit.
    pub max_clients_per_ip: usize,
    /// A client that sends nothing for this long is closed (Redis's `timeout`), unless
    /// it waits for a reply (a blocking command), subscribes or monitors.
    pub timeout: Option<Duration>,
    /// Client users and their rules; none: no authentication.
    pub users: Arc<Users>,
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
    /// Reads from replicas: where reads go, and which replicas may serve them.
    pub reads: ReadsConfig,
    /// Announced address → address to dial (Docker, Kubernetes, NAT).
    pub address_map: HashMap<NodeAddr, NodeAddr>,
    pub admin: AdminConfig,
    /// The TLS listener beside the plain one (`[tls]`); `None`: none.
    pub tls: Option<TlsListen>,
}

/// The TLS listener for clients (`[tls]`), its files loaded and checked at start.
#[derive(Clone, Debug)]
pub struct TlsListen {
    pub listen: SocketAddr,
    /// Certificate, key, and the client verifier when `ca_file` is given.
    pub server: Arc<rustls::ServerConfig>,
    /// Clients must show a certificate signed by `tls.ca_file`.
    pub verify_clients: bool,
}

/// TLS to the nodes (`[backend.tls]`), its files loaded and checked at start.
#[derive(Clone, Debug)]
pub struct BackendTls {
    /// The CA the nodes' certificates must chain to, and our client certificate.
    pub client: Arc<rustls::ClientConfig>,
    /// The name every node's certificate must show; `None`: each node's own host
    /// (name or address) as dialled.
    pub server_name: Option<rustls::pki_types::ServerName<'static>>,
}

impl BackendTls {
    /// The name the certificate of the node dialled at `dial` must show.
    pub fn name_for(
        &self,
        dial: &NodeAddr,
    ) -> Result<rustls::pki_types::ServerName<'static>, String> {
        match &self.server_name {
            Some(name) => Ok(name.clone()),
            None => tls::server_name(dial.host()),
        }
    }
}

/// Where a client's reads go (`read_from`; a client's `READONLY` makes it `Replica`).
/// Writes always go to masters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ReadFrom {
    /// Every request to its slot's master: what a client reading its own writes needs.
    #[default]
    Master,
    /// Reads to a usable replica of the slot's shard; to the master while the shard has
    /// none.
    Replica,
    /// Reads to a usable replica, else the master (the same routing as `Replica`; the
    /// name says the intent: the master is a normal place for reads to end up).
    PreferReplica,
    /// Reads to the node of the shard (master or usable replica) with the lowest
    /// measured round trip.
    Nearest,
}

impl ReadFrom {
    /// The mode a `read_from` value names.
    pub fn parse(text: &str) -> Option<ReadFrom> {
        match text.trim().to_ascii_lowercase().as_str() {
            "master" | "primary" => Some(ReadFrom::Master),
            "replica" => Some(ReadFrom::Replica),
            "prefer-replica" => Some(ReadFrom::PreferReplica),
            "nearest" => Some(ReadFrom::Nearest),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ReadFrom::Master => "master",
            ReadFrom::Replica => "replica",
            ReadFrom::PreferReplica => "prefer-replica",
            ReadFrom::Nearest => "nearest",
        }
    }
}

/// `replica_max_lag` unless configured: bytes of replication stream a replica may be
/// behind its master and still serve reads.
pub const DEFAULT_REPLICA_MAX_LAG: u64 = 4 * 1024 * 1024;
/// `replica_timeout_ms` unless configured.
pub const DEFAULT_REPLICA_TIMEOUT_MS: u64 = 500;

/// Reads from replicas (`read_from`, `replica_max_lag`, `replica_timeout_ms`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadsConfig {
    /// Where a client's reads go until it sends `READONLY` or `READWRITE`.
    pub read_from: ReadFrom,
    /// A replica further behind its master than this many bytes of replication offset
    /// serves no reads; 0: no lag check.
    pub max_lag: u64,
    /// A read at a replica with no reply for this long goes to the master instead (and
    /// the replica's connection is closed, as for `backend.timeout_ms`).
    pub replica_timeout: Duration,
}

impl Default for ReadsConfig {
    fn default() -> Self {
        ReadsConfig {
            read_from: ReadFrom::Master,
            max_lag: DEFAULT_REPLICA_MAX_LAG,
            replica_timeout: Duration::from_millis(DEFAULT_REPLICA_TIMEOUT_MS),
        }
    }
}

/// `admin.listen` unless configured.
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9380";

/// The admin HTTP port (`admin.listen`, `--admin`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdminConfig {
    /// Where to listen; `None`: `off`, no admin port.
    pub listen: Option<SocketAddr>,
    /// Chosen by the operator (flag or file) rather than the default: it must bind,
    /// where the default may be taken by another slotgate on the host.
    pub explicit: bool,
}

#[derive(Clone)]
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
    /// `[backend.tls]`: data and control connections to the nodes speak TLS.
    pub tls: Option<BackendTls>,
}

/// Shows no password.
impl std::fmt::Debug for BackendConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackendConfig")
            .field("connections_per_node", &self.connections_per_node)
            .field("max_pinned", &self.max_pinned)
            .field("timeout", &self.timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("tls", &self.tls.is_some())
            .finish()
    }
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
            tls: None,
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
            password: one_secret(
                "backend.password",
                file.backend.password,
                file.backend.password_env,
                file.backend.password_file,
            )?,
            tls: file.backend.tls.map(backend_tls).transpose()?,
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

        let timeout = match file.timeout.unwrap_or(0) {
            0 => None,
            n if n > i32::MAX as u64 => {
                return Err(invalid("timeout", "at most 2147483647 seconds (0: never)"))
            }
            n => Some(Duration::from_secs(n)),
        };
        let max_clients_per_ip = usize::try_from(file.max_clients_per_ip.unwrap_or(0))
            .map_err(|_| invalid("max_clients_per_ip", "too large"))?;
        let users = users(
            file.users,
            one_secret(
                "requirepass",
                file.requirepass,
                file.requirepass_env,
                file.requirepass_file,
            )?,
        )?;

        let read_text = cli.read_from.clone().or(file.read_from);
        let read_from = match read_text.as_deref() {
            None => ReadFrom::Master,
            Some(text) => ReadFrom::parse(text).ok_or_else(|| {
                invalid(
                    "read_from",
                    format!("`{text}`: use master, replica, prefer-replica or nearest"),
                )
            })?,
        };
        let reads = ReadsConfig {
            read_from,
            max_lag: file.replica_max_lag.unwrap_or(DEFAULT_REPLICA_MAX_LAG),
            replica_timeout: millis(
                "replica_timeout_ms",
                file.replica_timeout_ms,
                DEFAULT_REPLICA_TIMEOUT_MS,
            )?,
        };

        let mut address_map = HashMap::new();
        for (from, to) in &file.address_map {
            let f = NodeAddr::parse(from)
                .ok_or_else(|| invalid("address_map", format!("`{from}` is not host:port")))?;
            let t = NodeAddr::parse(to)
                .ok_or_else(|| invalid("address_map", format!("`{to}` is not host:port")))?;
            address_map.insert(f, t);
        }

        let admin_text = cli.admin.clone().or(file.admin.listen);
        let explicit = admin_text.is_some();
        let admin_text = admin_text.unwrap_or_else(|| DEFAULT_ADMIN_LISTEN.to_string());
        let admin_listen = match admin_text.trim() {
            "off" => None,
            text => Some(text.parse::<SocketAddr>().map_err(|_| {
                invalid(
                    "admin.listen",
                    format!("`{text}` is not an ip:port address (or `off`)"),
                )
            })?),
        };

        let tls = file.tls.map(tls_listen).transpose()?;
        if let Some(tls) = &tls {
            if tls.listen == listen && listen.port() != 0 {
                return Err(invalid(
                    "tls.listen",
                    format!("{} is the plain listener's address too", tls.listen),
                ));
            }
        }

        Ok(Config {
            listen,
            seeds,
            log_level,
            log_format,
            max_clients,
            max_clients_per_ip,
            timeout,
            users: Arc::new(users),
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
            reads,
            address_map,
            admin: AdminConfig {
                listen: admin_listen,
                explicit,
            },
            tls,
        })
    }
}

/// `[tls]`: the address, and the files loaded now so that a bad one stops the start
/// with its key named.
fn tls_listen(file: TlsFile) -> Result<TlsListen, ConfigError> {
    let text = file
        .listen
        .ok_or_else(|| invalid("tls.listen", "the address for TLS clients is missing"))?;
    let listen: SocketAddr = text
        .parse()
        .map_err(|_| invalid("tls.listen", format!("`{text}` is not an ip:port address")))?;
    let cert_file = file
        .cert_file
        .ok_or_else(|| invalid("tls.cert_file", "a TLS listener needs its certificate"))?;
    let key_file = file
        .key_file
        .ok_or_else(|| invalid("tls.key_file", "a TLS listener needs its private key"))?;
    let chain = tls::certificates(&cert_file).map_err(|e| invalid("tls.cert_file", e))?;
    let key = tls::private_key(&key_file).map_err(|e| invalid("tls.key_file", e))?;
    let clients = match &file.ca_file {
        Some(path) => Some(tls::roots(path).map_err(|e| invalid("tls.ca_file", e))?),
        None => None,
    };
    let verify_clients = clients.is_some();
    let server = tls::server_config(chain, key, clients).map_err(|e| invalid("tls.key_file", e))?;
    Ok(TlsListen {
        listen,
        server,
        verify_clients,
    })
}

/// `[backend.tls]`: the CA, our certificate and key (both or neither), the name to check.
fn backend_tls(file: BackendTlsFile) -> Result<BackendTls, ConfigError> {
    let ca_file = file.ca_file.ok_or_else(|| {
        invalid(
            "backend.tls.ca_file",
            "the CA the nodes' certificates are signed by is missing",
        )
    })?;
    let roots = tls::roots(&ca_file).map_err(|e| invalid("backend.tls.ca_file", e))?;
    let own = match (file.cert_file, file.key_file) {
        (None, None) => None,
        (Some(cert), Some(key)) => {
            let chain =
                tls::certificates(&cert).map_err(|e| invalid("backend.tls.cert_file", e))?;
            let key = tls::private_key(&key).map_err(|e| invalid("backend.tls.key_file", e))?;
            Some((chain, key))
        }
        (Some(_), None) => {
            return Err(invalid(
                "backend.tls.key_file",
                "a client certificate needs its private key",
            ))
        }
        (None, Some(_)) => {
            return Err(invalid(
                "backend.tls.cert_file",
                "a private key needs its client certificate",
            ))
        }
    };
    let client = tls::client_config(roots, own).map_err(|e| invalid("backend.tls.key_file", e))?;
    let server_name = match file.server_name.filter(|n| !n.is_empty()) {
        Some(name) => {
            Some(tls::server_name(&name).map_err(|e| invalid("backend.tls.server_name", e))?)
        }
        None => None,
    };
    Ok(BackendTls {
        client,
        server_name,
    })
}

/// A password given in clear (`key`), by environment variable (`key_env`) or in a file
/// (`key_file`, its first line): at most one of them; `None` for none or an empty one.
fn one_secret(
    key: &'static str,
    clear: Option<String>,
    env: Option<String>,
    file: Option<PathBuf>,
) -> Result<Option<String>, ConfigError> {
    let given = [clear.is_some(), env.is_some(), file.is_some()];
    if given.iter().filter(|&&g| g).count() > 1 {
        return Err(invalid(
            key,
            format!("give one of {key}, {key}_env, {key}_file"),
        ));
    }
    let secret = match (clear, env, file) {
        (Some(clear), _, _) => clear,
        (_, Some(var), _) => read_env_secret(&var).map_err(|e| invalid(key, e))?,
        (_, _, Some(path)) => read_file_secret(&path).map_err(|e| invalid(key, e))?,
        _ => return Ok(None),
    };
    Ok((!secret.is_empty()).then_some(secret))
}

/// The value of environment variable `var`; set and not empty.
fn read_env_secret(var: &str) -> Result<String, String> {
    match std::env::var(var) {
        Ok(value) if !value.is_empty() => Ok(value),
        Ok(_) => Err(format!("environment variable {var} is empty")),
        Err(_) => Err(format!("environment variable {var} is not set")),
    }
}

/// The first line of `path` (its line end dropped); not empty.
fn read_file_secret(path: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let line = text.lines().next().unwrap_or("");
    if line.is_empty() {
        return Err(format!(
            "{} holds no password on its first line",
            path.display()
        ));
    }
    Ok(line.to_string())
}

/// The `[[users]]`, plus `requirepass` as the `default` user with the default rules.
fn users(files: Vec<UserFile>, requirepass: Option<String>) -> Result<Users, ConfigError> {
    let mut users = Vec::new();
    if let Some(password) = requirepass {
        if files.iter().any(|u| u.name == "default") {
            return Err(invalid(
                "requirepass",
                "a [[users]] entry named default is configured too: give its password there",
            ));
        }
        let rules = Rules::parse(DEFAULT_RULES).map_err(|e| invalid("requirepass", e))?;
        users.push(User::new(
            "default".to_string(),
            Some(Secret::of_password(password.as_bytes())),
            true,
            rules,
        ));
    }
    for file in files {
        users.push(user(file)?);
    }
    Users::new(users).map_err(|name| invalid("users", format!("user `{name}` is configured twice")))
}

fn user(file: UserFile) -> Result<User, ConfigError> {
    let name = file.name;
    let bad =
        |key: &'static str, message: String| invalid(key, format!("user `{name}`: {message}"));
    if name.is_empty() || name.bytes().any(|b| !(b'!'..=b'~').contains(&b)) {
        return Err(bad(
            "users.name",
            "a user name is printable ASCII without spaces".to_string(),
        ));
    }
    let nopass = file.nopass.unwrap_or(false);
    let given = [
        file.password.is_some(),
        file.password_sha256.is_some(),
        file.password_env.is_some(),
        file.password_file.is_some(),
    ]
    .iter()
    .filter(|&&g| g)
    .count();
    if given + usize::from(nopass) != 1 {
        return Err(bad(
            "users.password",
            "give exactly one of password, password_sha256, password_env, password_file              or nopass = true"
                .to_string(),
        ));
    }
    let secret = if let Some(hex) = file.password_sha256 {
        let secret = Secret::from_hex(&hex).ok_or_else(|| {
            bad(
                "users.password_sha256",
                "not a SHA-256 digest (64 hex digits, optionally after #)".to_string(),
            )
        })?;
        Some(secret)
    } else if nopass {
        None
    } else {
        let clear = match (file.password, file.password_env, file.password_file) {
            (Some(clear), _, _) => clear,
            (_, Some(var), _) => read_env_secret(&var).map_err(|e| bad("users.password_env", e))?,
            (_, _, Some(path)) => {
                read_file_secret(&path).map_err(|e| bad("users.password_file", e))?
            }
            _ => String::new(),
        };
        if clear.is_empty() {
            return Err(bad(
                "users.password",
                "an empty password (use nopass = true for none)".to_string(),
            ));
        }
        Some(Secret::of_password(clear.as_bytes()))
    };
    let rules = Rules::parse(file.rules.as_deref().unwrap_or(DEFAULT_RULES))
        .map_err(|e| bad("users.rules", e))?;
    Ok(User::new(
        name.clone(),
        secret,
        file.enabled.unwrap_or(true),
        rules,
    ))
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
    fn read_from_and_replica_limits() {
        let c = Config::from_toml("seeds = [\"a:1\"]").unwrap();
        assert_eq!(c.reads, ReadsConfig::default());
        assert_eq!(c.reads.read_from, ReadFrom::Master);
        let c = Config::from_toml(
            "seeds = [\"a:1\"]\nread_from = \"prefer-replica\"\nreplica_max_lag = 0\nreplica_timeout_ms = 200",
        )
        .unwrap();
        assert_eq!(c.reads.read_from, ReadFrom::PreferReplica);
        assert_eq!(c.reads.max_lag, 0);
        assert_eq!(c.reads.replica_timeout, Duration::from_millis(200));
        for (text, mode) in [
            ("master", ReadFrom::Master),
            ("replica", ReadFrom::Replica),
            ("Nearest", ReadFrom::Nearest),
        ] {
            let c = Config::from_toml(&format!("seeds = [\"a:1\"]\nread_from = \"{text}\""));
            assert_eq!(c.unwrap().reads.read_from, mode);
        }
        let e = Config::from_toml("seeds = [\"a:1\"]\nread_from = \"slave\"")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("read_from") && e.contains("prefer-replica"),
            "{e}"
        );
        let e = Config::from_toml("seeds = [\"a:1\"]\nreplica_timeout_ms = 0")
            .unwrap_err()
            .to_string();
        assert!(e.contains("replica_timeout_ms"), "{e}");
        let cli = Cli {
            read_from: Some("replica".into()),
            seeds: Some(vec!["a:1".into()]),
            ..Cli::default()
        };
        let c = Config::build(&cli, FileConfig::default()).unwrap();
        assert_eq!(c.reads.read_from, ReadFrom::Replica);
    }

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
    fn users_and_their_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, "from-file\n").unwrap();
        std::env::set_var("SLOTGATE_CONFIG_TEST_PW", "from-env");
        let text = format!(
            "seeds = [\"a:1\"]\n\
             [[users]]\nname = \"app\"\npassword = \"clear\"\nrules = \"+@read ~app:*\"\n\
             [[users]]\nname = \"env\"\npassword_env = \"SLOTGATE_CONFIG_TEST_PW\"\n\
             [[users]]\nname = \"file\"\npassword_file = \"{}\"\n\
             [[users]]\nname = \"hash\"\npassword_sha256 = \"#e528e908837a6f2c169a132a07f95107a5cc523f61d09d028c2fa799aeef4257\"\nenabled = false\n",
            file.display()
        );
        let c = Config::from_toml(&text).unwrap();
        let users = &c.users;
        assert!(users.enforced());
        assert!(users.authenticate(b"app", b"clear").is_some());
        assert!(users.authenticate(b"env", b"from-env").is_some());
        assert!(users.authenticate(b"file", b"from-file").is_some());
        assert!(users.authenticate(b"hash", b"apw").is_none(), "disabled");
        assert!(users.get(b"hash").is_some());
        let debug = format!("{c:?}");
        for secret in ["clear", "from-env", "from-file", "e528e9"] {
            assert!(!debug.contains(secret), "{secret} in {debug}");
        }
    }

    #[test]
    fn requirepass_is_the_default_user() {
        let c = Config::from_toml("seeds = [\"a:1\"]\nrequirepass = \"pw\"").unwrap();
        let default = c.users.authenticate(b"default", b"pw").unwrap();
        assert!(default.restricted(), "the safe default rules");
        assert!(c.users.on_connect().is_none());
        assert!(!Config::from_toml("seeds = [\"a:1\"]")
            .unwrap()
            .users
            .enforced());
        let e = Config::from_toml(
            "seeds = [\"a:1\"]\nrequirepass = \"pw\"\n[[users]]\nname = \"default\"\nnopass = true",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("`requirepass`"), "{e}");
    }

    #[test]
    fn bad_users_name_their_key() {
        for (user, key) in [
            ("name = \"a\"", "users.password"),
            (
                "name = \"a\"\npassword = \"x\"\nnopass = true",
                "users.password",
            ),
            ("name = \"a\"\npassword = \"\"", "users.password"),
            (
                "name = \"a\"\npassword_sha256 = \"abc\"",
                "users.password_sha256",
            ),
            (
                "name = \"a\"\npassword_env = \"SLOTGATE_NO_SUCH_VAR_X\"",
                "users.password_env",
            ),
            (
                "name = \"a\"\npassword_file = \"/nonexistent/pw\"",
                "users.password_file",
            ),
            ("name = \"a b\"\nnopass = true", "users.name"),
            (
                "name = \"a\"\nnopass = true\nrules = \"+@nosuch\"",
                "users.rules",
            ),
            (
                "name = \"a\"\nnopass = true\nrules = \">pw\"",
                "users.rules",
            ),
        ] {
            let text = format!("seeds = [\"a:1\"]\n[[users]]\n{user}");
            let e = Config::from_toml(&text).unwrap_err().to_string();
            assert!(e.contains(&format!("`{key}`")), "{user}: {e}");
        }
        let e = Config::from_toml(
            "seeds = [\"a:1\"]\n[[users]]\nname = \"a\"\nnopass = true\n[[users]]\nname = \"a\"\nnopass = true",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("configured twice"), "{e}");
        let e = Config::from_toml(
            "seeds = [\"a:1\"]\n[[users]]\nname = \"a\"\nnopass = true\nbogus = 1",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("bogus"), "{e}");
    }

    #[test]
    fn backend_password_sources_and_limits() {
        std::env::set_var("SLOTGATE_CONFIG_TEST_BACKEND", "nodepw");
        let c = Config::from_toml(
            "seeds = [\"a:1\"]\ntimeout = 30\nmax_clients_per_ip = 5\n[backend]\nusername = \"proxy\"\npassword_env = \"SLOTGATE_CONFIG_TEST_BACKEND\"",
        )
        .unwrap();
        assert_eq!(c.backend.password.as_deref(), Some("nodepw"));
        assert!(!format!("{c:?}").contains("nodepw"));
        assert_eq!(c.timeout, Some(Duration::from_secs(30)));
        assert_eq!(c.max_clients_per_ip, 5);
        let c = Config::from_toml("seeds = [\"a:1\"]\ntimeout = 0").unwrap();
        assert_eq!(c.timeout, None);
        assert_eq!(c.max_clients_per_ip, 0);
        let e = Config::from_toml(
            "seeds = [\"a:1\"]\n[backend]\npassword = \"a\"\npassword_env = \"B\"",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("`backend.password`"), "{e}");
    }

    #[test]
    fn admin_port_defaults_turns_off_and_names_its_key() {
        let c = Config::from_toml("seeds = [\"a:1\"]").unwrap();
        assert_eq!(c.admin.listen, Some("127.0.0.1:9380".parse().unwrap()));
        assert!(!c.admin.explicit);
        let c = Config::from_toml("seeds = [\"a:1\"]\n[admin]\nlisten = \"off\"").unwrap();
        assert_eq!(c.admin.listen, None);
        let cli = Cli {
            admin: Some("127.0.0.1:0".into()),
            ..Cli::default()
        };
        let file = parse_file(
            Path::new("x"),
            "seeds = [\"a:1\"]\n[admin]\nlisten = \"off\"",
        )
        .unwrap();
        let c = Config::build(&cli, file).unwrap();
        assert_eq!(c.admin.listen, Some("127.0.0.1:0".parse().unwrap()));
        assert!(c.admin.explicit, "the flag wins over the file");
        let e = Config::from_toml("seeds = [\"a:1\"]\n[admin]\nlisten = \"9380\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("`admin.listen`"), "{e}");
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
        assert!(!c.users.enforced());
        assert_eq!((c.timeout, c.max_clients_per_ip), (None, 0));
    }

    /// The example with users must stay loadable, and mean what its comments say.
    #[test]
    fn secure_example_loads() {
        std::env::set_var("SLOTGATE_NODE_PASSWORD", "node-secret");
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/secure.toml");
        let cli = Cli {
            config: Some(path),
            ..Cli::default()
        };
        let c = Config::load(&cli).unwrap();
        assert_eq!(c.timeout, Some(Duration::from_secs(300)));
        assert_eq!(c.max_clients_per_ip, 200);
        assert_eq!(c.backend.password.as_deref(), Some("node-secret"));
        let app = c.users.authenticate(b"app", b"secret").unwrap();
        assert!(app.rules.check(&["GET", "app:1"][..], None).is_ok());
        assert!(app
            .rules
            .check(&["EVAL", "return 1", "0"][..], None)
            .is_err());
        assert!(c.users.authenticate(b"ops", b"secret").is_some());
        assert!(
            c.users.on_connect().is_none(),
            "no default user: everyone logs in"
        );
    }
}

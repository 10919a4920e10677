//! Reloading the configuration: `SIGHUP`, or `POST /reload` on the admin port, reads
//! the file the process was started with (`--config`) again, with the same command-line
//! flags on top (they still win), and applies what can change while clients stay
//! connected.
//!
//! - All or nothing: a file that does not read, parse or validate is refused with the
//!   reason (logged at warn; `POST /reload` answers 400 with it) and the configuration
//!   in force stays entirely.
//! - What applies at once ([`diff`]): `seeds` and `[address_map]` (a refresh follows;
//!   nodes whose entry changed are dialled at the new address from their next
//!   connection), `log_level`, `max_clients`, `max_clients_per_ip`, `timeout`,
//!   `requirepass`/`[[users]]`, the `[limits]`, the `[cluster]` keys and the `[backend]`
//!   ones but `connections_per_node` (credentials and `limits.max_bulk_len` for
//!   connections opened after the reload).
//! - What needs a restart ([`RESTART_KEYS`]): logged at warn, naming the key; the
//!   running value stays and the rest applies.
//! - Users: a client keeps its login, under its user's new rules, as Redis keeps its
//!   clients logged in when `requirepass` changes; a client whose user was removed or
//!   disabled is closed, as Redis closes the clients of a user `ACL DELUSER` removes
//!   ([`rebind`]).
//!
//! How the workers take it: the reload swaps `Shared::config` and bumps
//! `Shared::config_generation`; each worker looks at the generation at its watchdog tick
//! (100 ms), never per request, takes the new config for its node connections and each
//! of its sessions (which read limits from their own `Arc<Config>`, a plain field), and
//! reports the generation it took. The reload waits for every worker (a tick, bounded)
//! before it says it is done.

use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;
use tracing_subscriber::EnvFilter;

use crate::acl::{User, Users};
use crate::admin::http::ReloadAsk;
use crate::admin::metrics::RefreshCause;
use crate::admin::METRICS;
use crate::config::{log_filter, Cli, Config};
use crate::shared::Shared;

/// Keys a reload cannot change: the running value stays until a restart.
pub const RESTART_KEYS: [&str; 6] = [
    "listen",
    "workers",
    "admin.listen",
    "log_format",
    "backend.connections_per_node",
    // Each client takes its read mode when it connects, and the replica poller starts
    // once: the mode of connected clients does not move under them.
    "read_from",
];

/// How long a reload waits for every worker to take the new config (they look every
/// 100 ms).
const WORKERS_TAKE_AT_MOST: Duration = Duration::from_secs(2);

/// Sets the process's log filter (main installs tracing with a reloadable filter).
pub type SetLogFilter = Box<dyn Fn(EnvFilter) -> Result<(), String> + Send + Sync>;

/// What changed between two configurations, by config key.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Diff {
    /// Keys whose new value applies now.
    pub applied: Vec<&'static str>,
    /// Keys whose new value needs a restart ([`RESTART_KEYS`]).
    pub restart: Vec<&'static str>,
}

/// The keys whose value differs between `old` (in force) and `new` (just read), in the
/// order of `config/slotgate.toml`. Pure.
pub fn diff(old: &Config, new: &Config) -> Diff {
    let (o, n) = (old, new);
    let (ob, nb) = (&o.backend, &n.backend);
    let changes: [(&'static str, bool); 30] = [
        ("listen", o.listen != n.listen),
        ("seeds", o.seeds != n.seeds),
        ("log_level", o.log_level != n.log_level),
        ("log_format", o.log_format != n.log_format),
        ("workers", o.workers != n.workers),
        ("max_clients", o.max_clients != n.max_clients),
        (
            "max_clients_per_ip",
            o.max_clients_per_ip != n.max_clients_per_ip,
        ),
        ("timeout", o.timeout != n.timeout),
        ("requirepass/users", !same_users(&o.users, &n.users)),
        (
            "backend.connections_per_node",
            ob.connections_per_node != nb.connections_per_node,
        ),
        ("backend.max_pinned", ob.max_pinned != nb.max_pinned),
        (
            "backend.max_pinned_per_node",
            ob.max_pinned_per_node != nb.max_pinned_per_node,
        ),
        ("backend.pinned_wait_ms", ob.pinned_wait != nb.pinned_wait),
        ("backend.timeout_ms", ob.timeout != nb.timeout),
        (
            "backend.connect_timeout_ms",
            ob.connect_timeout != nb.connect_timeout,
        ),
        ("backend.username", ob.username != nb.username),
        ("backend.password", ob.password != nb.password),
        (
            "cluster.refresh_interval_ms",
            o.refresh_interval != n.refresh_interval,
        ),
        (
            "cluster.redirect_budget",
            o.redirect_budget != n.redirect_budget,
        ),
        (
            "cluster.config_commands",
            o.config_commands != n.config_commands,
        ),
        (
            "limits.max_bulk_len",
            o.limits.max_bulk_len != n.limits.max_bulk_len,
        ),
        ("limits.max_pipeline", o.max_pipeline != n.max_pipeline),
        (
            "limits.max_output_buffer",
            o.max_output_buffer != n.max_output_buffer,
        ),
        (
            "limits.max_output_total",
            o.max_output_total != n.max_output_total,
        ),
        ("limits.reply_window", o.reply_window != n.reply_window),
        ("address_map", o.address_map != n.address_map),
        ("admin.listen", o.admin.listen != n.admin.listen),
        ("read_from", o.reads.read_from != n.reads.read_from),
        ("replica_max_lag", o.reads.max_lag != n.reads.max_lag),
        (
            "replica_timeout_ms",
            o.reads.replica_timeout != n.reads.replica_timeout,
        ),
    ];
    let mut diff = Diff::default();
    for (key, changed) in changes {
        if !changed {
            continue;
        }
        if RESTART_KEYS.contains(&key) {
            diff.restart.push(key);
        } else {
            diff.applied.push(key);
        }
    }
    diff
}

/// The configuration to put in force: `new`, but with the running value of every key
/// that needs a restart, and the users in force kept as they are when they did not
/// change (so no session has to look at its login again).
pub fn merge(old: &Config, mut new: Config) -> Config {
    new.listen = old.listen;
    new.workers = old.workers;
    new.admin = old.admin.clone();
    new.log_format = old.log_format;
    new.backend.connections_per_node = old.backend.connections_per_node;
    new.reads.read_from = old.reads.read_from;
    // Certificates and keys are loaded at start; a reload keeps the TLS in force
    // (README: restart to change or rotate them).
    new.tls = old.tls.clone();
    new.backend.tls = old.backend.tls.clone();
    if same_users(&old.users, &new.users) {
        new.users = Arc::clone(&old.users);
    }
    new
}

/// Same names, passwords, on/off and rules.
fn same_users(a: &Users, b: &Users) -> bool {
    a.all().len() == b.all().len() && a.all().iter().zip(b.all()).all(|(a, b)| a.same_as(b))
}

/// A logged-in client's user after a reload changed the users: `Some((user, guarded))`
/// to keep it (`None` user: nobody needs to log in, or the client has not logged in
/// yet; `guarded`: its requests need a look, as [`crate::session`] keeps it), or `None`
/// to close it: its user was removed or disabled.
///
/// - The new config enforces no auth: everyone is the unrestricted `default`.
/// - A client logged in as a user keeps that user, with its new rules, if it still
///   exists and is enabled (its password may have changed: the client stays logged in,
///   as Redis's clients do when `requirepass` changes).
/// - A client of a proxy that enforced no auth was Redis's `default` user: it stays
///   `default` if the new users have an enabled one (`requirepass`), with its rules.
/// - A client that has not logged in yet gets what a new connection gets.
pub fn rebind(
    user: Option<&Arc<User>>,
    old: &Users,
    new: &Users,
) -> Option<(Option<Arc<User>>, bool)> {
    if !new.enforced() {
        return Some((None, false));
    }
    let name = match user {
        Some(user) => user.name.as_str(),
        None if !old.enforced() => "default",
        None => {
            let user = new.on_connect();
            let guarded = user.as_ref().is_none_or(|u| u.restricted());
            return Some((user, guarded));
        }
    };
    let user = new.get(name.as_bytes()).filter(|u| u.enabled)?;
    Some((Some(Arc::clone(user)), user.restricted()))
}

/// What a reload reads again and what it changes beyond `Shared`: the command line (the
/// file it names, the flags that win over it) and the log filter.
pub struct Reloader {
    cli: Cli,
    set_log_filter: Option<SetLogFilter>,
}

impl Reloader {
    /// `set_log_filter`: `None` when logging cannot change (a `log_level` change is then
    /// reported as needing a restart).
    pub fn new(cli: Cli, set_log_filter: Option<SetLogFilter>) -> Reloader {
        Reloader {
            cli,
            set_log_filter,
        }
    }

    /// Read the file again and apply it; the one-line summary, or why nothing changed.
    pub async fn reload(&self, shared: &Shared, trigger: &str) -> Result<String, String> {
        let result = self.apply(shared).await;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        METRICS.config_last_reload_unix.store(now, Relaxed);
        match &result {
            Ok(summary) => {
                METRICS.config_reloads_ok.fetch_add(1, Relaxed);
                METRICS.config_last_reload_failed.store(0, Relaxed);
                tracing::info!(%trigger, "config reloaded: {summary}");
            }
            Err(reason) => {
                METRICS.config_reloads_failed.fetch_add(1, Relaxed);
                METRICS.config_last_reload_failed.store(1, Relaxed);
                tracing::warn!(%trigger, %reason, "config reload refused; the configuration in force stays as it was");
            }
        }
        result
    }

    async fn apply(&self, shared: &Shared) -> Result<String, String> {
        let new = Config::load(&self.cli).map_err(|e| e.to_string())?;
        let old = shared.config.load_full();
        let mut diff = diff(&old, &new);
        let mut new = merge(&old, new);

        // The one step that may fail goes first: nothing has changed if it does.
        if diff.applied.contains(&"log_level") {
            match &self.set_log_filter {
                Some(set) => set(effective_filter(new.log_level.as_deref())?)
                    .map_err(|e| format!("log_level: {e}"))?,
                None => {
                    new.log_level.clone_from(&old.log_level);
                    diff.applied.retain(|k| *k != "log_level");
                    diff.restart.push("log_level");
                }
            }
        }
        for key in &diff.restart {
            tracing::warn!(
                key,
                "config reload: `{key}` changed in the file but needs a restart; the running \
                 value stays"
            );
        }
        if diff.applied.is_empty() {
            return Ok(match diff.restart.is_empty() {
                true => "nothing changed".to_string(),
                false => format!(
                    "nothing applied; needs a restart: {}",
                    diff.restart.join(", ")
                ),
            });
        }

        shared.per_address.set_limit(new.max_clients_per_ip);
        let new = Arc::new(new);
        shared.config.store(Arc::clone(&new));
        if diff.applied.contains(&"address_map") {
            for node in shared.registry.snapshot() {
                node.set_dial(new.dial_addr(&node.addr).clone());
            }
        }
        let generation = shared.config_generation.fetch_add(1, Release) + 1;
        if diff
            .applied
            .iter()
            .any(|k| *k == "seeds" || *k == "address_map")
        {
            shared.want_refresh(RefreshCause::Other);
        }
        let pending = workers_taking(shared, generation).await;

        let mut summary = format!("changed: {}", diff.applied.join(", "));
        if !diff.restart.is_empty() {
            summary.push_str(&format!("; needs a restart: {}", diff.restart.join(", ")));
        }
        if pending > 0 {
            summary.push_str(&format!(
                "; {pending} worker(s) had not taken it yet after {WORKERS_TAKE_AT_MOST:?}"
            ));
        }
        Ok(summary)
    }
}

/// The filter a `log_level` means: the level itself, else `RUST_LOG` (set and not
/// empty), else `info`, as at start-up.
fn effective_filter(level: Option<&str>) -> Result<EnvFilter, String> {
    let (source, text) = match (level, std::env::var("RUST_LOG")) {
        (Some(level), _) => ("log_level", level.to_string()),
        (None, Ok(directives)) if !directives.trim().is_empty() => ("RUST_LOG", directives),
        (None, _) => ("log_level", "info".to_string()),
    };
    log_filter(&text).map_err(|e| format!("{source}: {e}"))
}

/// Wait (at most [`WORKERS_TAKE_AT_MOST`]) until every worker has taken `generation`;
/// how many had not.
async fn workers_taking(shared: &Shared, generation: u64) -> usize {
    let workers = shared.workers.get().copied().unwrap_or(0);
    let started = Instant::now();
    loop {
        let pending = (shared.config_applied.iter().take(workers))
            .filter(|taken| taken.load(Acquire) < generation)
            .count();
        if pending == 0 || started.elapsed() >= WORKERS_TAKE_AT_MOST {
            return pending;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The reload task, on the control runtime: one reload at a time, for `SIGHUP`
/// (`hangup`) or for the admin port's `POST /reload` (`asks`: each carries where to
/// send the result; closed when the admin port is off).
pub async fn run(
    shared: Arc<Shared>,
    reloader: Reloader,
    mut asks: mpsc::Receiver<ReloadAsk>,
    #[cfg(unix)] mut hangup: Option<tokio::signal::unix::Signal>,
) {
    let mut asks_open = true;
    loop {
        #[cfg(unix)]
        let hangup_recv = async {
            match hangup.as_mut() {
                Some(signal) => signal.recv().await,
                None => std::future::pending().await,
            }
        };
        #[cfg(not(unix))]
        let hangup_recv = std::future::pending::<Option<()>>();
        let reply = tokio::select! {
            Some(()) = hangup_recv => None,
            ask = asks.recv(), if asks_open => match ask {
                Some(reply) => Some(reply),
                None => {
                    asks_open = false;
                    continue;
                }
            },
            else => return,
        };
        let trigger = if reply.is_some() {
            "POST /reload"
        } else {
            "SIGHUP"
        };
        let result = reloader.reload(&shared, trigger).await;
        if let Some(reply) = reply {
            let _ = reply.send(result);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acl::{Rules, Secret};

    fn config(text: &str) -> Config {
        Config::from_toml(&format!("seeds = [\"127.0.0.1:7001\"]\n{text}")).unwrap()
    }

    #[test]
    fn the_same_file_changes_nothing() {
        let text = "max_clients = 5\nrequirepass = \"pw\"\n[address_map]\n\"a:1\" = \"b:2\"";
        assert_eq!(diff(&config(text), &config(text)), Diff::default());
    }

    #[test]
    fn live_keys_apply_and_the_others_need_a_restart() {
        let old = config("");
        let new = Config::from_toml(
            "seeds = [\"127.0.0.1:7002\"]\nlisten = \"127.0.0.1:7777\"\nworkers = 3\n\
             log_level = \"debug\"\nlog_format = \"json\"\nmax_clients = 5\ntimeout = 9\n\
             max_clients_per_ip = 2\nrequirepass = \"pw\"\n\
             [backend]\nconnections_per_node = 2\ntimeout_ms = 100\npassword = \"x\"\n\
             [cluster]\nredirect_budget = 3\n\
             [limits]\nmax_pipeline = 10\nmax_bulk_len = 1000\n\
             [address_map]\n\"a:1\" = \"b:2\"\n[admin]\nlisten = \"off\"",
        )
        .unwrap();
        let d = diff(&old, &new);
        assert_eq!(
            d.applied,
            [
                "seeds",
                "log_level",
                "max_clients",
                "max_clients_per_ip",
                "timeout",
                "requirepass/users",
                "backend.timeout_ms",
                "backend.password",
                "cluster.redirect_budget",
                "limits.max_bulk_len",
                "limits.max_pipeline",
                "address_map",
            ]
        );
        assert_eq!(
            d.restart,
            [
                "listen",
                "log_format",
                "workers",
                "backend.connections_per_node",
                "admin.listen"
            ]
        );
        // What goes in force keeps the running value of each restart key.
        let merged = merge(&old, new);
        assert_eq!(merged.listen, old.listen);
        assert_eq!(merged.workers, None);
        assert_eq!(merged.log_format, old.log_format);
        assert_eq!(merged.admin, old.admin);
        assert_eq!(merged.backend.connections_per_node, 1);
        assert_eq!(merged.max_clients, 5);
        assert_eq!(merged.backend.timeout, Duration::from_millis(100));
        assert!(diff(&old, &merged).restart.is_empty());
    }

    #[test]
    fn users_compare_by_name_password_state_and_rules() {
        let base = "[[users]]\nname = \"app\"\npassword = \"a\"\nrules = \"+@read ~*\"";
        let old = config(base);
        for (changed, what) in [
            (base.replace("\"a\"", "\"b\""), "password"),
            (format!("{base}\nenabled = false"), "enabled"),
            (base.replace("+@read", "+@write"), "rules"),
            (base.replace("app", "bpp"), "name"),
            (
                format!("{base}\n[[users]]\nname = \"ops\"\nnopass = true"),
                "a user more",
            ),
        ] {
            let d = diff(&old, &config(&changed));
            assert_eq!(d.applied, ["requirepass/users"], "{what}");
        }
        // Unchanged users stay the same object: sessions need not look again.
        let merged = merge(&old, config(&format!("max_clients = 3\n{base}")));
        assert!(Arc::ptr_eq(&merged.users, &old.users));
        let merged = merge(&old, config(&base.replace("\"a\"", "\"b\"")));
        assert!(!Arc::ptr_eq(&merged.users, &old.users));
    }

    fn users(list: &[(&str, Option<&str>, bool, &str)]) -> Users {
        Users::new(
            list.iter()
                .map(|&(name, password, enabled, rules)| {
                    User::new(
                        name.to_string(),
                        password.map(|p| Secret::of_password(p.as_bytes())),
                        enabled,
                        Rules::parse(rules).unwrap(),
                    )
                })
                .collect(),
        )
        .unwrap()
    }

    #[test]
    fn logged_in_clients_keep_their_user_unless_it_is_gone_or_off() {
        let old = users(&[
            ("default", Some("old"), true, "+@all ~*"),
            ("app", Some("a"), true, "+@all ~*"),
            ("ops", Some("o"), true, "+@all ~*"),
        ]);
        let new = users(&[
            ("default", Some("new"), true, "+@all ~*"),
            ("app", Some("changed"), true, "+@read ~*"),
            ("ops", Some("o"), false, "+@all ~*"),
        ]);
        let app = old.get(b"app").cloned();
        let (user, guarded) = rebind(app.as_ref(), &old, &new).expect("app stays");
        assert_eq!(user.as_ref().map(|u| u.name.as_str()), Some("app"));
        assert!(guarded, "its new rules are checked");
        assert!(
            Arc::ptr_eq(user.as_ref().unwrap(), new.get(b"app").unwrap()),
            "the new user, with its new rules"
        );
        let default = old.get(b"default").cloned();
        let (user, guarded) = rebind(default.as_ref(), &old, &new).expect("default stays");
        assert_eq!(user.unwrap().name, "default", "a new requirepass keeps it");
        assert!(!guarded);
        let ops = old.get(b"ops").cloned();
        assert!(
            rebind(ops.as_ref(), &old, &new).is_none(),
            "disabled: closed"
        );
        let gone = users(&[("default", Some("new"), true, "+@all ~*")]);
        assert!(
            rebind(app.as_ref(), &old, &gone).is_none(),
            "removed: closed"
        );
        // Not logged in yet: what a new connection gets.
        assert!(matches!(rebind(None, &old, &new), Some((None, true))));
        // Auth turned off: everyone may do everything.
        assert!(matches!(
            rebind(app.as_ref(), &old, &Users::open()),
            Some((None, false))
        ));
    }

    #[test]
    fn clients_of_an_open_proxy_are_default() {
        let open = Users::open();
        let with_pass = users(&[("default", Some("pw"), true, "+@all ~* -@admin")]);
        let (user, guarded) = rebind(None, &open, &with_pass).expect("stays logged in");
        assert_eq!(user.unwrap().name, "default");
        assert!(guarded, "under default's rules");
        let named_only = users(&[("app", Some("a"), true, "+@all ~*")]);
        assert!(
            rebind(None, &open, &named_only).is_none(),
            "no default user any more: closed"
        );
    }

    #[test]
    fn the_log_filter_is_the_level_else_info() {
        assert!(effective_filter(Some("debug")).is_ok());
        assert!(effective_filter(Some("slotgate=trace")).is_ok());
    }
}

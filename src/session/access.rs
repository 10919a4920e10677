//! Who the client is and what it may do: `AUTH`, `HELLO ... AUTH`, `RESET`'s return to
//! the connection's first user, the `NOAUTH`/`NOPERM` refusals, the `ACL` queries
//! (`WHOAMI`, `USERS`, `LIST`, `GETUSER`, `CAT`), and when an idle client is closed
//! (`timeout`).
//!
//! Per request the session pays one test of [`Session::guarded`], false unless auth is
//! configured and the client is either not logged in yet or logged in as a user with
//! rules; everything else here is out of line.

use std::sync::Arc;
use std::time::Duration;

use super::Session;
use crate::acl::{self, categories, Denied, User};
use crate::command::{Args, CommandError, Local};
use crate::dispatch::plan::{plan, PlanError};
use crate::protocol::scan::Request;

/// Commands a client may send before it authenticates: Redis's `no_auth` commands, and
/// `PING` (for load balancers' health checks).
const BEFORE_AUTH: [&[u8]; 5] = [b"auth", b"hello", b"ping", b"quit", b"reset"];

/// `AUTH <password>` when the default user has no password (Redis's words).
const NO_PASSWORD: &str = "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?";

/// `ACL LIST`'s line for the only user when no users are configured.
const OPEN_DEFAULT: &str = "user default on nopass ~* &* +@all";

/// A session's user when it starts (and after `RESET`): with auth configured, the
/// `default` user if it has `nopass`, else nobody; and whether its requests need a look.
pub(super) fn first_user(users: &acl::Users) -> (Option<Arc<User>>, bool) {
    if !users.enforced() {
        return (None, false);
    }
    let user = users.on_connect();
    let guarded = user.as_ref().is_none_or(|u| u.restricted());
    (user, guarded)
}

/// A request seen through another type for the checks here, so that they make their
/// own copies of `plan` and `classify`: the data path's copies keep their one call site
/// and compile as without the checks (a second caller of `plan::<Request>` changed
/// what was inlined there: +71 instructions per GET on one build, benches/callgrind.sh).
struct Checked<'a>(&'a Request);

impl Args for Checked<'_> {
    fn argc(&self) -> usize {
        self.0.argc()
    }
    fn arg(&self, i: usize) -> &[u8] {
        self.0.arg(i)
    }
}

/// Redis's `NOPERM` text for a refusal.
fn noperm(user: &str, denied: &Denied) -> String {
    match denied {
        Denied::Command(name) => {
            format!("NOPERM User {user} has no permissions to run the '{name}' command")
        }
        Denied::Key => "NOPERM No permissions to access a key".to_string(),
        Denied::Channel => "NOPERM No permissions to access a channel".to_string(),
    }
}

impl Session {
    /// A request of a guarded session: true when it was refused here (and answered).
    #[cold]
    #[inline(never)]
    pub(super) fn refuse_access(&mut self, request: &Request) -> bool {
        if request.argc() == 0 {
            return false;
        }
        let learned = self.shared.learned.get();
        let checked = Checked(request);
        let text = match &self.user {
            None => {
                let name = request.arg(0);
                if BEFORE_AUTH.iter().any(|c| c.eq_ignore_ascii_case(name)) {
                    return false;
                }
                // Redis answers an unknown command or a wrong arity before NOAUTH.
                match plan(&checked, learned, self.id.0 as u32) {
                    Err(
                        e @ (PlanError::Command(
                            CommandError::Unknown { .. }
                            | CommandError::UnknownSubcommand { .. }
                            | CommandError::Arity { .. },
                        )
                        | PlanError::Learned(_)),
                    ) => e.to_string(),
                    _ => acl::NOAUTH.to_string(),
                }
            }
            Some(user) => match user.rules.check(&checked, learned) {
                Ok(()) => return false,
                Err(denied) => noperm(&user.name, &denied),
            },
        };
        if self.txn.as_ref().is_some_and(|t| t.in_multi()) {
            // As Redis: refused at queue time, so EXEC answers EXECABORT.
            self.refuse_in_multi(&text);
        } else {
            self.push_error(&text);
        }
        true
    }

    /// Auth is configured and this client has not logged in.
    fn needs_auth(&self) -> bool {
        self.user.is_none() && self.config.users.enforced()
    }

    /// Log in as `user` with `password` (`AUTH`, `HELLO ... AUTH`); on failure the
    /// client stays who it was, and the reason is `WRONGPASS`.
    pub(super) fn log_in(&mut self, user: &[u8], password: &[u8]) -> Result<(), &'static str> {
        let users = self.config.users.clone();
        if !users.enforced() {
            // No users configured: `default` takes any password (Redis's `nopass`).
            return if user == b"default" {
                Ok(())
            } else {
                Err(acl::WRONGPASS)
            };
        }
        match users.authenticate(user, password) {
            Some(user) => {
                self.guarded = user.restricted();
                self.user = Some(user);
                self.publish_names();
                Ok(())
            }
            None => {
                // The user name only: never the password.
                tracing::debug!(
                    client = self.id.0,
                    peer = %self.peer,
                    user = %String::from_utf8_lossy(user),
                    "authentication failed"
                );
                Err(acl::WRONGPASS)
            }
        }
    }

    /// `AUTH [user] password`.
    pub(super) fn auth(&mut self, req: &Request) {
        let result = match req.argc() {
            2 => {
                let users = &self.config.users;
                if !users.enforced() || users.default_is_nopass() {
                    Err(NO_PASSWORD)
                } else {
                    self.log_in(b"default", req.arg(1))
                }
            }
            3 => self.log_in(req.arg(1), req.arg(2)),
            _ => Err("ERR syntax error"),
        };
        match result {
            Ok(()) => self.push_local(|w| w.ok()),
            Err(e) => self.push_error(e),
        }
    }

    /// `HELLO` after its options: the client must be logged in by now (`HELLO ... AUTH`
    /// or earlier); the error if not.
    pub(super) fn hello_needs_auth(&self) -> Option<&'static str> {
        self.needs_auth().then_some(acl::NOAUTH_HELLO)
    }

    /// `RESET`: back to the user a new connection has.
    pub(super) fn reset_user(&mut self) {
        (self.user, self.guarded) = first_user(&self.config.users);
    }

    /// The user `CLIENT LIST` shows, unless `default`.
    pub(super) fn user_shown(&self) -> Option<bytes::Bytes> {
        let user = self.user.as_ref().filter(|u| u.name != "default")?;
        Some(bytes::Bytes::copy_from_slice(user.name.as_bytes()))
    }

    /// The user's name for `ACL WHOAMI`.
    fn user_name(&self) -> String {
        self.user
            .as_ref()
            .map_or_else(|| "default".to_string(), |u| u.name.clone())
    }

    /// `ACL WHOAMI|USERS|LIST|GETUSER|CAT`.
    pub(super) fn acl(&mut self, which: Local, req: &Request) {
        let users = self.config.users.clone();
        match which {
            Local::AclWhoAmI => {
                let name = self.user_name();
                self.push_local(|w| w.bulk(name.as_bytes()))
            }
            Local::AclUsers => {
                let names: Vec<String> = if users.enforced() {
                    users.all().iter().map(|u| u.name.clone()).collect()
                } else {
                    vec!["default".to_string()]
                };
                self.push_local(|w| {
                    w.array(names.len());
                    for name in &names {
                        w.bulk(name.as_bytes());
                    }
                })
            }
            Local::AclList => {
                let lines: Vec<String> = if users.enforced() {
                    users.all().iter().map(|u| u.describe()).collect()
                } else {
                    vec![OPEN_DEFAULT.to_string()]
                };
                self.push_local(|w| {
                    w.array(lines.len());
                    for line in &lines {
                        w.bulk(line.as_bytes());
                    }
                })
            }
            Local::AclGetUser => self.acl_getuser(&users, req.arg(2)),
            Local::AclCat => self.acl_cat(req),
            _ => self.push_error("ERR slotgate: not an ACL command"),
        }
    }

    /// `ACL GETUSER name`: flags, commands, keys, channels; `passwords` is always empty
    /// (slotgate shows no secret, not even a digest).
    fn acl_getuser(&mut self, users: &acl::Users, name: &[u8]) {
        let fields: Option<(Vec<&str>, String, String, String)> = if users.enforced() {
            users.get(name).map(|u| {
                (
                    u.flags(),
                    u.rules.describe_commands(),
                    u.rules.describe_keys(),
                    u.rules.describe_channels(),
                )
            })
        } else {
            (name == b"default").then(|| {
                (
                    vec!["on", "nopass"],
                    "+@all".to_string(),
                    "~*".to_string(),
                    "&*".to_string(),
                )
            })
        };
        let Some((flags, commands, keys, channels)) = fields else {
            return self.push_local(|w| w.null());
        };
        self.push_local(|w| {
            w.map(6);
            w.bulk(b"flags");
            w.array(flags.len());
            for flag in &flags {
                w.bulk(flag.as_bytes());
            }
            w.bulk(b"passwords");
            w.array(0);
            w.bulk(b"commands");
            w.bulk(commands.as_bytes());
            w.bulk(b"keys");
            w.bulk(keys.as_bytes());
            w.bulk(b"channels");
            w.bulk(channels.as_bytes());
            w.bulk(b"selectors");
            w.array(0);
        })
    }

    /// `ACL CAT [category]`: the categories, or the commands of one.
    fn acl_cat(&mut self, req: &Request) {
        let names: Vec<&str> = if req.argc() == 2 {
            categories::NAMES.to_vec()
        } else {
            let asked = String::from_utf8_lossy(req.arg(2)).into_owned();
            let Some(bit) = categories::bit(&asked) else {
                let asked: String = asked.chars().take(128).collect();
                return self.push_error(&format!("ERR Unknown category '{asked}'"));
            };
            (categories::CATEGORIES.iter())
                .filter(|(_, cats)| cats & bit != 0)
                .map(|(name, _)| *name)
                .collect()
        };
        self.push_local(|w| {
            w.array(names.len());
            for name in &names {
                w.bulk(name.as_bytes());
            }
        })
    }

    /// A reload: take the worker's new configuration. When the users changed, the
    /// client stays logged in as its user, whose new rules apply at once (Redis keeps
    /// clients logged in when `requirepass` changes, and `ACL SETUSER` applies to them);
    /// false when its user was removed or disabled: the worker then closes it, as Redis
    /// closes the clients of a user `ACL DELUSER` removes ([`crate::reload::rebind`]).
    #[cold]
    pub fn reconfigure(&mut self, config: &Arc<crate::config::Config>) -> bool {
        if !Arc::ptr_eq(&self.config.users, &config.users) {
            match crate::reload::rebind(self.user.as_ref(), &self.config.users, &config.users) {
                Some((user, guarded)) => (self.user, self.guarded) = (user, guarded),
                None => return false,
            }
        }
        self.config = Arc::clone(config);
        true
    }

    /// The user the client is logged in as, for the log (`default` when none is).
    pub fn user_name_for_log(&self) -> String {
        self.user_name()
    }

    /// Whether this client has been idle longer than `timeout` (Redis's `timeout`): it
    /// sent nothing and nothing was owed to it for that long. A client waiting for a
    /// reply (a blocking command, a slow one), subscribed or monitoring is never idle;
    /// while it is busy its idle time restarts (at the worker's tick, as Redis counts a
    /// write to it as interaction). Called once a second by the event loop when a
    /// timeout is configured.
    pub fn idle_longer_than(&mut self, timeout: Duration) -> bool {
        let Some(handle) = &self.client.handle else {
            return false;
        };
        let now = handle.clock_ms();
        let busy = !self.places.is_empty()
            || !self.unwritten.is_empty()
            || !self.pushed.is_empty()
            || self.blocked_at.is_some()
            || !self.across.is_empty()
            || self.subscriptions.is_some()
            || handle.is_monitoring();
        if busy {
            self.busy_at = now;
            return false;
        }
        let since = handle.last_read_ms().max(self.busy_at);
        now.saturating_sub(since) > timeout.as_millis() as u64
    }
}

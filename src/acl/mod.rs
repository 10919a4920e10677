//! Client users: who may connect (passwords, kept as SHA-256 digests and compared in
//! constant time) and what each may run (Redis ACL rules, compiled per user). Pure:
//! the session asks, this answers.
//!
//! With no user and no `requirepass` configured, nothing is enforced: every client is
//! Redis's `default` user with every right, and the session never asks.

pub mod categories;
mod rules;
mod secret;

use std::sync::Arc;

pub use rules::{glob, Denied, Patterns, Rules, DEFAULT_RULES};
pub use secret::Secret;

/// Redis's answer to a request before authentication.
pub const NOAUTH: &str = "NOAUTH Authentication required.";
/// Redis's answer to a wrong password, an unknown user or a disabled one.
pub const WRONGPASS: &str = "WRONGPASS invalid username-password pair or user is disabled.";
/// `HELLO` without `AUTH` before authentication.
pub const NOAUTH_HELLO: &str = "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time";

/// One configured user. `Debug` shows no secret.
#[derive(Debug)]
pub struct User {
    pub name: String,
    /// `None`: `nopass`, any password logs in (as Redis).
    secret: Option<Secret>,
    pub enabled: bool,
    pub rules: Rules,
    /// Its rules allow everything: a session logged in as it checks nothing.
    unrestricted: bool,
}

impl User {
    pub fn new(name: String, secret: Option<Secret>, enabled: bool, rules: Rules) -> User {
        let unrestricted = rules.unrestricted();
        User {
            name,
            secret,
            enabled,
            rules,
            unrestricted,
        }
    }

    /// Requests of a session logged in as this user need a look.
    pub fn restricted(&self) -> bool {
        !self.unrestricted
    }

    pub fn nopass(&self) -> bool {
        self.secret.is_none()
    }

    /// Whether `password` logs in as this user (it must also be enabled).
    fn accepts(&self, digest: &Secret) -> bool {
        match &self.secret {
            Some(secret) => secret.matches_digest(digest),
            None => true,
        }
    }

    /// `ACL LIST`'s line, without any password: `user NAME on|off [nopass] RULES`.
    pub fn describe(&self) -> String {
        let mut line = format!(
            "user {} {}",
            self.name,
            if self.enabled { "on" } else { "off" }
        );
        if self.nopass() {
            line.push_str(" nopass");
        }
        let rules = self.rules.describe();
        if !rules.is_empty() {
            line.push(' ');
            line.push_str(&rules);
        }
        line
    }

    /// The same user: name, password, on/off and rules (for a reload's comparison).
    pub fn same_as(&self, other: &User) -> bool {
        self.name == other.name
            && self.secret == other.secret
            && self.enabled == other.enabled
            && self.rules.describe() == other.rules.describe()
    }

    /// `ACL GETUSER`'s flags.
    pub fn flags(&self) -> Vec<&'static str> {
        let mut flags = vec![if self.enabled { "on" } else { "off" }];
        if self.nopass() {
            flags.push("nopass");
        }
        flags
    }
}

/// The configured users, sorted by name.
#[derive(Debug, Default)]
pub struct Users {
    users: Vec<Arc<User>>,
}

impl Users {
    /// No authentication: every client is the unrestricted `default` user.
    pub fn open() -> Users {
        Users::default()
    }

    /// Users by name; two with one name is an error (the name).
    pub fn new(mut users: Vec<User>) -> Result<Users, String> {
        users.sort_by(|a, b| a.name.cmp(&b.name));
        if let Some(pair) = users.windows(2).find(|w| w[0].name == w[1].name) {
            return Err(pair[0].name.clone());
        }
        Ok(Users {
            users: users.into_iter().map(Arc::new).collect(),
        })
    }

    /// Clients must authenticate (unless `default` is `nopass`) and follow their rules.
    pub fn enforced(&self) -> bool {
        !self.users.is_empty()
    }

    pub fn all(&self) -> &[Arc<User>] {
        &self.users
    }

    pub fn get(&self, name: &[u8]) -> Option<&Arc<User>> {
        self.users.iter().find(|u| u.name.as_bytes() == name)
    }

    /// The user a new connection (and `RESET`) is logged in as without `AUTH`: an
    /// enabled `default` user with `nopass`, as Redis.
    pub fn on_connect(&self) -> Option<Arc<User>> {
        self.get(b"default")
            .filter(|u| u.enabled && u.nopass())
            .cloned()
    }

    /// `default` has `nopass`: `AUTH <password>` is then Redis's "no password
    /// configured" error.
    pub fn default_is_nopass(&self) -> bool {
        self.get(b"default").is_some_and(|u| u.nopass())
    }

    /// The user `name` with `password`, if it exists, is enabled and the password is
    /// its. The password is hashed and compared in constant time whether or not the
    /// user exists.
    pub fn authenticate(&self, name: &[u8], password: &[u8]) -> Option<Arc<User>> {
        let digest = Secret::of_password(password);
        match self.get(name) {
            Some(user) => (user.accepts(&digest) && user.enabled).then(|| user.clone()),
            None => {
                // The same work as a wrong password of a real user.
                let _ = Secret::of_password(b"").matches_digest(&digest);
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str, password: Option<&str>, enabled: bool, rules: &str) -> User {
        User::new(
            name.to_string(),
            password.map(|p| Secret::of_password(p.as_bytes())),
            enabled,
            Rules::parse(rules).unwrap(),
        )
    }

    fn users() -> Users {
        Users::new(vec![
            user("default", Some("pw"), true, DEFAULT_RULES),
            user("alice", Some("apw"), true, "+@read ~app:*"),
            user("bob", Some("bpw"), false, "+@all ~*"),
        ])
        .unwrap()
    }

    #[test]
    fn passwords_log_in_enabled_users_only() {
        let u = users();
        assert!(u.enforced());
        assert_eq!(u.authenticate(b"alice", b"apw").unwrap().name, "alice");
        assert!(u.authenticate(b"alice", b"bad").is_none());
        assert!(u.authenticate(b"bob", b"bpw").is_none(), "disabled");
        assert!(u.authenticate(b"nobody", b"apw").is_none());
        assert_eq!(u.authenticate(b"default", b"pw").unwrap().name, "default");
        assert!(u.on_connect().is_none(), "default has a password");
        assert!(!u.default_is_nopass());
    }

    #[test]
    fn a_nopass_default_logs_in_on_connect() {
        let u = Users::new(vec![user("default", None, true, "+@read ~*")]).unwrap();
        assert_eq!(u.on_connect().unwrap().name, "default");
        assert!(u.default_is_nopass());
        assert!(u.authenticate(b"default", b"anything").is_some());
        assert!(!Users::open().enforced());
    }

    #[test]
    fn duplicate_names_are_refused() {
        let e = Users::new(vec![user("a", None, true, ""), user("a", None, true, "")]);
        assert_eq!(e.unwrap_err(), "a");
    }

    #[test]
    fn listings_and_debug_show_no_secret() {
        let u = users();
        let lines: Vec<String> = u.all().iter().map(|u| u.describe()).collect();
        assert_eq!(
            lines,
            [
                "user alice on ~app:* &* -@all +@read",
                "user bob off ~* &* +@all",
                "user default on ~* &* +@all -@admin -@dangerous",
            ]
        );
        let debug = format!("{u:?}");
        assert!(
            !debug.contains("apw") && debug.contains("<redacted>"),
            "{debug}"
        );
        let hash = format!("{:?}", Secret::of_password(b"apw").matches(b"apw"));
        assert_eq!(hash, "true");
    }

    #[test]
    fn unrestricted_users_are_not_checked() {
        assert!(!user("a", None, true, "+@all ~* &*").restricted());
        assert!(user("a", None, true, DEFAULT_RULES).restricted());
    }
}

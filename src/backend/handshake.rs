//! The handshake that opens every connection to a node, defined once for both planes:
//! which commands to send for a protocol and credentials ([`Handshake`]), and how to
//! read the node's reply to each ([`Step::read_reply`]). Pure: the data plane
//! ([`super::connection`]) writes [`Handshake::encode`]'s bytes and checks each reply
//! its scanner frames; the control plane ([`super::control`]) sends the same commands
//! through its codec and checks the decoded replies.

use std::borrow::Cow;
use std::fmt;

use bytes::BytesMut;
use redis_protocol::resp2::types::BytesFrame;

use crate::config::BackendConfig;
use crate::protocol::reply::{encode_command, Proto};

/// One command of a handshake; each is answered by one reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// `AUTH user password`: a RESP2 connection with credentials.
    Auth,
    /// `HELLO 3`, with `AUTH user password` when there are credentials: picks RESP3
    /// and authenticates in the same round trip.
    Hello3,
    /// `READONLY`: a connection that carries reads to a replica (the replica serves
    /// them instead of answering `MOVED` to its master).
    ReadOnly,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Step::Auth => "AUTH",
            Step::Hello3 => "HELLO 3",
            Step::ReadOnly => "READONLY",
        })
    }
}

/// A node refused a connection's handshake: the node's own text, e.g. `WRONGPASS ...`.
/// The caller adds which node ([`super::BackendError::Unreachable`], or the refresher's
/// `backend {addr}: ...`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("handshake refused: {text} (reply to {step})")]
pub struct HandshakeError {
    pub step: Step,
    pub text: String,
}

/// The commands that open a connection to a node in protocol `proto`: `HELLO 3` (with
/// `AUTH` inside when a password is configured) for RESP3, `AUTH` for RESP2 with a
/// password, nothing for RESP2 without one. Built per connection; borrows the
/// credentials from the configuration.
#[derive(Clone, Copy)]
pub struct Handshake<'a> {
    proto: Proto,
    /// `(user, password)`; the user is `default` when only a password is configured.
    credentials: Option<(&'a str, &'a str)>,
    /// Ends with `READONLY` (a connection for reads at replicas).
    readonly: bool,
}

/// Shows the user, never the password.
impl std::fmt::Debug for Handshake<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handshake")
            .field("proto", &self.proto)
            .field("user", &self.credentials.map(|(user, _)| user))
            .field("readonly", &self.readonly)
            .finish()
    }
}

impl<'a> Handshake<'a> {
    pub fn new(proto: Proto, config: &'a BackendConfig) -> Handshake<'a> {
        let user = config.username.as_deref().unwrap_or("default");
        Handshake {
            proto,
            credentials: config.password.as_deref().map(|pass| (user, pass)),
            readonly: false,
        }
    }

    /// The same handshake, ending with `READONLY` when `readonly` (a connection that
    /// carries reads to a replica).
    pub fn readonly(self, readonly: bool) -> Handshake<'a> {
        Handshake { readonly, ..self }
    }

    /// The commands in the order they are sent; their replies come in the same order.
    pub fn steps(&self) -> &'static [Step] {
        match (self.proto, self.credentials.is_some(), self.readonly) {
            (Proto::Resp3, _, false) => &[Step::Hello3],
            (Proto::Resp2, true, false) => &[Step::Auth],
            (Proto::Resp2, false, false) => &[],
            (Proto::Resp3, _, true) => &[Step::Hello3, Step::ReadOnly],
            (Proto::Resp2, true, true) => &[Step::Auth, Step::ReadOnly],
            (Proto::Resp2, false, true) => &[Step::ReadOnly],
        }
    }

    /// One step's command, as arguments.
    pub fn args(&self, step: Step) -> Vec<&'a [u8]> {
        let mut args: Vec<&'a [u8]> = match step {
            Step::Auth => vec![b"AUTH"],
            Step::Hello3 => vec![b"HELLO", b"3"],
            Step::ReadOnly => return vec![b"READONLY"],
        };
        if let Some((user, pass)) = self.credentials {
            if step == Step::Hello3 {
                args.push(b"AUTH");
            }
            args.extend([user.as_bytes(), pass.as_bytes()]);
        }
        args
    }

    /// Every step's command in RESP, back to back: the data plane writes them at once
    /// and reads the replies in order. Empty when there is no step.
    pub fn encode(&self) -> BytesMut {
        let mut out = BytesMut::new();
        for &step in self.steps() {
            out.extend_from_slice(&encode_command(&self.args(step)));
        }
        out
    }
}

impl Step {
    /// Read the node's reply to this step: an error refuses the connection, anything
    /// else (`+OK`, `HELLO`'s map) accepts it.
    pub fn read_reply(self, reply: Reply<'_>) -> Result<(), HandshakeError> {
        match reply {
            Reply::Error(text) => Err(HandshakeError {
                step: self,
                text: text.trim_end().to_string(),
            }),
            Reply::Value => Ok(()),
        }
    }
}

/// A node's reply to a handshake step as either plane has it, reduced to what the
/// handshake reads.
#[derive(Debug, PartialEq, Eq)]
pub enum Reply<'a> {
    /// An error reply, with its text.
    Error(Cow<'a, str>),
    /// Anything else.
    Value,
}

impl<'a> Reply<'a> {
    /// From one complete reply as it came off the wire (the data plane's scanner frames
    /// it): a simple error `-...`, or a RESP3 blob error `!<len>\r\n...`.
    pub fn from_wire(frame: &'a [u8]) -> Reply<'a> {
        let text = match frame.first() {
            Some(b'-') => &frame[1..],
            Some(b'!') => {
                let body = frame
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(&[][..], |nl| &frame[nl + 1..]);
                body.strip_suffix(b"\r\n").unwrap_or(body)
            }
            _ => return Reply::Value,
        };
        Reply::Error(String::from_utf8_lossy(text))
    }

    /// From a reply the control plane's RESP2 codec decoded.
    pub fn from_frame(frame: &'a BytesFrame) -> Reply<'a> {
        match frame {
            BytesFrame::Error(text) => Reply::Error(Cow::Borrowed(text)),
            _ => Reply::Value,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(user: Option<&str>, pass: Option<&str>) -> BackendConfig {
        BackendConfig {
            username: user.map(str::to_string),
            password: pass.map(str::to_string),
            ..BackendConfig::default()
        }
    }

    fn wire(proto: Proto, config: &BackendConfig) -> String {
        String::from_utf8(Handshake::new(proto, config).encode().to_vec()).unwrap()
    }

    #[test]
    fn resp2_without_credentials_sends_nothing() {
        let config = config(None, None);
        assert!(Handshake::new(Proto::Resp2, &config).steps().is_empty());
        assert_eq!(wire(Proto::Resp2, &config), "");
    }

    #[test]
    fn resp2_with_a_password_authenticates_as_default() {
        let config = config(None, Some("s3cret"));
        assert_eq!(Handshake::new(Proto::Resp2, &config).steps(), [Step::Auth]);
        assert_eq!(
            wire(Proto::Resp2, &config),
            "*3\r\n$4\r\nAUTH\r\n$7\r\ndefault\r\n$6\r\ns3cret\r\n"
        );
    }

    #[test]
    fn debug_shows_no_password() {
        let config = config(Some("app"), Some("s3cret"));
        let text = format!("{:?} {config:?}", Handshake::new(Proto::Resp3, &config));
        assert!(text.contains("app") && !text.contains("s3cret"), "{text}");
    }

    #[test]
    fn resp2_with_a_user_authenticates_as_that_user() {
        let config = config(Some("app"), Some("pw"));
        assert_eq!(
            wire(Proto::Resp2, &config),
            "*3\r\n$4\r\nAUTH\r\n$3\r\napp\r\n$2\r\npw\r\n"
        );
    }

    #[test]
    fn resp3_without_credentials_says_hello_3() {
        let config = config(None, None);
        assert_eq!(
            Handshake::new(Proto::Resp3, &config).steps(),
            [Step::Hello3]
        );
        assert_eq!(
            wire(Proto::Resp3, &config),
            "*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n"
        );
    }

    #[test]
    fn resp3_with_credentials_authenticates_inside_hello() {
        let config = config(Some("app"), Some("pw"));
        assert_eq!(
            Handshake::new(Proto::Resp3, &config).steps(),
            [Step::Hello3]
        );
        assert_eq!(
            wire(Proto::Resp3, &config),
            "*5\r\n$5\r\nHELLO\r\n$1\r\n3\r\n$4\r\nAUTH\r\n$3\r\napp\r\n$2\r\npw\r\n"
        );
    }

    #[test]
    fn a_connection_for_replica_reads_ends_with_readonly() {
        let plain = config(None, None);
        let ro = Handshake::new(Proto::Resp2, &plain).readonly(true);
        assert_eq!(ro.steps(), [Step::ReadOnly]);
        assert_eq!(
            String::from_utf8(ro.encode().to_vec()).unwrap(),
            "*1\r\n$8\r\nREADONLY\r\n"
        );
        let auth = config(Some("app"), Some("pw"));
        let ro = Handshake::new(Proto::Resp2, &auth).readonly(true);
        assert_eq!(ro.steps(), [Step::Auth, Step::ReadOnly]);
        assert_eq!(
            String::from_utf8(ro.encode().to_vec()).unwrap(),
            "*3\r\n$4\r\nAUTH\r\n$3\r\napp\r\n$2\r\npw\r\n*1\r\n$8\r\nREADONLY\r\n"
        );
        let ro = Handshake::new(Proto::Resp3, &auth).readonly(true);
        assert_eq!(ro.steps(), [Step::Hello3, Step::ReadOnly]);
        // A replica that refuses (a node not in cluster mode) refuses the connection.
        let refused = b"-ERR This instance has cluster support disabled\r\n";
        let err = Step::ReadOnly
            .read_reply(Reply::from_wire(refused))
            .unwrap_err();
        assert!(err.to_string().contains("(reply to READONLY)"), "{err}");
    }

    #[test]
    fn a_refusal_is_a_typed_error_with_the_nodes_text() {
        let refused = b"-WRONGPASS invalid username-password pair or user is disabled.\r\n";
        let err = Step::Auth
            .read_reply(Reply::from_wire(refused))
            .expect_err("an error reply refuses");
        assert_eq!(
            err,
            HandshakeError {
                step: Step::Auth,
                text: "WRONGPASS invalid username-password pair or user is disabled.".into(),
            }
        );
        assert_eq!(
            err.to_string(),
            "handshake refused: WRONGPASS invalid username-password pair or user is disabled. \
             (reply to AUTH)"
        );

        let blob = b"!25\r\nNOPROTO unsupported HELLO\r\n";
        let err = Step::Hello3.read_reply(Reply::from_wire(blob)).unwrap_err();
        assert_eq!(err.text, "NOPROTO unsupported HELLO");
        assert_eq!(err.step, Step::Hello3);

        let frame = BytesFrame::Error("NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time".into());
        let err = Step::Auth
            .read_reply(Reply::from_frame(&frame))
            .unwrap_err();
        assert!(err.text.starts_with("NOAUTH HELLO must be called"), "{err}");
    }

    #[test]
    fn anything_but_an_error_accepts() {
        assert_eq!(Step::Auth.read_reply(Reply::from_wire(b"+OK\r\n")), Ok(()));
        let hello = b"%1\r\n$6\r\nserver\r\n$5\r\nredis\r\n";
        assert_eq!(Step::Hello3.read_reply(Reply::from_wire(hello)), Ok(()));
        let ok = BytesFrame::SimpleString("OK".into());
        assert_eq!(Step::Auth.read_reply(Reply::from_frame(&ok)), Ok(()));
    }
}

//! Scripts slotgate has seen loaded (`SCRIPT LOAD`) or evaluated (`EVAL`), by SHA1, so
//! that an `EVALSHA` a node answers with `NOSCRIPT` (a replica promoted after a
//! failover, a node added to the cluster, a `SCRIPT FLUSH` on one node) is sent again
//! as an `EVAL` of the script itself: the node runs it and caches it, and the client
//! never learns the node lacked it. Remembered scripts are bounded in bytes; past the
//! bound new ones are not remembered (their `NOSCRIPT` reaches the client, as from a
//! server).

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use bytes::Bytes;
use dashmap::DashMap;

use crate::protocol::reply::encode_command;
use crate::protocol::scan::{Limits, Request, RequestScanner};

/// The most bytes of script bodies remembered.
const MAX_BYTES: usize = 64 * 1024 * 1024;

/// Script bodies by their SHA1, as 40 lower-case hex digits.
#[derive(Default)]
pub struct Scripts {
    by_sha: DashMap<[u8; 40], Bytes>,
    bytes: AtomicUsize,
}

impl Scripts {
    /// Remember `body` (a script sent with `EVAL` or `SCRIPT LOAD`).
    pub fn remember(&self, body: &[u8]) {
        let sha = sha1_hex(body);
        if self.by_sha.contains_key(&sha) {
            return;
        }
        if self.bytes.load(Relaxed) + body.len() > MAX_BYTES {
            tracing::debug!("script memory full; a new script is not remembered");
            return;
        }
        if self
            .by_sha
            .insert(sha, Bytes::copy_from_slice(body))
            .is_none()
        {
            self.bytes.fetch_add(body.len(), Relaxed);
        }
    }

    /// The script whose SHA1 is `sha` (hex, either case), if remembered.
    pub fn body(&self, sha: &[u8]) -> Option<Bytes> {
        let key: [u8; 40] = sha.to_ascii_lowercase().try_into().ok()?;
        self.by_sha.get(&key).map(|b| b.clone())
    }

    /// `EVALSHA sha numkeys ...` (or `EVALSHA_RO`) as the `EVAL` (`EVAL_RO`) of the
    /// script remembered for `sha`; `None` for any other request, or a script not
    /// remembered.
    pub fn as_eval(&self, request: &Bytes) -> Option<Bytes> {
        let request = parse(request)?;
        let eval: &[u8] = if request.arg(0).eq_ignore_ascii_case(b"evalsha") {
            b"EVAL"
        } else if request.arg(0).eq_ignore_ascii_case(b"evalsha_ro") {
            b"EVAL_RO"
        } else {
            return None;
        };
        if request.argc() < 3 {
            return None;
        }
        let body = self.body(request.arg(1))?;
        let mut args: Vec<&[u8]> = vec![eval, &body];
        args.extend(request.args().skip(2));
        Some(encode_command(&args).freeze())
    }
}

/// A request's bytes as the proxy sent them, parsed again.
fn parse(bytes: &Bytes) -> Option<Request> {
    let mut buf = bytes::BytesMut::from(&bytes[..]);
    RequestScanner::new(Limits::default())
        .next_request(&mut buf)
        .ok()
        .flatten()
}

/// SHA1 of `data` as 40 lower-case hex digits, as Redis names scripts.
fn sha1_hex(data: &[u8]) -> [u8; 40] {
    let digest = sha1_smol::Sha1::from(data).digest().bytes();
    let mut out = [0u8; 40];
    for (i, byte) in digest.iter().enumerate() {
        out[2 * i] = b"0123456789abcdef"[(byte >> 4) as usize];
        out[2 * i + 1] = b"0123456789abcdef"[(byte & 15) as usize];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sha_is_redis_s() {
        // redis-cli SCRIPT LOAD "return 1"
        assert_eq!(
            &sha1_hex(b"return 1"),
            b"e0e1f9fabfc9d4800c877a703b823ac0578ff8db"
        );
    }

    #[test]
    fn an_evalsha_of_a_remembered_script_becomes_its_eval() {
        let scripts = Scripts::default();
        scripts.remember(b"return KEYS[1]");
        let sha = String::from_utf8(sha1_hex(b"return KEYS[1]").to_vec()).unwrap();
        let req = encode_command(&[b"evalsha", sha.to_uppercase().as_bytes(), b"1", b"k"]).freeze();
        assert_eq!(
            scripts.as_eval(&req).unwrap(),
            encode_command(&[b"EVAL", b"return KEYS[1]", b"1", b"k"])
        );
        let ro = encode_command(&[b"EVALSHA_RO", sha.as_bytes(), b"0"]).freeze();
        assert_eq!(
            scripts.as_eval(&ro).unwrap(),
            encode_command(&[b"EVAL_RO", b"return KEYS[1]", b"0"])
        );
        let unknown = encode_command(&[b"EVALSHA", &[b'0'; 40], b"0"]).freeze();
        assert_eq!(scripts.as_eval(&unknown), None);
        let other = encode_command(&[b"GET", sha.as_bytes()]).freeze();
        assert_eq!(scripts.as_eval(&other), None);
    }
}

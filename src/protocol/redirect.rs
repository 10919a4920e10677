//! Redirects: what an error reply from a node means for routing. Pure.
//!
//! Only the error code (the first word) and, for `MOVED`/`ASK`, the slot and address
//! are read; the rest of the text is Redis's own prose and may change. The one
//! exception is `UNBLOCKED`, which means two things: the role change below is told
//! apart from `CLIENT UNBLOCK ... ERROR` (delivered) by its text. Anything
//! that does not parse cleanly is "not a redirect" (`None`), so the reply goes to
//! the client as it is rather than being acted on wrongly.

use crate::cluster::addr::NodeAddr;
use crate::slot::Slot;

/// What an error reply from a node means for routing: the dispatcher's one `match`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Redirect {
    /// `MOVED slot host:port`: the slot now lives at `addr`. Patch the slot table,
    /// schedule a refresh and resend there.
    Moved { slot: Slot, addr: NodeAddr },
    /// `ASK slot host:port`: this request (only) goes to `addr`, preceded by
    /// `ASKING`, while the slot migrates; the slot table stays as it is.
    Ask { slot: Slot, addr: NodeAddr },
    /// `TRYAGAIN`: a multi-key request met a slot whose keys are split by a
    /// migration in progress. Retry after a short backoff.
    TryAgain,
    /// `CLUSTERDOWN` (the cluster is down, or the hash slot is not served):
    /// refresh the topology and retry until the request's deadline.
    ClusterDown,
    /// `MASTERDOWN`: a replica lost its link to its master (with
    /// `replica-serve-stale-data no`) — usually a failover under way. Treated like
    /// `ClusterDown`: refresh and retry until the deadline. Also what
    /// `UNBLOCKED force unblock from blocking operation, instance state changed` means:
    /// a master that turned replica (a coordinated failover) unblocked a blocking command
    /// before it popped anything; it goes to the new master.
    MasterDown,
    /// `LOADING`: the node is loading its dataset (just restarted or resynced) and
    /// answers nothing else yet. Retry after a backoff until the deadline; the
    /// topology has not changed, so no refresh is needed.
    Loading,
}

/// Parse a whole reply frame (`-` ... CRLF); `None` when it is not a redirect: any
/// other error, a non-error reply, or a redirect too malformed to act on.
///
/// `from` is the node that sent the reply: a `MOVED`/`ASK` with an empty (or `"?"`,
/// "unknown endpoint") host — `MOVED 3999 :6381`, sent by a node that knows no
/// address for the target — means the target is on `from`'s host.
///
/// Runs on every error reply, so it looks at the first two bytes before anything else.
pub fn parse_redirect(reply: &[u8], from: &NodeAddr) -> Option<Redirect> {
    let [b'-', first, ..] = reply else {
        return None;
    };
    if !matches!(first, b'M' | b'A' | b'T' | b'C' | b'L' | b'U') {
        return None;
    }
    let text = reply.get(1..)?;
    let text = text.strip_suffix(b"\r\n").unwrap_or(text);
    if text.iter().any(|&b| b == b'\r' || b == b'\n') {
        return None;
    }
    parse_error_text(text, from)
}

/// Parse an error's text without the leading `-` and the CRLF, e.g.
/// `MOVED 3999 127.0.0.1:6381` (for errors that reach the proxy some other way,
/// such as a RESP3 blob error). See [`parse_redirect`].
pub fn parse_error_text(text: &[u8], from: &NodeAddr) -> Option<Redirect> {
    let mut words = text.splitn(2, |&b| b == b' ');
    let code = words.next()?;
    let rest = words.next().unwrap_or_default();
    match code {
        b"MOVED" => parse_target(rest, from).map(|(slot, addr)| Redirect::Moved { slot, addr }),
        b"ASK" => parse_target(rest, from).map(|(slot, addr)| Redirect::Ask { slot, addr }),
        b"TRYAGAIN" => Some(Redirect::TryAgain),
        b"CLUSTERDOWN" => Some(Redirect::ClusterDown),
        b"MASTERDOWN" => Some(Redirect::MasterDown),
        b"LOADING" => Some(Redirect::Loading),
        b"UNBLOCKED" if rest.starts_with(ROLE_CHANGED) => Some(Redirect::MasterDown),
        _ => None,
    }
}

/// How Redis (7.0 to 7.2, `disconnectAllBlockedClients`) words the unblocking of a
/// blocked client when its master turns replica; `CLIENT UNBLOCK id ERROR` says
/// `UNBLOCKED client unblocked via CLIENT UNBLOCK` instead.
const ROLE_CHANGED: &[u8] = b"force unblock from blocking operation, instance state changed";

/// `<slot> <host>:<port>` with nothing after it. The host may be a name, an IPv4
/// address, an IPv6 address bare (`::1:7000`, as Redis prints it) or bracketed
/// (`[::1]:7000`), or empty/`?` (then `from`'s host).
fn parse_target(text: &[u8], from: &NodeAddr) -> Option<(Slot, NodeAddr)> {
    let mut parts = text.split(|&b| b == b' ');
    let (slot, addr) = (parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let slot = Slot::new(decimal_u16(slot)?)?;
    let (host, port) = std::str::from_utf8(addr).ok()?.rsplit_once(':')?;
    let port = decimal_u16(port.as_bytes()).filter(|&port| port != 0)?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.bytes().any(|b| b.is_ascii_control()) {
        return None;
    }
    let host = if host.is_empty() || host == "?" {
        host_of(from)
    } else {
        host
    };
    Some((slot, NodeAddr::new(host, port)))
}

/// 1 to 5 ASCII digits, nothing else (no sign, no spaces).
fn decimal_u16(digits: &[u8]) -> Option<u16> {
    if digits.is_empty() || digits.len() > 5 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// The host part of `host:port` / `[v6]:port`, without brackets.
fn host_of(addr: &NodeAddr) -> &str {
    let text = addr.as_str();
    let host = text.rsplit_once(':').map_or(text, |(host, _)| host);
    host.trim_start_matches('[').trim_end_matches(']')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(text: &str) -> NodeAddr {
        NodeAddr::parse(text).unwrap()
    }

    fn slot(n: u16) -> Slot {
        Slot::new(n).unwrap()
    }

    fn from() -> NodeAddr {
        node("10.0.0.9:7000")
    }

    // Error replies captured from a Redis 7.0.15 cluster (3 masters + 3 replicas on
    // 127.0.0.1:27001-27006) while slot 12182 migrated from :27003 to :27001.
    const CAPTURED_ASK: &[u8] = b"-ASK 12182 127.0.0.1:27001\r\n";
    const CAPTURED_MOVED: &[u8] = b"-MOVED 12182 127.0.0.1:27003\r\n";
    /// With `cluster-preferred-endpoint-type hostname` on the sender.
    const CAPTURED_MOVED_HOSTNAME: &[u8] = b"-MOVED 12182 node-27003.example.test:27003\r\n";
    /// With `cluster-preferred-endpoint-type unknown-endpoint` on the sender.
    const CAPTURED_MOVED_NO_HOST: &[u8] = b"-MOVED 12182 :27003\r\n";
    const CAPTURED_TRYAGAIN: &[u8] =
        b"-TRYAGAIN Multiple keys request during rehashing of slot\r\n";
    const CAPTURED_CLUSTERDOWN: &[u8] = b"-CLUSTERDOWN The cluster is down\r\n";
    const CAPTURED_NOT_SERVED: &[u8] = b"-CLUSTERDOWN Hash slot not served\r\n";
    const CAPTURED_MASTERDOWN: &[u8] =
        b"-MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.\r\n";
    /// Told a `BLPOP` blocked at a master turned replica by `CLUSTER FAILOVER`.
    const CAPTURED_UNBLOCKED_ROLE: &[u8] =
        b"-UNBLOCKED force unblock from blocking operation, instance state changed (master -> replica?)\r\n";
    const CAPTURED_UNBLOCKED_CLIENT: &[u8] = b"-UNBLOCKED client unblocked via CLIENT UNBLOCK\r\n";
    const CAPTURED_CROSSSLOT: &[u8] = b"-CROSSSLOT Keys in request don't hash to the same slot\r\n";

    #[test]
    fn captured_moved_and_ask() {
        let from = node("127.0.0.1:27001");
        assert_eq!(
            parse_redirect(CAPTURED_MOVED, &from),
            Some(Redirect::Moved {
                slot: slot(12182),
                addr: node("127.0.0.1:27003")
            })
        );
        assert_eq!(
            parse_redirect(CAPTURED_ASK, &node("127.0.0.1:27003")),
            Some(Redirect::Ask {
                slot: slot(12182),
                addr: node("127.0.0.1:27001")
            })
        );
        assert_eq!(
            parse_redirect(CAPTURED_MOVED_HOSTNAME, &from),
            Some(Redirect::Moved {
                slot: slot(12182),
                addr: node("node-27003.example.test:27003")
            })
        );
    }

    #[test]
    fn empty_host_means_the_senders_host() {
        assert_eq!(
            parse_redirect(CAPTURED_MOVED_NO_HOST, &node("127.0.0.1:27001")),
            Some(Redirect::Moved {
                slot: slot(12182),
                addr: node("127.0.0.1:27003")
            })
        );
        assert_eq!(
            parse_redirect(b"-ASK 3999 :6381\r\n", &from()),
            Some(Redirect::Ask {
                slot: slot(3999),
                addr: node("10.0.0.9:6381")
            })
        );
        assert_eq!(
            parse_redirect(b"-MOVED 3999 ?:6381\r\n", &from()),
            Some(Redirect::Moved {
                slot: slot(3999),
                addr: node("10.0.0.9:6381")
            })
        );
        // An IPv6 sender keeps its brackets in the result.
        assert_eq!(
            parse_redirect(b"-MOVED 1 :7001\r\n", &node("[::1]:7000")),
            Some(Redirect::Moved {
                slot: slot(1),
                addr: node("[::1]:7001")
            })
        );
    }

    #[test]
    fn ipv6_targets() {
        let want = Some(Redirect::Moved {
            slot: slot(3999),
            addr: node("[::1]:7000"),
        });
        assert_eq!(parse_redirect(b"-MOVED 3999 [::1]:7000\r\n", &from()), want);
        assert_eq!(parse_redirect(b"-MOVED 3999 ::1:7000\r\n", &from()), want);
        assert_eq!(
            parse_redirect(b"-ASK 0 fe80::1:2:3:4:6379\r\n", &from()),
            Some(Redirect::Ask {
                slot: slot(0),
                addr: node("[fe80::1:2:3:4]:6379")
            })
        );
        assert_eq!(
            parse_redirect(
                b"-ASK 16383 redis-0.redis.svc.cluster.local:6379\r\n",
                &from()
            ),
            Some(Redirect::Ask {
                slot: slot(16383),
                addr: node("redis-0.redis.svc.cluster.local:6379")
            })
        );
    }

    #[test]
    fn retryable_errors() {
        let from = from();
        assert_eq!(
            parse_redirect(CAPTURED_TRYAGAIN, &from),
            Some(Redirect::TryAgain)
        );
        assert_eq!(
            parse_redirect(CAPTURED_CLUSTERDOWN, &from),
            Some(Redirect::ClusterDown)
        );
        assert_eq!(
            parse_redirect(CAPTURED_NOT_SERVED, &from),
            Some(Redirect::ClusterDown)
        );
        assert_eq!(
            parse_redirect(
                b"-CLUSTERDOWN The cluster is down and only accepts read commands\r\n",
                &from
            ),
            Some(Redirect::ClusterDown)
        );
        assert_eq!(
            parse_redirect(CAPTURED_MASTERDOWN, &from),
            Some(Redirect::MasterDown)
        );
        // A blocked command unblocked by a failover goes to the new master; one
        // unblocked by `CLIENT UNBLOCK ... ERROR` gets its error.
        assert_eq!(
            parse_redirect(CAPTURED_UNBLOCKED_ROLE, &from),
            Some(Redirect::MasterDown)
        );
        assert_eq!(parse_redirect(CAPTURED_UNBLOCKED_CLIENT, &from), None);
        assert_eq!(
            parse_redirect(
                b"-LOADING Redis is loading the dataset in memory\r\n",
                &from
            ),
            Some(Redirect::Loading)
        );
        // A bare code with nothing after it still counts.
        assert_eq!(
            parse_redirect(b"-TRYAGAIN\r\n", &from),
            Some(Redirect::TryAgain)
        );
        assert_eq!(
            parse_redirect(b"-CLUSTERDOWN\r\n", &from),
            Some(Redirect::ClusterDown)
        );
    }

    #[test]
    fn other_replies_are_not_redirects() {
        let from = from();
        for reply in [
            CAPTURED_CROSSSLOT,
            b"-ERR unknown command 'FOO'\r\n".as_slice(),
            b"-MOVEDX 1 127.0.0.1:7000\r\n",
            b"-ASKING\r\n",
            b"-LOADINGX\r\n",
            b"-CLUSTERDOWNS\r\n",
            b"-moved 1 127.0.0.1:7000\r\n",
            b"+MOVED 1 127.0.0.1:7000\r\n",
            b"$5\r\nMOVED\r\n",
            b"+OK\r\n",
            b":1\r\n",
            b"*0\r\n",
            b"",
            b"-",
            b"-\r\n",
        ] {
            assert_eq!(
                parse_redirect(reply, &from),
                None,
                "{:?}",
                String::from_utf8_lossy(reply)
            );
        }
    }

    #[test]
    fn malformed_redirects_are_none() {
        let from = from();
        for reply in [
            b"-MOVED\r\n".as_slice(),
            b"-MOVED \r\n",
            b"-MOVED 3999\r\n",
            b"-MOVED 3999 \r\n",
            b"-MOVED 3999 127.0.0.1\r\n",
            b"-MOVED 3999 127.0.0.1:\r\n",
            b"-MOVED 3999 127.0.0.1:0\r\n",
            b"-MOVED 3999 127.0.0.1:65536\r\n",
            b"-MOVED 3999 127.0.0.1:+80\r\n",
            b"-MOVED 3999 127.0.0.1:-1\r\n",
            b"-MOVED 16384 127.0.0.1:7000\r\n",
            b"-MOVED 99999 127.0.0.1:7000\r\n",
            b"-MOVED 999999999999 127.0.0.1:7000\r\n",
            b"-MOVED -1 127.0.0.1:7000\r\n",
            b"-MOVED +1 127.0.0.1:7000\r\n",
            b"-MOVED x 127.0.0.1:7000\r\n",
            b"-MOVED 3999  127.0.0.1:7000\r\n",
            b"-MOVED 3999 127.0.0.1:7000 extra\r\n",
            b"-MOVED 3999 127.0.0.1:7000 \r\n",
            b"-MOVED 3999 127.0.0.1:7000\r\n-MOVED 1 127.0.0.1:7001\r\n",
            b"-MOVED 3999 127.0.0.1:7000\n",
            b"-MOVED 3999 127.0.\x01.1:7000\r\n",
            b"-MOVED 3999 \xff\xfe:7000\r\n",
            b"-ASK 3999\r\n",
        ] {
            assert_eq!(
                parse_redirect(reply, &from),
                None,
                "{:?}",
                String::from_utf8_lossy(reply)
            );
        }
    }

    #[test]
    fn missing_crlf_is_tolerated() {
        assert_eq!(
            parse_redirect(b"-MOVED 5 127.0.0.1:7000", &from()),
            Some(Redirect::Moved {
                slot: slot(5),
                addr: node("127.0.0.1:7000")
            })
        );
    }

    #[test]
    fn error_text_without_framing() {
        assert_eq!(
            parse_error_text(b"ASK 3999 127.0.0.1:6381", &from()),
            Some(Redirect::Ask {
                slot: slot(3999),
                addr: node("127.0.0.1:6381")
            })
        );
        assert_eq!(parse_error_text(b"", &from()), None);
    }

    #[test]
    fn never_panics() {
        // Every truncation of every sample, then pseudo-random mutations of them.
        let samples: [&[u8]; 9] = [
            CAPTURED_UNBLOCKED_ROLE,
            CAPTURED_ASK,
            CAPTURED_MOVED,
            CAPTURED_MOVED_HOSTNAME,
            CAPTURED_MOVED_NO_HOST,
            CAPTURED_TRYAGAIN,
            CAPTURED_MASTERDOWN,
            b"-MOVED 3999 [::1]:7000\r\n",
            b"-ASK 1 ::1:7000\r\n",
        ];
        let from = node("[::1]:7000");
        for sample in samples {
            for end in 0..=sample.len() {
                for start in 0..=end {
                    let _ = parse_redirect(&sample[start..end], &from);
                }
            }
        }
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let alphabet = b"-MOVEDASK :[]?0123456789\r\n\xff";
        for round in 0..20_000 {
            let mut bytes = samples[round % samples.len()].to_vec();
            for _ in 0..(next() % 4) {
                let at = (next() as usize) % bytes.len();
                bytes[at] = alphabet[(next() as usize) % alphabet.len()];
            }
            let _ = parse_redirect(&bytes, &from);
        }
    }
}

//! Commands the proxy answers itself: the handshake (`HELLO`, `AUTH`, `CLIENT ...`),
//! `PING`, `ECHO`, `SELECT`, `INFO`, `QUIT`, `RESET`, and the `CLUSTER` queries of
//! cluster-aware clients ([`super::cluster_face`]).

use bytes::Bytes;

use super::cluster_face::{self, ClusterFace};
use super::Session;
use crate::command::Local;
use crate::protocol::reply::Proto;
use crate::protocol::scan::Request;

impl Session {
    pub(super) fn local(&mut self, which: Local, req: &Request) {
        match which {
            Local::Ping => match req.argc() {
                1 => self.push_local(|w| w.simple("PONG")),
                2 => {
                    let msg = req.arg(1).to_vec();
                    self.push_local(|w| w.bulk(&msg))
                }
                _ => self.push_error("ERR wrong number of arguments for 'ping' command"),
            },
            Local::Echo => {
                let msg = req.arg(1).to_vec();
                self.push_local(|w| w.bulk(&msg))
            }
            Local::Quit => {
                self.push_local(|w| w.ok());
                self.stop();
            }
            Local::Select => {
                if req.arg(1) == b"0" {
                    self.push_local(|w| w.ok())
                } else {
                    self.push_error("ERR SELECT is not allowed in cluster mode")
                }
            }
            Local::Auth => self.auth(req),
            Local::AclWhoAmI
            | Local::AclUsers
            | Local::AclList
            | Local::AclGetUser
            | Local::AclCat => self.acl(which, req),
            Local::Hello => self.hello(req),
            Local::ClientSetName => match valid_name(req.arg(2)) {
                Ok(name) => {
                    self.name = name;
                    self.publish_names();
                    self.push_local(|w| w.ok())
                }
                Err(e) => self.push_error(e),
            },
            Local::ClientGetName => {
                let name = self.name.clone();
                self.push_local(|w| match name {
                    Some(n) => w.bulk(&n),
                    None => w.null(),
                })
            }
            Local::ClientId => {
                let id = self.id.0 as i64;
                self.push_local(|w| w.int(id))
            }
            Local::ClientSetInfo => {
                let attr = req.arg(2).to_ascii_lowercase();
                let value = Bytes::copy_from_slice(req.arg(3));
                if value.iter().any(|b| !(b'!'..=b'~').contains(b)) {
                    return self.push_error(
                        "ERR lib-name/lib-ver cannot contain spaces, newlines or special characters.",
                    );
                }
                match attr.as_slice() {
                    b"lib-name" => self.lib_name = Some(value),
                    b"lib-ver" => self.lib_ver = Some(value),
                    _ => {
                        let text = format!(
                            "ERR Unrecognized option '{}'",
                            String::from_utf8_lossy(req.arg(2))
                        );
                        return self.push_error(&text);
                    }
                }
                self.publish_names();
                self.push_local(|w| w.ok())
            }
            Local::ClientInfo => self.client_info(req),
            Local::ClientList => self.client_list(req),
            Local::ClientKill => self.client_kill(req),
            Local::ClientUnblock => self.client_unblock(req),
            Local::ClientReply => self.client_reply(req),
            Local::ClientNoEvict => self.client_no_evict(req),
            Local::ClientNoTouch => self.client_no_touch(req),
            Local::Monitor => self.monitor(),
            Local::ReadOnly => self.read_only(),
            Local::ReadWrite => {
                self.read_write();
                self.push_local(|w| w.ok())
            }
            // `Session::info` answers it with the masters' figures; here without them.
            Local::Info => {
                let text = self.render_info(&["server".to_string(), "proxy".to_string()], None);
                self.push_local(|w| w.verbatim(&text))
            }
            Local::Reset => {
                self.proto = Proto::Resp2;
                self.name = None;
                self.end_transaction();
                self.reset_client_state();
                self.read_write();
                self.reset_user();
                self.publish_names();
                self.push_local(|w| w.simple("RESET"))
            }
            Local::ClusterSlots => {
                let face = self.cluster_face();
                self.push_local(|w| face.slots(w))
            }
            Local::ClusterShards => {
                let face = self.cluster_face();
                self.push_local(|w| face.shards(w))
            }
            Local::ClusterNodes => {
                let face = self.cluster_face();
                self.push_local(|w| face.nodes(w))
            }
            Local::ClusterInfo => {
                let face = self.cluster_face();
                self.push_local(|w| face.info(w))
            }
            Local::ClusterMyId => {
                let face = self.cluster_face();
                self.push_local(|w| face.myid(w))
            }
            Local::ClusterMyShardId => {
                let face = self.cluster_face();
                self.push_local(|w| face.myshardid(w))
            }
            Local::ClusterKeySlot => self.push_local(|w| cluster_face::keyslot(req.arg(2), w)),
            #[allow(unreachable_patterns)]
            _ => self.push_error("ERR this command is not supported by slotgate yet"),
        }
    }

    /// `HELLO [protover [AUTH user pass] [SETNAME name]]`: switch protocol and describe the
    /// server as one standalone Redis, so clients do not go into cluster mode.
    fn hello(&mut self, req: &Request) {
        let mut proto = self.proto;
        if req.argc() >= 2 {
            proto = match req.arg(1) {
                b"2" => Proto::Resp2,
                b"3" => Proto::Resp3,
                other => {
                    return if std::str::from_utf8(other)
                        .ok()
                        .and_then(|s| s.parse::<i64>().ok())
                        .is_some()
                    {
                        self.push_error("NOPROTO unsupported protocol version")
                    } else {
                        self.push_error("ERR Protocol version is not an integer or out of range")
                    };
                }
            };
        }
        let mut name = None;
        let mut i = 2;
        while i < req.argc() {
            let option = req.arg(i).to_ascii_uppercase();
            let more = req.argc() - i - 1;
            if option == b"AUTH" && more >= 2 {
                if let Err(e) = self.log_in(req.arg(i + 1), req.arg(i + 2)) {
                    return self.push_error(e);
                }
                i += 3;
            } else if option == b"SETNAME" && more >= 1 {
                match valid_name(req.arg(i + 1)) {
                    Ok(n) => name = Some(n),
                    Err(e) => return self.push_error(e),
                }
                i += 2;
            } else {
                let text = format!(
                    "ERR Syntax error in HELLO option '{}'",
                    String::from_utf8_lossy(req.arg(i))
                );
                return self.push_error(&text);
            }
        }
        if let Some(e) = self.hello_needs_auth() {
            return self.push_error(e);
        }
        if let Some(n) = name {
            self.name = n;
        }
        self.proto = proto;
        self.publish_names();
        let version = self.server_version();
        let id = self.id.0 as i64;
        let proto_num = if proto == Proto::Resp3 { 3 } else { 2 };
        self.push_local(|w| {
            w.map(7);
            w.bulk(b"server");
            w.bulk(b"redis");
            w.bulk(b"version");
            w.bulk(version.as_bytes());
            w.bulk(b"proto");
            w.int(proto_num);
            w.bulk(b"id");
            w.int(id);
            w.bulk(b"mode");
            w.bulk(b"standalone");
            w.bulk(b"role");
            w.bulk(b"master");
            w.bulk(b"modules");
            w.array(0);
        });
    }

    /// slotgate as a one-node cluster at the address this client connected to, owning
    /// the slots the published table serves.
    fn cluster_face(&self) -> ClusterFace {
        let served = cluster_face::served_runs(&self.shared.table.load());
        ClusterFace::new(self.config.listen, self.local_addr, served)
    }

    pub(super) fn server_version(&self) -> String {
        self.shared
            .server_version
            .load_full()
            .map_or_else(|| "7.0.0".to_string(), |v| v.as_ref().clone())
    }
}

/// A client name as `CLIENT SETNAME` accepts it; empty clears the name.
fn valid_name(name: &[u8]) -> Result<Option<Bytes>, &'static str> {
    if name.iter().any(|b| !(b'!'..=b'~').contains(b)) {
        return Err("ERR Client names cannot contain spaces, newlines or special characters.");
    }
    Ok((!name.is_empty()).then(|| Bytes::copy_from_slice(name)))
}

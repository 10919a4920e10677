//! A client's side of pub/sub: its own subscriptions (for the counts in Redis's
//! confirmations, for `UNSUBSCRIBE` with no argument, and to leave them all on `RESET`
//! or when it goes), the confirmations in the client's protocol, and RESP2 subscriber
//! mode. The subscriptions themselves are its worker's hub's
//! ([`crate::dispatch::pubsub`]), shared with the worker's other clients; the hub
//! delivers the messages.

use std::collections::HashSet;

use bytes::{Bytes, BytesMut};

use super::Session;
use crate::admin::{Metrics, METRICS};
use crate::backend::{Place, ReplyTo};
use crate::command::Local;
use crate::dispatch::pubsub::{Kind, Subscriber};
use crate::dispatch::Worker;
use crate::protocol::reply::{Proto, ReplyWriter};
use crate::protocol::scan::Request;

/// The commands Redis accepts from a RESP2 client with subscriptions.
const SUBSCRIBER_MODE: &str =
    "only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context";

/// What one client subscribes to (kept only while it has something).
#[derive(Default)]
pub(super) struct Subscriptions {
    channels: HashSet<Bytes>,
    patterns: HashSet<Bytes>,
    shard: HashSet<Bytes>,
}

impl Subscriptions {
    fn of(&mut self, kind: Kind) -> &mut HashSet<Bytes> {
        match kind {
            Kind::Channel => &mut self.channels,
            Kind::Pattern => &mut self.patterns,
            Kind::Shard => &mut self.shard,
        }
    }

    /// The count a confirmation of `kind` carries, as Redis counts: channels and
    /// patterns together, shard channels apart.
    fn count(&self, kind: Kind) -> usize {
        match kind {
            Kind::Channel | Kind::Pattern => self.channels.len() + self.patterns.len(),
            Kind::Shard => self.shard.len(),
        }
    }

    fn is_empty(&self) -> bool {
        self.channels.is_empty() && self.patterns.is_empty() && self.shard.is_empty()
    }
}

/// Append Redis's (un)subscribe confirmation: `[subscribe, channel, count]`, a push in
/// RESP3; a nil channel for an unsubscribe with nothing to leave.
fn confirmation(
    out: &mut BytesMut,
    proto: Proto,
    kind: Kind,
    subscribe: bool,
    name: Option<&[u8]>,
    count: usize,
) {
    let mut w = ReplyWriter { out, proto };
    w.push(3);
    w.bulk(kind.confirmation(subscribe));
    match name {
        Some(name) => w.bulk(name),
        None => w.null(),
    }
    w.int(count as i64);
}

impl Session {
    /// `(P|S)SUBSCRIBE`, `(P|S)UNSUBSCRIBE` (`name`, lower-case).
    pub(super) fn pubsub(&mut self, w: &mut Worker, name: &str, req: &Request) {
        match Kind::of_command(name) {
            Some((kind, true)) => self.subscribe(w, kind, req),
            Some((kind, false)) => self.unsubscribe(w, kind, req),
            None => self.push_error("ERR slotgate: not a subscription command"),
        }
    }

    /// One confirmation per channel, in order. A channel the node has confirmed (or
    /// this client had already) is answered at once; a new one when the node confirms
    /// it, so no message published after the client saw its confirmation is missed.
    fn subscribe(&mut self, w: &mut Worker, kind: Kind, req: &Request) {
        let who = Subscriber {
            session: self.key,
            client: self.id.0,
            proto: self.proto,
        };
        let mut ready = BytesMut::new();
        for i in 1..req.argc() {
            let name = Bytes::copy_from_slice(req.arg(i));
            let subs = self.subscriptions.get_or_insert_with(Box::default);
            let new = subs.of(kind).insert(name.clone());
            let count = subs.count(kind);
            let mut frame = BytesMut::new();
            confirmation(&mut frame, self.proto, kind, true, Some(&name), count);
            let (hub, mut io) = w.pubsub();
            if !new || hub.subscribe(&mut io, kind, &name, who) {
                ready.extend_from_slice(&frame);
                continue;
            }
            if !ready.is_empty() {
                self.push_ready(ready.split().freeze());
            }
            let place = Place {
                session: self.key,
                client: self.id.0,
                seq: self.reserve(),
                part: Place::WHOLE,
            };
            // Filling the place counts a reply in, as for a request sent to a node.
            self.sent += 1;
            let (hub, mut io) = w.pubsub();
            hub.await_confirmation(&mut io, kind, &name, ReplyTo::new(place), frame.freeze());
        }
        if !ready.is_empty() {
            self.push_ready(ready.freeze());
        }
        self.publish_subscriptions();
    }

    /// What `CLIENT LIST` shows of this client's subscriptions (`sub`, `psub`, `ssub`).
    fn publish_subscriptions(&self) {
        let (sub, psub, ssub) = self.subscriptions.as_ref().map_or((0, 0, 0), |s| {
            (s.channels.len(), s.patterns.len(), s.shard.len())
        });
        let n = |x: usize| x.min(u32::MAX as usize) as u32;
        if let Some(handle) = &self.client.handle {
            handle.set_subscriptions(n(sub), n(psub), n(ssub));
        }
    }

    /// One confirmation per channel left (every one of `kind` with no argument), answered
    /// here: the node's subscription goes when the worker's last subscriber leaves.
    fn unsubscribe(&mut self, w: &mut Worker, kind: Kind, req: &Request) {
        let names: Vec<Bytes> = if req.argc() > 1 {
            (1..req.argc())
                .map(|i| Bytes::copy_from_slice(req.arg(i)))
                .collect()
        } else {
            self.subscriptions
                .as_mut()
                .map(|subs| subs.of(kind).iter().cloned().collect())
                .unwrap_or_default()
        };
        let count = |s: &Option<Box<Subscriptions>>| s.as_ref().map_or(0, |s| s.count(kind));
        let mut out = BytesMut::new();
        if names.is_empty() {
            confirmation(
                &mut out,
                self.proto,
                kind,
                false,
                None,
                count(&self.subscriptions),
            );
        }
        for name in names {
            let left = self
                .subscriptions
                .as_mut()
                .is_some_and(|subs| subs.of(kind).remove(&name));
            if left {
                let (hub, mut io) = w.pubsub();
                hub.unsubscribe(&mut io, kind, &name, self.key, self.id.0);
            }
            let count = count(&self.subscriptions);
            confirmation(&mut out, self.proto, kind, false, Some(&name), count);
        }
        if self.subscriptions.as_ref().is_some_and(|s| s.is_empty()) {
            self.subscriptions = None;
        }
        self.push_ready(out.freeze());
        self.publish_subscriptions();
    }

    /// Leave every subscription (`RESET`, or the client is gone).
    pub fn leave_pubsub(&mut self, w: &mut Worker) {
        let Some(mut subs) = self.subscriptions.take() else {
            return;
        };
        let (hub, mut io) = w.pubsub();
        for kind in Kind::ALL {
            for name in subs.of(kind).drain() {
                hub.unsubscribe(&mut io, kind, &name, self.key, self.id.0);
            }
        }
        self.publish_subscriptions();
    }

    /// A request from a client with subscriptions: true when answered here. In RESP2
    /// only the commands Redis allows in subscriber mode are taken (after Redis's own
    /// checks: an unknown command or a wrong arity is answered as usual), and `PING`
    /// answers as a message. `RESET` leaves every subscription first; a `HELLO` that
    /// switches protocol switches the messages too.
    pub(super) fn subscribed_takes(&mut self, w: &mut Worker, req: &Request) -> bool {
        let name = req.arg(0);
        let is = |n: &str| name.eq_ignore_ascii_case(n.as_bytes());
        if is("reset") {
            self.leave_pubsub(w);
            return false;
        }
        if self.proto == Proto::Resp3 {
            if is("hello") {
                Metrics::inc(&METRICS.requests_local);
                self.local(Local::Hello, req);
                self.follow_proto(w);
                return true;
            }
            return false;
        }
        if is("ping") && req.argc() <= 2 {
            Metrics::inc(&METRICS.requests_local);
            let arg = (req.argc() == 2).then(|| req.arg(1).to_vec());
            self.push_local(|w| {
                w.array(2);
                w.bulk(b"pong");
                w.bulk(arg.as_deref().unwrap_or_default());
            });
            return true;
        }
        let allowed = [
            "subscribe",
            "psubscribe",
            "ssubscribe",
            "unsubscribe",
            "punsubscribe",
            "sunsubscribe",
            "ping",
            "quit",
            "reset",
        ];
        if allowed.iter().any(|n| is(n)) {
            return false;
        }
        // Not `classify`: it keeps one caller on the request path. Its errors come
        // first, as in Redis: an unknown subcommand or a wrong arity is answered as such.
        let command = match crate::command::spec_of(req) {
            Some(spec) if spec.container && req.argc() >= 2 => return false,
            Some(spec) if !spec.arity_ok(req.argc()) => return false,
            Some(spec) => spec.name.to_string(),
            None => {
                let learned = self.shared.learned.get();
                if learned.is_none_or(|l| l.get(name).is_none()) {
                    return false;
                }
                String::from_utf8_lossy(name).to_lowercase()
            }
        };
        self.push_error(&format!("ERR Can't execute '{command}': {SUBSCRIBER_MODE}"));
        true
    }

    /// After `HELLO`: the hub writes this client's messages in its protocol now.
    fn follow_proto(&mut self, w: &mut Worker) {
        let (key, client, proto) = (self.key, self.id.0, self.proto);
        let Some(subs) = self.subscriptions.as_mut() else {
            return;
        };
        let (hub, _) = w.pubsub();
        for kind in Kind::ALL {
            for name in subs.of(kind).iter() {
                hub.set_proto(kind, name, key, client, proto);
            }
        }
    }

    /// Queue a ready reply made here (one or more frames).
    fn push_ready(&mut self, frames: Bytes) {
        self.held += frames.len();
        self.places.push_back(Some(Ok(frames)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn confirm(proto: Proto, kind: Kind, subscribe: bool, name: Option<&[u8]>, n: usize) -> String {
        let mut out = BytesMut::new();
        confirmation(&mut out, proto, kind, subscribe, name, n);
        String::from_utf8(out.to_vec()).unwrap()
    }

    #[test]
    fn confirmations_are_redis_shapes_in_the_clients_protocol() {
        assert_eq!(
            confirm(Proto::Resp2, Kind::Channel, true, Some(b"ch"), 1),
            "*3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n"
        );
        assert_eq!(
            confirm(Proto::Resp3, Kind::Shard, false, Some(b"s"), 0),
            ">3\r\n$12\r\nsunsubscribe\r\n$1\r\ns\r\n:0\r\n"
        );
        assert_eq!(
            confirm(Proto::Resp2, Kind::Pattern, false, None, 0),
            "*3\r\n$12\r\npunsubscribe\r\n$-1\r\n:0\r\n"
        );
        assert_eq!(
            confirm(Proto::Resp3, Kind::Channel, false, None, 2),
            ">3\r\n$11\r\nunsubscribe\r\n_\r\n:2\r\n"
        );
    }

    #[test]
    fn channels_and_patterns_count_together_shard_channels_apart() {
        let mut subs = Subscriptions::default();
        subs.of(Kind::Channel).insert(Bytes::from_static(b"a"));
        subs.of(Kind::Pattern).insert(Bytes::from_static(b"p*"));
        subs.of(Kind::Shard).insert(Bytes::from_static(b"s"));
        assert_eq!(subs.count(Kind::Channel), 2);
        assert_eq!(subs.count(Kind::Pattern), 2);
        assert_eq!(subs.count(Kind::Shard), 1);
        subs.of(Kind::Channel).clear();
        subs.of(Kind::Pattern).clear();
        assert!(
            !subs.is_empty(),
            "a shard channel keeps the client subscribed"
        );
        subs.of(Kind::Shard).clear();
        assert!(subs.is_empty());
    }
}

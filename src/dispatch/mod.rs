//! Routing. [`plan()`](plan::plan) (pure, in [`plan`](mod@plan)) decides what happens to
//! a client's request, built-in or learned command alike: answered locally, sent to one
//! node (a slot's master or any master), refused, handed to the session's transaction
//! state, or an error reply (unknown command, arity, `CROSSSLOT`). A [`Worker`] (in
//! [`worker`](mod@worker)) owns one thread's node connections: it picks the node for a
//! request and carries out what [`decide()`](decide::decide) (pure, in
//! [`decide`](mod@decide)) says after a node's reply or a failure to send: deliver it,
//! follow a redirect, retry after a backoff or a refresh, or fail. Requests waiting to
//! be sent again queue in [`retry`], in each slot's order. The replies of a request
//! split per slot or fanned out to every master become the client's one reply in
//! [`merge`](mod@merge) (pure). The worker's [`pubsub`] hub holds its clients'
//! subscriptions, one per channel at a node, and fans messages out. A client's reads
//! under `read_from` or `READONLY` go where [`reads`] (pure) picks: a replica, the
//! master, or the nearest node.

pub mod decide;
pub mod merge;
pub mod plan;
pub mod pubsub;
pub mod reads;
pub mod retry;
pub mod split;
pub mod support;
pub mod worker;

pub use worker::Worker;

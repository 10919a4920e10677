//! Asking several nodes for their view at once (tokio), so that one stale node cannot
//! decide the table alone and one hung node cannot hold a refresh up: up to
//! [`VIEWS_WANTED`] nodes are asked together, a failure brings in the next candidate,
//! and once the first view is in, the slower ones get [`LATE_VIEW_GRACE`]. The views
//! are merged by [`views::merge`] (highest config epoch per slot).

use std::sync::Arc;
use std::time::Duration;

use redis_protocol::resp2::types::OwnedFrame;
use tokio::task::JoinSet;

use super::{QueryError, RefreshError};
use crate::backend::control::{ControlConnection, ControlError};
use crate::cluster::topology::{parse_cluster_shards, parse_cluster_slots, Topology};
use crate::cluster::views::{self, View};
use crate::cluster::NodeAddr;
use crate::shared::Shared;

/// Views asked for per refresh: with three, one stale node is outvoted even where
/// config epochs tie, and one hung node still leaves two.
const VIEWS_WANTED: usize = 3;

/// How long the other views may take once the first is in. A node that answers later
/// is hung or far slower than its peers; the refresh goes on without it.
const LATE_VIEW_GRACE: Duration = Duration::from_millis(500);

/// The topology of the first [`VIEWS_WANTED`] nodes of `candidates` that answer
/// (asked in that order, several at once), merged; which nodes answered, for the log.
/// Fails when none answers.
pub async fn merged_topology(
    shared: &Arc<Shared>,
    candidates: &[NodeAddr],
) -> Result<(Topology, Vec<NodeAddr>), RefreshError> {
    let views = gather(shared, candidates).await?;
    let from = views.iter().filter_map(|v| v.from.clone()).collect();
    Ok((views::merge(&views), from))
}

/// Up to [`VIEWS_WANTED`] views, in the order the candidates were given. Queries still
/// running when it returns are aborted (the set is dropped).
async fn gather(shared: &Arc<Shared>, candidates: &[NodeAddr]) -> Result<Vec<View>, RefreshError> {
    let mut next = candidates.iter().cloned().enumerate();
    let mut asking = JoinSet::new();
    let ask = |asking: &mut JoinSet<_>, (i, addr): (usize, NodeAddr)| {
        let shared = Arc::clone(shared);
        asking.spawn(async move { (i, fetch_view(&shared, &addr).await) });
    };
    for candidate in next.by_ref().take(VIEWS_WANTED) {
        ask(&mut asking, candidate);
    }
    let mut views: Vec<(usize, View)> = Vec::new();
    let mut errors: Vec<String> = Vec::new();
    let mut grace: Option<std::pin::Pin<Box<tokio::time::Sleep>>> = None;
    while views.len() < VIEWS_WANTED {
        let answer = match grace.as_mut() {
            Some(deadline) => tokio::select! {
                answer = asking.join_next() => answer,
                _ = deadline => break,
            },
            None => asking.join_next().await,
        };
        let Some(answer) = answer else {
            break; // nothing pending and no candidate left
        };
        match answer {
            Ok((i, Ok(view))) => {
                views.push((i, view));
                grace.get_or_insert_with(|| Box::pin(tokio::time::sleep(LATE_VIEW_GRACE)));
            }
            Ok((_, Err(e))) => {
                tracing::debug!(error = %e, "no view from a node");
                errors.push(e.to_string());
                if let Some(candidate) = next.next() {
                    ask(&mut asking, candidate);
                }
            }
            Err(e) => errors.push(format!("view query task: {e}")),
        }
    }
    if views.is_empty() {
        return Err(RefreshError::NoAnswer(errors.join("; ")));
    }
    views.sort_by_key(|(i, _)| *i);
    Ok(views.into_iter().map(|(_, view)| view).collect())
}

/// One node's view on one connection of its own: `CLUSTER SHARDS` (falling back to
/// `CLUSTER SLOTS` on servers that lack it), then `CLUSTER NODES` for the config
/// epochs (a view without them still counts, with every epoch 0).
async fn fetch_view(shared: &Arc<Shared>, addr: &NodeAddr) -> Result<View, QueryError> {
    let current = shared.config.load_full();
    let config = &current.backend;
    let limit = config.timeout + config.connect_timeout;
    let node_error = |source: ControlError| QueryError::Node {
        addr: addr.clone(),
        source,
    };
    let exchange = async {
        let mut conn = ControlConnection::open(current.dial_addr(addr), config).await?;
        let shards = conn
            .request(&[b"CLUSTER", b"SHARDS"])
            .await?
            .to_owned_frame();
        let slots = match shards {
            OwnedFrame::Error(_) => Some(
                conn.request(&[b"CLUSTER", b"SLOTS"])
                    .await?
                    .to_owned_frame(),
            ),
            _ => None,
        };
        let nodes = conn
            .request(&[b"CLUSTER", b"NODES"])
            .await?
            .to_owned_frame();
        Ok::<_, ControlError>((shards, slots, nodes))
    };
    let (shards, slots, nodes) = tokio::time::timeout(limit, exchange)
        .await
        .map_err(|_| node_error(ControlError::Timeout(limit)))?
        .map_err(node_error)?;
    let topology = match slots {
        None => parse_cluster_shards(&shards, addr)?,
        Some(OwnedFrame::Error(text)) => {
            return Err(QueryError::Refused {
                addr: addr.clone(),
                text,
            })
        }
        Some(frame) => parse_cluster_slots(&frame, addr)?,
    };
    let epochs = match nodes {
        OwnedFrame::BulkString(text) => views::parse_config_epochs(&String::from_utf8_lossy(&text)),
        other => {
            tracing::debug!(node = %addr, reply = ?other, "CLUSTER NODES refused; config epochs unknown");
            Default::default()
        }
    };
    Ok(View {
        from: Some(addr.clone()),
        topology,
        epochs,
    })
}

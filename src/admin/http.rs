//! The admin port: axum on the control runtime (never on a worker thread).
//!
//! - `GET /metrics`: Prometheus metrics ([`super::metrics`]).
//! - `GET /healthz`: 200 while the process runs (liveness).
//! - `GET /readyz`: 200 when the slot table is complete and every master answers its
//!   probe, else 503 with the reason (readiness, [`super::status::readiness`]).
//! - `POST /reload`: reload the configuration file (`crate::reload`): 200 with what
//!   changed, 400 with why a bad file was refused.
//! - `GET /`: the status page (one HTML file, no external assets), drawing
//!   `GET /status.json`.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::header::{ACCEPT, CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use prometheus_client::registry::Registry;
use tokio::sync::{mpsc, oneshot};

use super::metrics::{encode_openmetrics, registry, to_prometheus_text};
use super::status::{probe_nodes, readiness, status, Health};
use crate::shared::Shared;

/// The status page.
const STATUS_HTML: &str = include_str!("status.html");

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("admin port: cannot listen on {addr} (config key `admin.listen`, flag --admin; `off` disables it): {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A `POST /reload`: where the reload task sends its result (the summary of what
/// changed, or why the file was refused).
pub type ReloadAsk = oneshot::Sender<Result<String, String>>;

/// What the handlers share.
struct Admin {
    shared: Arc<Shared>,
    health: Arc<Health>,
    registry: Registry,
    /// To the reload task (`crate::reload::run`), which answers each ask; the
    /// handlers send, the task receives for the life of the process.
    reload: mpsc::Sender<ReloadAsk>,
}

/// Open the admin port (unless `admin.listen` is off) and serve it, with the node
/// prober, on the current (control) runtime; returns where it listens. An address the
/// operator chose must be free; the default one may be taken by another slotgate on
/// this host, and then this one runs without an admin port (logged).
pub async fn start(
    shared: &Arc<Shared>,
    reload: mpsc::Sender<ReloadAsk>,
) -> Result<Option<SocketAddr>, AdminError> {
    let config = shared.config.load_full();
    let admin = &config.admin;
    let Some(addr) = admin.listen else {
        return Ok(None);
    };
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(listener) => listener,
        Err(source) if !admin.explicit && source.kind() == std::io::ErrorKind::AddrInUse => {
            tracing::warn!(%addr, "admin port in use (another slotgate on this host?): running without one; set admin.listen or --admin to choose another");
            return Ok(None);
        }
        Err(source) => return Err(AdminError::Bind { addr, source }),
    };
    let local = listener
        .local_addr()
        .map_err(|source| AdminError::Bind { addr, source })?;
    let health = Arc::new(Health::default());
    let state = Arc::new(Admin {
        shared: Arc::clone(shared),
        health: Arc::clone(&health),
        registry: registry(Arc::clone(shared), Arc::clone(&health)),
        reload,
    });
    tokio::spawn(probe_nodes(Arc::clone(shared), health));
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/status.json", get(status_json))
        .route("/reload", post(reload_config))
        .route("/", get(index))
        .with_state(state);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "admin port stopped");
        }
    });
    tracing::info!(addr = %local, "admin port: /metrics /healthz /readyz, POST /reload, status page at /");
    Ok(Some(local))
}

/// OpenMetrics for whoever asks for it (Prometheus does), else the classic text format.
async fn metrics(State(admin): State<Arc<Admin>>, headers: HeaderMap) -> Response {
    let text = encode_openmetrics(&admin.registry);
    let openmetrics = headers
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("application/openmetrics-text"));
    if openmetrics {
        let kind = "application/openmetrics-text; version=1.0.0; charset=utf-8";
        ([(CONTENT_TYPE, kind)], text).into_response()
    } else {
        let kind = "text/plain; version=0.0.4; charset=utf-8";
        ([(CONTENT_TYPE, kind)], to_prometheus_text(&text)).into_response()
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(admin): State<Arc<Admin>>) -> Response {
    match readiness(&admin.shared, &admin.health) {
        Ok(()) => (StatusCode::OK, "ready\n".to_string()).into_response(),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        )
            .into_response(),
    }
}

async fn status_json(State(admin): State<Arc<Admin>>) -> Response {
    let status = status(&admin.shared, &admin.health).await;
    ([(CACHE_CONTROL, "no-store")], Json(status)).into_response()
}

/// `POST /reload`: read the config file again and apply it (`crate::reload`): 200 with
/// what changed, or 400 with why the file was refused (nothing changed then).
async fn reload_config(State(admin): State<Arc<Admin>>) -> Response {
    let (tx, rx) = oneshot::channel();
    if admin.reload.send(tx).await.is_err() {
        return (StatusCode::SERVICE_UNAVAILABLE, "reload unavailable\n").into_response();
    }
    match rx.await {
        Ok(Ok(summary)) => (StatusCode::OK, format!("{summary}\n")).into_response(),
        Ok(Err(reason)) => (StatusCode::BAD_REQUEST, format!("{reason}\n")).into_response(),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "reload unavailable\n").into_response(),
    }
}

async fn index() -> Response {
    (
        [
            (CONTENT_TYPE, "text/html; charset=utf-8"),
            (CACHE_CONTROL, "no-store"),
        ],
        STATUS_HTML,
    )
        .into_response()
}

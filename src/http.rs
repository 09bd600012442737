//! The HTTP side port: `/metrics`, `/livez`, `/readyz` and
//! `GET /v1/contacts/{id}` (SPEC §7).
//!
//! Handlers run on the tokio runtime and never wait for the processing
//! thread: they read what it publishes in [`Shared`] (heartbeat, readiness,
//! the partitions held and their clocks) and read contact state straight
//! from RocksDB, which serves concurrent readers; every batch is written
//! atomically, so a read sees a contact as of a whole batch.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::{Duration, Instant};

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use crate::metrics::Metrics;
use crate::scoring::{explain, Engine};
use crate::state::{Family, RocksStateStore, StateStore};
use crate::time::EventTime;

/// `/livez` fails once the processing loop has not turned for this long.
pub const LIVENESS_LIMIT: Duration = Duration::from_secs(30);

/// What the processing thread publishes for the HTTP side.
pub struct Shared {
    pub metrics: Metrics,
    started: Instant,
    /// Milliseconds after `started` of the processing loop's last turn.
    heartbeat_ms: AtomicI64,
    ready: AtomicBool,
    /// Partitions held and their clocks (ms).
    partitions: RwLock<BTreeMap<u32, i64>>,
    /// Set once the store is open.
    state: OnceLock<(Arc<RocksStateStore>, Engine)>,
    /// `clock = "event"`: contacts are shown as of their partition's clock.
    event_clock: bool,
}

impl Shared {
    pub fn new(event_clock: bool) -> Shared {
        Shared {
            metrics: Metrics::new(),
            started: Instant::now(),
            heartbeat_ms: AtomicI64::new(0),
            ready: AtomicBool::new(false),
            partitions: RwLock::new(BTreeMap::new()),
            state: OnceLock::new(),
            event_clock,
        }
    }

    /// The processing loop turned.
    pub fn beat(&self) {
        let ms = self.started.elapsed().as_millis() as i64;
        self.heartbeat_ms.store(ms, Ordering::Relaxed);
    }

    fn since_beat(&self) -> Duration {
        let now = self.started.elapsed().as_millis() as i64;
        Duration::from_millis(now.saturating_sub(self.heartbeat_ms.load(Ordering::Relaxed)) as u64)
    }

    pub fn set_state(&self, store: Arc<RocksStateStore>, engine: Engine) {
        let _ = self.state.set((store, engine));
    }

    /// Readiness: partitions assigned with their state and timers loaded.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
        self.metrics.ready.set(i64::from(ready));
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// Replaces the partitions held and their clocks.
    pub fn set_partitions(&self, clocks: impl Iterator<Item = (u32, EventTime)>) {
        let mut map = self.partitions.write().unwrap_or_else(|e| e.into_inner());
        map.clear();
        map.extend(clocks.map(|(p, c)| (p, c.millis())));
        self.metrics.partitions_assigned.set(map.len() as i64);
    }

    fn partitions(&self) -> Vec<(u32, i64)> {
        let map = self.partitions.read().unwrap_or_else(|e| e.into_inner());
        map.iter().map(|(p, c)| (*p, *c)).collect()
    }

    /// Refreshes the gauges read from RocksDB (on scrape).
    fn refresh_gauges(&self) {
        let Some((store, _)) = self.state.get() else {
            return;
        };
        let m = &self.metrics;
        m.contacts.set(store.estimate_keys(Family::Contacts) as i64);
        m.timers_pending
            .set(store.estimate_keys(Family::Timers) as i64);
        m.rocksdb_live_data.set(store.live_data_size() as i64);
        m.rocksdb_block_cache.set(store.cache_usage() as i64);
    }
}

/// The router over `shared`.
pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .route("/v1/contacts/{id}", get(contact))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such endpoint".into()) })
        .method_not_allowed_fallback(|| async {
            error(StatusCode::METHOD_NOT_ALLOWED, "only GET is served".into())
        })
        .with_state(shared)
}

fn error(status: StatusCode, message: String) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    shared.refresh_gauges();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        shared.metrics.render(),
    )
        .into_response()
}

async fn livez(State(shared): State<Arc<Shared>>) -> Response {
    let since = shared.since_beat();
    if since > LIVENESS_LIMIT {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "the processing loop has not turned for {} s",
                since.as_secs()
            ),
        );
    }
    Json(json!({ "status": "ok" })).into_response()
}

async fn readyz(State(shared): State<Arc<Shared>>) -> Response {
    let partitions: Vec<u32> = shared.partitions().into_iter().map(|(p, _)| p).collect();
    if !shared.is_ready() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "not ready", "partitions": partitions })),
        )
            .into_response();
    }
    Json(json!({ "status": "ready", "partitions": partitions })).into_response()
}

#[derive(Debug, Deserialize)]
struct ContactQuery {
    /// Comma-separated model names.
    model: Option<String>,
}

async fn contact(
    State(shared): State<Arc<Shared>>,
    id: Result<Path<String>, PathRejection>,
    query: Result<Query<ContactQuery>, QueryRejection>,
) -> Response {
    // Malformed (an id that is not UTF-8, say): told in JSON like the rest.
    let (Path(id), Query(query)) = match (id, query) {
        (Ok(id), Ok(query)) => (id, query),
        (Err(e), _) => return error(StatusCode::BAD_REQUEST, e.body_text()),
        (_, Err(e)) => return error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let Some((store, engine)) = shared.state.get() else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "state not loaded yet".into(),
        );
    };
    let wanted: Option<Vec<&str>> = query.model.as_deref().map(|m| {
        m.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect()
    });
    if let Some(names) = &wanted {
        if let Some(bad) = names
            .iter()
            .find(|n| engine.rules().model_index(n).is_none())
        {
            return error(StatusCode::BAD_REQUEST, format!("unknown model `{bad}`"));
        }
    }
    // A contact lives in one partition; bloom filters make the misses cheap.
    for (partition, clock) in shared.partitions() {
        let state = match store.contact(partition, &id) {
            Ok(Some(state)) => state,
            Ok(None) => continue,
            Err(e) => {
                tracing::error!(partition, contact = %id, "reading contact: {e}");
                return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
            }
        };
        let mut as_of = EventTime::from_millis(clock);
        if !shared.event_clock {
            as_of = as_of.max(crate::service::wall_now());
        }
        let view = explain(engine, &id, &state, as_of, |name| {
            wanted.as_ref().is_none_or(|w| w.contains(&name))
        });
        return Json(view).into_response();
    }
    error(StatusCode::NOT_FOUND, format!("contact `{id}` not found"))
}

//! The router and one handler per endpoint. Errors are `{"error": reason}` with the status
//! code that fits: 400 bad input, 401 missing or wrong token, 404 no such thing (or route),
//! 403 not allowed through this listener, 405 wrong method, 409 refused in the current state,
//! 501 not available, 503 busy.

use std::net::Ipv4Addr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use lease_store::{Lease, LeaseTable, PoolStats};
use serde_json::{json, Value};

use super::request;
use super::{ApiState, Transport};
use crate::clock::unix_now;
use crate::control::{self, Handler, Request as FoRequest, Response as FoResponse};
use crate::leases::lease_json;

/// Every route: (method, path). The OpenAPI document (`userspace/openapi.yaml`) lists
/// exactly these (tested), and [`router`] serves exactly these.
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/v1/status"),
    ("GET", "/v1/statistics"),
    ("GET", "/v1/pools"),
    ("GET", "/v1/pools/{id}"),
    ("GET", "/v1/pools/{id}/leases"),
    ("GET", "/v1/subnets"),
    ("GET", "/v1/leases/ip/{ip}"),
    ("GET", "/v1/leases/mac/{mac}"),
    ("GET", "/v1/leases/client-id/{client_id}"),
    ("GET", "/v1/failover"),
    ("POST", "/v1/failover/partner-down"),
    ("POST", "/v1/failover/recover"),
    ("POST", "/v1/failover/pause"),
    ("POST", "/v1/failover/failback"),
    ("GET", "/v1/failover/relays"),
    ("POST", "/v1/reload"),
    ("GET", "/v1/registrations"),
    ("POST", "/v1/registrations"),
    ("GET", "/v1/reconfigure"),
    ("POST", "/v1/reconfigure"),
    ("GET", "/metrics"),
];

/// An error answer.
#[derive(Debug)]
pub struct ApiError(pub StatusCode, pub String);

impl ApiError {
    fn bad(m: impl Into<String>) -> Self {
        ApiError(StatusCode::BAD_REQUEST, m.into())
    }
    fn not_found(m: impl Into<String>) -> Self {
        ApiError(StatusCode::NOT_FOUND, m.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

type ApiResult = Result<Json<Value>, ApiError>;
type St = State<Arc<ApiState>>;

/// The API's router over `state`. With `token`, every request must carry
/// `Authorization: Bearer <token>` (the TCP listener).
/// The API's routes for one listener (`transport`: which one; `token`: the bearer token it
/// requires, if any).
pub fn router(state: Arc<ApiState>, token: Option<Arc<str>>, transport: Transport) -> Router {
    let r = Router::new()
        .route("/v1/status", get(status))
        .route("/v1/statistics", get(statistics))
        .route("/v1/pools", get(pools))
        .route("/v1/pools/{id}", get(pool))
        .route("/v1/pools/{id}/leases", get(pool_leases))
        .route("/v1/subnets", get(subnets))
        .route("/v1/leases/ip/{ip}", get(lease_by_ip))
        .route("/v1/leases/mac/{mac}", get(leases_by_mac))
        .route("/v1/leases/client-id/{client_id}", get(leases_by_client_id))
        .route("/v1/failover", get(failover_status))
        .route("/v1/failover/partner-down", post(failover_partner_down))
        .route("/v1/failover/recover", post(failover_recover))
        .route("/v1/failover/pause", post(failover_pause))
        .route("/v1/failover/failback", post(failover_failback))
        .route("/v1/failover/relays", get(failover_relays))
        .route("/v1/reload", post(reload))
        .route(
            "/v1/registrations",
            get(registrations_list).post(registrations_request),
        )
        .route(
            "/v1/reconfigure",
            get(reconfigure_status).post(reconfigure_trigger),
        )
        .route("/metrics", get(metrics))
        .fallback(no_route)
        .method_not_allowed_fallback(wrong_method)
        .with_state(state)
        .layer(Extension(transport));
    match token {
        Some(t) => r.layer(middleware::from_fn(move |req: Request, next: Next| {
            let t = t.clone();
            async move { authorise(&t, req, next).await }
        })),
        None => r,
    }
}

async fn authorise(token: &str, req: Request, next: Next) -> Response {
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match given {
        Some(g) if constant_time_eq(g.as_bytes(), token.as_bytes()) => next.run(req).await,
        Some(_) => unauthorised("wrong bearer token"),
        None => {
            unauthorised("this listener needs `Authorization: Bearer <token>` (api.token-file)")
        }
    }
}

fn unauthorised(why: &str) -> Response {
    let mut r = ApiError(StatusCode::UNAUTHORIZED, why.into()).into_response();
    r.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    r
}

/// Compares without an early exit on the first different byte.
pub(super) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for (i, x) in a.iter().enumerate() {
        diff |= usize::from(x ^ b.get(i).copied().unwrap_or(!x));
    }
    diff == 0
}

async fn no_route(req: Request) -> ApiError {
    ApiError::not_found(format!(
        "no such endpoint: {} {} (see userspace/openapi.yaml)",
        req.method(),
        req.uri().path()
    ))
}

async fn wrong_method(req: Request) -> ApiError {
    ApiError(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{} is not allowed on {}", req.method(), req.uri().path()),
    )
}

/// Runs blocking work (table scans, failover requests) off the runtime's thread.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("request failed: {e}"),
        )
    })?
}

// ---------------------------------------------------------------------------------------------
// Status and statistics

async fn status(State(s): St) -> ApiResult {
    let handlers = s.failover.clone();
    let several = handlers.len() > 1;
    let statuses = blocking(move || {
        Ok(handlers
            .iter()
            .map(|(_, h)| h(FoRequest::FailoverStatus).status)
            .collect::<Vec<_>>())
    })
    .await?;
    let brief = |f: Option<control::FailoverStatus>| match f {
        Some(f) if several => json!({
            "relationship": f.relationship, "role": f.role, "state": f.state,
            "partner_state": f.partner_state, "communicating": f.communicating,
        }),
        Some(f) => json!({
            "role": f.role, "state": f.state, "partner_state": f.partner_state,
            "communicating": f.communicating,
        }),
        None => Value::Null,
    };
    // One relationship: its object, as before N:1; several: one object each.
    let failover = if several {
        Value::Array(statuses.into_iter().map(brief).collect())
    } else {
        statuses.into_iter().next().map_or(Value::Null, brief)
    };
    let cfg = s.config.get();
    Ok(Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "pid": std::process::id(),
        "started": control::fmt_time(s.started_unix),
        "uptime_s": s.started.elapsed().as_secs(),
        "interface": s.interface,
        "server_id": s.server_id.to_string(),
        "io": s.io,
        "workers": s.workers.len(),
        "commit": format!("{:?}", cfg.server.commit).to_lowercase(),
        "config": cfg.source.display().to_string(),
        "lease_file": s.table.path().display().to_string(),
        "subnets": cfg.subnets.len(),
        "pools": s.table.pools().len(),
        "failover": failover,
        // A failed flush not yet covered by a rewrite: ack-mode replies are withheld.
        "storage": {
            "failed": s.table.storage_failed(),
            "flush_failures": s.table.flush_failures(),
            "last_error": s.table.last_flush_error(),
        },
        "event_log": s.events.as_ref().map(|(st, dropped)| json!({
            "written": st.written.load(std::sync::atomic::Ordering::Relaxed),
            "dropped": dropped.load(std::sync::atomic::Ordering::Relaxed),
            "nats": st.nats.as_ref().map(|n| n.snapshot()),
        })),
        "registrations": s.registrations_pg.as_ref().map_or_else(
            || json!({ "backend": "local" }),
            |f| serde_json::to_value(f.snapshot()).unwrap_or(Value::Null),
        ),
    })))
}

pub(super) fn engine_totals(s: &ApiState) -> xdhcpd_dhcpv4::StatsSnapshot {
    let mut t = xdhcpd_dhcpv4::StatsSnapshot::default();
    for e in &s.engine_stats {
        t += e.snapshot();
    }
    t
}

async fn statistics(State(s): St) -> ApiResult {
    use std::sync::atomic::Ordering::Relaxed;
    let queues: Vec<Value> = s
        .workers
        .iter()
        .zip(&s.engine_stats)
        .enumerate()
        .map(|(q, (w, e))| {
            json!({
                "queue": q,
                "received": e.received.load(Relaxed),
                "batches": w.batches.load(Relaxed),
                "tx_frames": w.tx_frames.load(Relaxed),
                "tx_ring_full": w.tx_ring_full.load(Relaxed),
                "frame_drops": w.frame_drops.load(Relaxed),
            })
        })
        .collect();
    let xdp = match &s.xdp {
        Some(r) => match r.per_queue() {
            Ok(queues) => {
                let mut m = serde_json::Map::new();
                for (k, name) in xdhcpd_common::Counter::ALL {
                    let v: u64 = queues.iter().map(|c| c[k as usize]).sum();
                    m.insert(name.to_string(), v.into());
                }
                Value::Object(m)
            }
            Err(e) => json!({ "error": e.to_string() }),
        },
        None => Value::Null,
    };
    let commit = s.committer.as_ref().map(|c| {
        json!({
            "flushes": c.flushes.load(Relaxed),
            "flush_errors": c.flush_errors.load(Relaxed),
        })
    });
    Ok(Json(json!({
        "uptime_s": s.started.elapsed().as_secs_f64(),
        "engine": engine_totals(&s),
        "queues": queues,
        "xdp": xdp,
        "commit": commit,
        "lease_flush_failures": s.table.flush_failures(),
    })))
}

// ---------------------------------------------------------------------------------------------
// Pools and subnets

/// (offered + active + reserved) / total, percent with two decimals (as `leases stats`).
pub(super) fn utilisation(p: &PoolStats) -> f64 {
    if p.total == 0 {
        return 0.0;
    }
    let used = p.offered + p.active + p.reserved;
    (used as f64 * 10_000.0 / p.total as f64).round() / 100.0
}

/// No address left that this server could give a new client.
pub(super) fn exhausted(p: &PoolStats) -> bool {
    p.free + p.expired + p.released == 0
}

fn counts_json(p: &PoolStats) -> serde_json::Map<String, Value> {
    let mut m = serde_json::Map::new();
    for (k, v) in [
        ("total", p.total),
        ("free", p.free),
        ("offered", p.offered),
        ("active", p.active),
        ("expired", p.expired),
        ("released", p.released),
        ("declined", p.declined),
        ("abandoned", p.abandoned),
        ("backup", p.backup),
        ("reserved", p.reserved),
        ("quarantined", p.quarantined),
    ] {
        m.insert(k.into(), v.into());
    }
    m.insert("utilisation".into(), utilisation(p).into());
    m.insert("exhausted".into(), exhausted(p).into());
    m
}

fn pool_json(s: &ApiState, p: &PoolStats) -> Value {
    let spec = s.table.pools().iter().find(|x| x.id == p.id);
    let cfg = s.config.get();
    let subnet = cfg
        .subnets
        .iter()
        .find(|sn| sn.pools.iter().any(|x| x.id == p.id));
    let mut m = serde_json::Map::new();
    m.insert("id".into(), p.id.into());
    m.insert(
        "subnet".into(),
        subnet.map_or(Value::Null, |sn| sn.net.to_string().into()),
    );
    m.insert(
        "first".into(),
        spec.map_or(Value::Null, |x| x.first.to_string().into()),
    );
    m.insert(
        "last".into(),
        spec.map_or(Value::Null, |x| x.last.to_string().into()),
    );
    m.extend(counts_json(p));
    Value::Object(m)
}

async fn pools(State(s): St) -> ApiResult {
    let all: Vec<Value> = s
        .table
        .all_stats()
        .iter()
        .map(|p| pool_json(&s, p))
        .collect();
    Ok(Json(json!({ "pools": all })))
}

fn find_pool(s: &ApiState, id: &str) -> Result<PoolStats, ApiError> {
    let id = request::parse_pool_id(id).map_err(ApiError::bad)?;
    s.table
        .pool_stats(id)
        .ok_or_else(|| ApiError::not_found(format!("no pool {id} (see GET /v1/pools)")))
}

async fn pool(State(s): St, Path(id): Path<String>) -> ApiResult {
    let p = find_pool(&s, &id)?;
    Ok(Json(pool_json(&s, &p)))
}

/// Records scanned per page at most (a sparse pool of millions answers in bounded time;
/// the page then ends early with a cursor).
const MAX_SCAN: u32 = 1 << 20;

async fn pool_leases(State(s): St, Path(id): Path<String>, RawQuery(q): RawQuery) -> ApiResult {
    let p = find_pool(&s, &id)?;
    let q = request::parse_page_query(q.as_deref()).map_err(ApiError::bad)?;
    let spec = *s
        .table
        .pools()
        .iter()
        .find(|x| x.id == p.id)
        .ok_or_else(|| ApiError::not_found(format!("no pool {}", p.id)))?;
    let (first, last) = (u32::from(spec.first), u32::from(spec.last));
    let start = match q.after {
        Some(a) if !(first..=last).contains(&u32::from(a)) => {
            return Err(ApiError::bad(format!(
                "after={a} is not in pool {} ({}-{})",
                p.id, spec.first, spec.last
            )))
        }
        Some(a) => u32::from(a).saturating_add(1),
        None => first,
    };
    let table = s.table.clone();
    blocking(move || {
        let mut out = Vec::new();
        let mut next = None;
        let mut addr = start;
        let mut scanned = 0u32;
        while addr <= last && addr >= start {
            if scanned >= MAX_SCAN {
                next = Some(Ipv4Addr::from(addr - 1));
                break;
            }
            scanned += 1;
            if let Some(slot) = table.slot_of(Ipv4Addr::from(addr)) {
                let l = table.read(slot);
                if q.states[l.state as usize] {
                    if out.len() == q.limit {
                        next = Some(Ipv4Addr::from(addr - 1));
                        break;
                    }
                    let v = crate::leases::var_of_live(&table, &l);
                    out.push(lease_json(p.id, &l, &v));
                }
            }
            if addr == u32::MAX {
                break;
            }
            addr += 1;
        }
        Ok(Json(json!({
            "pool": p.id,
            "leases": out,
            "next": next.map(|a| a.to_string()),
        })))
    })
    .await
}

async fn subnets(State(s): St) -> ApiResult {
    let stats = s.table.all_stats();
    let cfg = s.config.get();
    let out: Vec<Value> = cfg
        .subnets
        .iter()
        .map(|sn| {
            let mut t = PoolStats::default();
            for p in stats
                .iter()
                .filter(|p| sn.pools.iter().any(|x| x.id == p.id))
            {
                t.total += p.total;
                t.free += p.free;
                t.offered += p.offered;
                t.active += p.active;
                t.expired += p.expired;
                t.released += p.released;
                t.declined += p.declined;
                t.abandoned += p.abandoned;
                t.backup += p.backup;
                t.reserved += p.reserved;
                t.quarantined += p.quarantined;
            }
            let mut m = serde_json::Map::new();
            m.insert("index".into(), sn.index.into());
            m.insert("subnet".into(), sn.net.to_string().into());
            m.insert(
                "pools".into(),
                sn.pools.iter().map(|p| p.id).collect::<Vec<_>>().into(),
            );
            m.extend(counts_json(&t));
            Value::Object(m)
        })
        .collect();
    Ok(Json(json!({ "subnets": out })))
}

// ---------------------------------------------------------------------------------------------
// Leases, from the live table

fn leases_answer(table: &LeaseTable, found: Vec<(u32, Lease)>, what: String) -> ApiResult {
    if found.is_empty() {
        return Err(ApiError::not_found(format!("no lease record for {what}")));
    }
    let v: Vec<Value> = found
        .iter()
        .map(|(p, l)| lease_json(*p, l, &crate::leases::var_of_live(table, l)))
        .collect();
    Ok(Json(json!({ "leases": v })))
}

async fn lease_by_ip(State(s): St, Path(ip): Path<String>) -> ApiResult {
    let ip = request::parse_ip(&ip).map_err(ApiError::bad)?;
    let slot = s
        .table
        .slot_of(ip)
        .ok_or_else(|| ApiError::not_found(format!("{ip} is in no configured pool")))?;
    let (l, v) = s.table.read_with_var(slot);
    Ok(Json(
        json!({ "leases": [lease_json(s.table.pool_of_slot(slot), &l, &v)] }),
    ))
}

/// Every record whose chaddr or hardware-address key is `hw` (a scan of the table).
fn scan_mac(table: &LeaseTable, hw: &[u8]) -> Vec<(u32, Lease)> {
    let key = lease_store::ClientKey::from_hw(1, hw);
    table
        .iter()
        .filter(|(_, l)| l.hw() == hw || l.client == key)
        .map(|(slot, l)| (table.pool_of_slot(slot), l))
        .collect()
}

async fn leases_by_mac(State(s): St, Path(mac): Path<String>) -> ApiResult {
    let hw = request::parse_mac(&mac).map_err(ApiError::bad)?;
    let table = s.table.clone();
    let found = blocking(move || Ok(scan_mac(&table, &hw))).await?;
    leases_answer(&s.table, found, format!("MAC {mac}"))
}

async fn leases_by_client_id(State(s): St, Path(id): Path<String>) -> ApiResult {
    let key = request::parse_client_id(&id).map_err(ApiError::bad)?;
    let table = s.table.clone();
    let found = blocking(move || {
        Ok(match table.find_client(&key) {
            Some((slot, l)) => vec![(table.pool_of_slot(slot), l)],
            // Not bound: the records in other states that carry it.
            None => table
                .iter()
                .filter(|(_, l)| l.client == key)
                .map(|(slot, l)| (table.pool_of_slot(slot), l))
                .collect(),
        })
    })
    .await?;
    leases_answer(&s.table, found, format!("client-id {id}"))
}

// ---------------------------------------------------------------------------------------------
// Failover

/// The handler of the relationship asked for (`?relationship=NAME`; may be left out when the
/// server has one relationship).
fn relationship_handler(s: &ApiState, query: Option<&str>) -> Result<Handler, ApiError> {
    let want = request::parse_relationship_query(query).map_err(ApiError::bad)?;
    let names = || {
        s.failover
            .iter()
            .map(|(n, _)| format!("{n:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match (want, s.failover.as_slice()) {
        (_, []) => Err(ApiError::not_found(
            "failover is not configured on this server",
        )),
        (None, [(_, h)]) => Ok(h.clone()),
        (None, _) => Err(ApiError::bad(format!(
            "this server has {} failover relationships ({}): name one with \
             ?relationship=NAME (xdhcpd ctl failover --relationship NAME)",
            s.failover.len(),
            names()
        ))),
        (Some(n), list) => list
            .iter()
            .find(|(name, _)| *name == n)
            .map(|(_, h)| h.clone())
            .ok_or_else(|| {
                ApiError::not_found(format!(
                    "no failover relationship {n:?} on this server; it has {}",
                    names()
                ))
            }),
    }
}

async fn failover_call(
    s: &ApiState,
    query: Option<&str>,
    req: FoRequest,
) -> Result<FoResponse, ApiError> {
    let h = relationship_handler(s, query)?;
    let r = blocking(move || Ok(h(req))).await?;
    if r.ok {
        return Ok(r);
    }
    let e = r.error.unwrap_or_else(|| "request failed".into());
    let code = if e.contains("did not answer") || e.contains("not running") {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::CONFLICT
    };
    Err(ApiError(code, e))
}

async fn failover_status(State(s): St, RawQuery(q): RawQuery) -> ApiResult {
    let r = failover_call(&s, q.as_deref(), FoRequest::FailoverStatus).await?;
    let v = serde_json::to_value(r.status)
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, format!("status: {e}")))?;
    Ok(Json(v))
}

/// The relay health check's view (CPNR `getRelayState [all]`): by default only the relays
/// that seem unable to reach the partner; `?all=true` every relay followed.
async fn failover_relays(State(s): St, RawQuery(q): RawQuery) -> ApiResult {
    let all = request::parse_relays_query(q.as_deref()).map_err(ApiError::bad)?;
    let Some(rhc) = &s.relay_health else {
        return Err(ApiError::not_found(
            "the relay health check is off ([failover] relay-health-check)",
        ));
    };
    let now = unix_now();
    let ago = |t: u32| (t != 0).then(|| now.saturating_sub(t));
    let relays: Vec<Value> = rhc
        .snapshot(now)
        .into_iter()
        .filter(|v| all || v.state == xdhcpd_failover::RelayState::Interrupted)
        .map(|v| {
            json!({
                "relay": v.relay.to_string(),
                "state": v.state.name(),
                "last_heard_secs_ago": ago(v.last_heard),
                "partner_heard_secs_ago": ago(v.partner_heard),
                "unanswered_discovers": v.unanswered,
                "first_unanswered_secs_ago": ago(v.first_unanswered),
                "takeover_secs": ago(v.takeover_since),
                "takeovers": v.takeovers,
                "served_for_partner": v.served,
            })
        })
        .collect();
    let c = rhc.config();
    Ok(Json(json!({
        "relays": relays,
        "table_full": rhc.table_full(),
        "takeovers": rhc.takeovers(),
        "settings": {
            "unresponsive_time": c.unresponsive_time,
            "request_count": c.request_count,
            "elapsed_time": c.elapsed_time,
            "response_time": c.response_time,
            "restart_time": c.restart_time,
            "warning_interval": c.warning_interval,
            "max_relays": c.max_relays,
        },
    })))
}

fn message(r: FoResponse) -> ApiResult {
    Ok(Json(json!({ "message": r.message.unwrap_or_default() })))
}

async fn failover_partner_down(State(s): St, RawQuery(q): RawQuery, body: Bytes) -> ApiResult {
    let (since, force) = request::parse_partner_down(&body, unix_now()).map_err(ApiError::bad)?;
    let req = FoRequest::FailoverPartnerDown { since, force };
    message(failover_call(&s, q.as_deref(), req).await?)
}

async fn failover_recover(State(s): St, RawQuery(q): RawQuery, body: Bytes) -> ApiResult {
    request::parse_empty(&body).map_err(ApiError::bad)?;
    message(failover_call(&s, q.as_deref(), FoRequest::FailoverRecover).await?)
}

async fn failover_pause(State(s): St, RawQuery(q): RawQuery, body: Bytes) -> ApiResult {
    request::parse_empty(&body).map_err(ApiError::bad)?;
    message(failover_call(&s, q.as_deref(), FoRequest::FailoverPause).await?)
}

async fn failover_failback(State(s): St, RawQuery(q): RawQuery, body: Bytes) -> ApiResult {
    request::parse_empty(&body).map_err(ApiError::bad)?;
    message(failover_call(&s, q.as_deref(), FoRequest::FailoverFailback).await?)
}

// ---------------------------------------------------------------------------------------------
// Reload, metrics

// ---------------------------------------------------------------------------------------------
// Registrations (provisioning): the store's requests, answered by the daemon's handler

async fn registrations_list(State(s): St) -> Response {
    registrations_call(
        s,
        crate::registrations::ctl::RegRequest::Show { select: None },
    )
    .await
}

async fn registrations_request(
    State(s): St,
    Extension(transport): Extension<Transport>,
    body: Bytes,
) -> Response {
    use crate::registrations::ctl::RegRequest;
    match serde_json::from_slice::<RegRequest>(&body) {
        Ok(RegRequest::Import { .. } | RegRequest::Export { .. })
            if transport == Transport::Tcp =>
        {
            s.refused
                .server_file_over_tcp
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            ApiError(
                StatusCode::FORBIDDEN,
                "registration import and export name a file on the server host: allowed only \
                 over the control socket (xdhcpd ctl on the server), never over [api] listen"
                    .into(),
            )
            .into_response()
        }
        Ok(r) => registrations_call(s, r).await,
        Err(e) => ApiError::bad(format!("registration request: {e}")).into_response(),
    }
}

async fn registrations_call(
    s: Arc<ApiState>,
    request: crate::registrations::ctl::RegRequest,
) -> Response {
    let Some(h) = s.registrations.clone() else {
        return ApiError::not_found(
            "no registration store: set [server] registration-file".to_string(),
        )
        .into_response();
    };
    let req = FoRequest::Registrations {
        request: Box::new(request),
    };
    match tokio::task::spawn_blocking(move || h(req)).await {
        // The control response as it is (`ok`, `message`, `data`, `error`).
        Ok(r) if r.ok => Json(r).into_response(),
        Ok(r) => (StatusCode::CONFLICT, Json(r)).into_response(),
        Err(e) => ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("registrations: {e}"),
        )
        .into_response(),
    }
}

async fn reload(State(s): St, body: Bytes) -> Response {
    if let Err(e) = request::parse_empty(&body) {
        return ApiError::bad(e).into_response();
    }
    let Some(f) = s.reload.clone() else {
        return ApiError(
            StatusCode::NOT_IMPLEMENTED,
            "reload is not available in this build: restart the daemon to apply a new \
             configuration"
                .into(),
        )
        .into_response();
    };
    match tokio::task::spawn_blocking(move || f()).await {
        Ok(Ok(v)) => Json(v).into_response(),
        // The refusal keeps its details (`reload.kind`, `reload.errors` / `reload.reasons`).
        Ok(Err(body)) => (StatusCode::CONFLICT, Json(body)).into_response(),
        Err(e) => {
            ApiError(StatusCode::INTERNAL_SERVER_ERROR, format!("reload: {e}")).into_response()
        }
    }
}

async fn metrics(State(s): St) -> Response {
    if !s.metrics {
        return ApiError::not_found("metrics are off ([api] metrics = false)").into_response();
    }
    let text = blocking(move || {
        super::metrics::render(&s)
            .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, format!("metrics: {e}")))
    })
    .await;
    match text {
        Ok(t) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            t,
        )
            .into_response(),
        Err(e) => e.into_response(),
    }
}

// ---------------------------------------------------------------------------------------------
// Reconfiguration (FORCERENEW)

fn reconf_counters(h: &crate::server::reconfigure::ReconfHandle) -> Value {
    use std::sync::atomic::Ordering::Relaxed;
    let c = &h.stats;
    let v6 = match &h.v6 {
        Some(v) => {
            let c = &v.stats;
            json!({
                "enabled": true,
                "queued": v.progress.queued.load(Relaxed),
                "active": v.progress.active.load(Relaxed),
                "triggered": c.triggered.load(Relaxed),
                "sent": c.sent.load(Relaxed),
                "retried": c.retried.load(Relaxed),
                "succeeded": c.succeeded.load(Relaxed),
                "aborted": c.aborted.load(Relaxed),
                "refused_no_auth": c.refused_no_auth.load(Relaxed),
                "ignored": c.ignored.load(Relaxed),
                "not_bound": c.not_bound.load(Relaxed),
                "send_failed": c.send_failed.load(Relaxed),
            })
        }
        None => json!({ "enabled": false }),
    };
    json!({
        "dhcpv6": v6,
        "enabled": h.enabled(),
        "queued": h.progress.queued.load(Relaxed),
        "active": h.progress.active.load(Relaxed),
        "triggered": c.triggered.load(Relaxed),
        "sent": c.sent.load(Relaxed),
        "retried": c.retried.load(Relaxed),
        "succeeded": c.succeeded.load(Relaxed),
        "aborted": c.aborted.load(Relaxed),
        "refused_no_auth": c.refused_no_auth.load(Relaxed),
        "ignored": c.ignored.load(Relaxed),
        "not_bound": c.not_bound.load(Relaxed),
        "send_failed": c.send_failed.load(Relaxed),
    })
}

fn reconf_handle(s: &ApiState) -> Result<crate::server::reconfigure::ReconfHandle, ApiError> {
    match &s.reconfigure {
        Some(h) if h.enabled() => Ok(h.clone()),
        _ => Err(ApiError(
            StatusCode::CONFLICT,
            "reconfiguration is off: add a [reconfigure] section (and restart)".into(),
        )),
    }
}

async fn reconfigure_status(State(s): St) -> ApiResult {
    match &s.reconfigure {
        Some(h) => Ok(Json(reconf_counters(h))),
        None => Ok(Json(json!({ "enabled": false }))),
    }
}

/// Queues the named bound bindings for FORCERENEW; answers how many matched.
async fn reconfigure_trigger(State(s): St, body: Bytes) -> ApiResult {
    let target = request::parse_reconfigure(&body).map_err(ApiError::bad)?;
    let h = reconf_handle(&s)?;
    if target.is_v6() && !target.is_v4() && h.v6.is_none() {
        return Err(ApiError(
            StatusCode::CONFLICT,
            "DHCPv6 reconfiguration is off: the server has no [[subnet6]]".into(),
        ));
    }
    blocking(move || {
        let now = unix_now();
        // DHCPv6: the clients with a matching bound binding, each with all its bindings.
        let mut matched6 = 0;
        if let (true, Some(v6)) = (target.is_v6(), &h.v6) {
            let clients = v6.server.with_table(|t| {
                let mut by_duid: std::collections::HashMap<Vec<u8>, (bool, Vec<u32>)> =
                    std::collections::HashMap::new();
                for (slot, b) in t.iter() {
                    if b.state != lease_store::v6::BindingState::Active || b.expiry <= now {
                        continue;
                    }
                    let e = by_duid.entry(b.duid.as_slice().to_vec()).or_default();
                    e.0 |= target.matches6(&b);
                    e.1.push(slot);
                }
                by_duid
                    .into_iter()
                    .filter(|(_, (m, _))| *m)
                    .map(|(d, (_, slots))| (d, slots))
                    .collect::<Vec<_>>()
            });
            matched6 = clients.len();
            if matched6 > 0 && !v6.trigger(clients) {
                return Err(ApiError(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the reconfigure driver has stopped".into(),
                ));
            }
        }
        let table = &s.table;
        let bound = |l: &Lease| l.state == lease_store::LeaseState::Active && l.expiry > now;
        let slots: Vec<lease_store::Slot> = match &target {
            t if !t.is_v4() => Vec::new(),
            request::ReconfTarget::Class(name) => {
                h.class_slots(name, table, now).map_err(ApiError::bad)?
            }
            request::ReconfTarget::Ip(ip) => table
                .slot_of(*ip)
                .filter(|&slot| bound(&table.read(slot)))
                .into_iter()
                .collect(),
            t => table
                .iter()
                .filter(|(slot, l)| bound(l) && t.matches(l, table.pool_of_slot(*slot)))
                .map(|(slot, _)| slot)
                .collect(),
        };
        let matched = slots.len();
        if matched > 0 && !h.trigger(slots) {
            return Err(ApiError(
                StatusCode::SERVICE_UNAVAILABLE,
                "the reconfigure driver has stopped".into(),
            ));
        }
        let mut v = reconf_counters(&h);
        if let Some(o) = v.as_object_mut() {
            o.insert("matched".into(), json!(matched));
            o.insert("matched_dhcpv6_clients".into(), json!(matched6));
        }
        Ok(Json(v))
    })
    .await
}

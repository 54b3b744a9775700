//! The ops view's one read-only endpoint, `GET /api/ops?offset&limit` (`web/ops.html` reads it once a
//! second through the edge's `/api/` forwarding): the live rooms, Redis's health, and the key series of
//! every edge process and engine, in one JSON document.
//!
//! - **Rooms**: each partition's index of live rooms (`rooms:{pNN}`, kept by the room functions) read
//!   with `rooms_list` — 64 single-slot calls, each returning the partition's count and its newest
//!   `offset + limit` codes — merged newest first; the page's rooms are then read with `snapshot` (one
//!   slot each). 10,000 live rooms cost 64 small calls and `limit` snapshots per refresh.
//! - **Redis**: per configured node, `PING` round trip and a few `INFO` fields (role, memory, clients,
//!   ops/s, version).
//! - **Services**: the `/metrics` of each `--ops-scrape JOB=URL` target (each edge process's
//!   `--metrics-listen` port, each engine), fetched with a short timeout, reduced to the series the page
//!   shows.
//!
//! It lists every live room's game code, which lets anyone join that room: the endpoint answers only
//! `Authorization: Bearer <ops token>` (`--ops-token-file`); without a configured token it is off (404).
//! It shows no other secret (no host tokens, no answers). Replies are cached for 500 ms, so several
//! open ops pages cost Redis one refresh.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::{ConnectInfo, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures_util::future::join_all;
use ringside_lua::Game;
use ringside_protocol::events::ReconnectState;
use ringside_protocol::keys::PARTITIONS;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Mutex;

use crate::api::client_ip;
use crate::auth::{constant_time_eq, FailureLimiter};
use crate::error::ApiError;

/// Rooms per page at most.
pub const MAX_LIMIT: u32 = 100;
/// How deep the pages go (offset + limit); past it the page says so.
pub const MAX_DEPTH: u32 = 10_000;
/// Rooms per `rooms_list` call at most (`ROOMS_LIST_MAX` in lua/ringside.lua).
const ROOMS_LIST_MAX: u32 = 1000;
/// How long one reply is reused.
const CACHE_FOR: Duration = Duration::from_millis(500);
/// Timeout of one scrape or one Redis health probe.
const PROBE_TIMEOUT: Duration = Duration::from_millis(800);
/// The series of a scrape that the ops view keeps (histogram buckets keep their `le`).
const KEEP: &[&str] = &[
    "ringside_edge_connections_open",
    "ringside_edge_players",
    "ringside_edge_hosts",
    "ringside_edge_rooms",
    "ringside_edge_sendq_bytes",
    "ringside_edge_slow_consumer_closes_total",
    "ringside_edge_answers_total",
    "ringside_edge_refusals_total",
    "ringside_edge_frames_out_total",
    "engine_ready",
    "partitions_owned",
    "timers_pending",
    "timers_fired_total",
    "timers_late_total",
    "timer_fire_drift_seconds_bucket",
];

/// One `--ops-scrape` target.
#[derive(Debug, Clone)]
pub struct Target {
    pub job: String,
    pub url: String,
}

impl std::str::FromStr for Target {
    type Err = String;
    fn from_str(s: &str) -> Result<Target, String> {
        let (job, url) = s
            .split_once('=')
            .ok_or_else(|| format!("{s}: expected JOB=http://HOST:PORT/metrics"))?;
        if !url.starts_with("http://") {
            return Err(format!("{url}: only http:// targets"));
        }
        Ok(Target {
            job: job.to_string(),
            url: url.to_string(),
        })
    }
}

/// A reply, when it was made, and for which (offset, limit).
type Cached = (Instant, (u32, u32), Value);

/// What the endpoint works with.
pub struct OpsState {
    game: Game,
    token: Option<String>,
    /// Wrong tokens count against the source address like wrong API keys (429 `rate_limited` past the budget).
    limiter: Arc<FailureLimiter>,
    targets: Vec<Target>,
    /// The Redis nodes to probe, each with its connection once made.
    nodes: Vec<(String, Mutex<Option<redis::aio::MultiplexedConnection>>)>,
    cache: Mutex<Option<Cached>>,
}

impl OpsState {
    /// `token`: the ops token (`None`: the endpoint is off); `limiter`: the API's failed-authentication
    /// budget (shared); `redis_urls`: the nodes to probe.
    pub fn new(
        game: Game,
        token: Option<String>,
        limiter: Arc<FailureLimiter>,
        targets: Vec<Target>,
        redis_urls: &[String],
    ) -> Arc<OpsState> {
        Arc::new(OpsState {
            game,
            token: token.filter(|t| !t.is_empty()),
            limiter,
            targets,
            nodes: redis_urls
                .iter()
                .map(|u| (u.clone(), Mutex::new(None)))
                .collect(),
            cache: Mutex::new(None),
        })
    }
}

/// The route, to merge into the API's router.
pub fn router(state: Arc<OpsState>) -> Router {
    Router::new().route("/api/ops", get(ops)).with_state(state)
}

#[derive(Deserialize)]
struct Page {
    #[serde(default)]
    offset: u32,
    #[serde(default = "default_limit")]
    limit: u32,
}

fn default_limit() -> u32 {
    25
}

async fn ops(
    State(st): State<Arc<OpsState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    q: Query<Page>,
) -> Response {
    let Some(token) = &st.token else {
        return ApiError::NotFound.into_response();
    };
    let ip = client_ip(&headers, peer);
    if let Err(wait) = st.limiter.check(ip) {
        return ApiError::RateLimited {
            retry_after_ms: wait.as_millis() as u64 + 1,
        }
        .into_response();
    }
    let given = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if !constant_time_eq(given.as_bytes(), token.as_bytes()) {
        st.limiter.failed(ip);
        return ApiError::Unauthorized.into_response();
    }
    let limit = q.limit.clamp(1, MAX_LIMIT);
    let offset = q.offset.min(MAX_DEPTH - limit);
    let mut cache = st.cache.lock().await;
    if let Some((at, key, v)) = &*cache {
        if *key == (offset, limit) && at.elapsed() < CACHE_FOR {
            return Json(v.clone()).into_response();
        }
    }
    let (rooms, redis, services) = tokio::join!(
        rooms(&st.game, offset, limit),
        redis_health(&st),
        services(&st.targets)
    );
    let v = json!({
        "at": now_ms(),
        "rooms": rooms,
        "redis": redis,
        "services": services,
    });
    *cache = Some((Instant::now(), (offset, limit), v.clone()));
    Json(v).into_response()
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The live rooms: how many, and one page of them newest first, each with its state and figures.
async fn rooms(game: &Game, offset: u32, limit: u32) -> Value {
    // Each partition's newest `offset + limit`, at most `rooms_list`'s 1000: with codes spread evenly over
    // 64 partitions a page 10,000 deep needs ~160 of each (a partition holding more than 1000 of the
    // newest 10,000 would make the deepest pages approximate).
    let per_partition = (offset + limit).min(ROOMS_LIST_MAX);
    let lists = join_all((0..PARTITIONS).map(|p| game.rooms_list(p, per_partition))).await;
    let mut live = 0u64;
    let mut errors = 0u32;
    let mut all: Vec<(String, u64)> = Vec::new();
    for l in lists {
        match l {
            Ok((n, rooms)) => {
                live += n;
                all.extend(rooms);
            }
            Err(e) => {
                errors += 1;
                tracing::debug!(error = %e, "rooms_list failed");
            }
        }
    }
    all.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let page: Vec<(String, u64)> = all
        .into_iter()
        .skip(offset as usize)
        .take(limit as usize)
        .collect();
    let snaps = join_all(page.iter().map(|(code, _)| game.snapshot(code, None))).await;
    let list: Vec<Value> = page
        .iter()
        .zip(snaps)
        .filter_map(|((code, created), s)| s.ok().map(|s| room_row(code, *created, &s)))
        .collect();
    json!({
        "live": live,
        "offset": offset,
        "limit": limit,
        "list": list,
        "partitionErrors": errors,
    })
}

fn room_row(code: &str, created: u64, s: &ReconnectState) -> Value {
    let q = s.current_q.as_ref();
    json!({
        "code": code,
        "created": created,
        "state": s.state,
        "paused": s.paused,
        "players": s.total_players,
        "qIndex": q.map(|q| q.q_index),
        "totalQuestions": q.map(|q| q.total_questions),
        "question": q.map(|q| q.question.clone()),
        "timeRemainingMs": s.time_remaining_ms,
    })
}

/// PING round trip and a few INFO fields of each configured Redis node.
async fn redis_health(st: &OpsState) -> Value {
    let nodes = join_all(st.nodes.iter().map(|(url, conn)| async move {
        let addr = url
            .trim_start_matches("redis://")
            .trim_start_matches("rediss://")
            .rsplit('@')
            .next()
            .unwrap_or("")
            .trim_end_matches('/')
            .to_string();
        match tokio::time::timeout(PROBE_TIMEOUT, probe_node(url, conn)).await {
            Ok(Ok(mut v)) => {
                v["addr"] = json!(addr);
                v
            }
            Ok(Err(e)) => {
                *conn.lock().await = None;
                json!({"addr": addr, "up": false, "error": e.to_string()})
            }
            Err(_) => {
                *conn.lock().await = None;
                json!({"addr": addr, "up": false, "error": "timeout"})
            }
        }
    }))
    .await;
    json!({ "nodes": nodes })
}

async fn probe_node(
    url: &str,
    slot: &Mutex<Option<redis::aio::MultiplexedConnection>>,
) -> redis::RedisResult<Value> {
    let mut guard = slot.lock().await;
    if guard.is_none() {
        let client = redis::Client::open(url)?;
        *guard = Some(client.get_multiplexed_async_connection().await?);
    }
    let mut conn = guard.clone().expect("connected above");
    drop(guard);
    let t = Instant::now();
    redis::cmd("PING").query_async::<String>(&mut conn).await?;
    let ping_us = t.elapsed().as_micros() as u64;
    let info: String = redis::cmd("INFO").query_async(&mut conn).await?;
    let field = |k: &str| {
        info.lines()
            .find_map(|l| l.strip_prefix(k).and_then(|r| r.strip_prefix(':')))
            .map(|v| v.trim().to_string())
    };
    let num = |k: &str| field(k).and_then(|v| v.parse::<u64>().ok());
    Ok(json!({
        "up": true,
        "pingUs": ping_us,
        "role": field("role"),
        "version": field("redis_version"),
        "usedMemory": num("used_memory"),
        "maxMemory": num("maxmemory"),
        "clients": num("connected_clients"),
        "opsPerSec": num("instantaneous_ops_per_sec"),
        "uptimeS": num("uptime_in_seconds"),
    }))
}

/// Each target's kept series: `{job, url, up, series: {name: value | {label: value}}}`.
async fn services(targets: &[Target]) -> Value {
    let out = join_all(targets.iter().map(|t| async move {
        match tokio::time::timeout(PROBE_TIMEOUT, http_get(&t.url)).await {
            Ok(Ok(text)) => {
                json!({"job": t.job, "url": t.url, "up": true, "series": keep(&text)})
            }
            Ok(Err(e)) => json!({"job": t.job, "url": t.url, "up": false, "error": e.to_string()}),
            Err(_) => json!({"job": t.job, "url": t.url, "up": false, "error": "timeout"}),
        }
    }))
    .await;
    Value::Array(out)
}

/// The [`KEEP`] series of a Prometheus text exposition: a plain number for an unlabelled series (or the
/// sum over a `process` label), an object by the other label's value (`code`, `le`) otherwise.
pub fn keep(text: &str) -> Value {
    let mut plain: BTreeMap<String, f64> = BTreeMap::new();
    let mut labelled: BTreeMap<String, BTreeMap<String, f64>> = BTreeMap::new();
    for line in text.lines() {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(v) = value.parse::<f64>() else {
            continue;
        };
        let (name, labels) = match series.split_once('{') {
            Some((n, l)) => (n, l.trim_end_matches('}')),
            None => (series, ""),
        };
        if !KEEP.contains(&name) {
            continue;
        }
        let other = labels
            .split(',')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k != "process")
            .map(|(_, v)| v.trim_matches('"').to_string());
        match other {
            Some(label) => {
                *labelled
                    .entry(name.to_string())
                    .or_default()
                    .entry(label)
                    .or_default() += v
            }
            None => *plain.entry(name.to_string()).or_default() += v,
        }
    }
    let mut m = serde_json::Map::new();
    for (k, v) in plain {
        m.insert(k, json!(v));
    }
    for (k, v) in labelled {
        m.insert(k, json!(v));
    }
    Value::Object(m)
}

/// A plain HTTP/1.0 GET of `url` (`http://host:port/path`): the body of a 200 reply.
async fn http_get(url: &str) -> std::io::Result<String> {
    let rest = url.strip_prefix("http://").unwrap_or(url);
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let mut s = tokio::net::TcpStream::connect(hostport).await?;
    s.write_all(
        format!("GET {path} HTTP/1.0\r\nHost: {hostport}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await?;
    let mut buf = Vec::new();
    s.take(4 << 20).read_to_end(&mut buf).await?;
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no HTTP head"))?;
    let status = head.split(' ').nth(1).unwrap_or("");
    if status != "200" {
        return Err(std::io::Error::other(format!("HTTP {status}")));
    }
    Ok(body.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keep_sums_processes_and_keys_other_labels() {
        let text = "# HELP x y\nringside_edge_players{process=\"0\"} 3\nringside_edge_players{process=\"1\"} 4\n\
            ringside_edge_refusals_total{process=\"0\",code=\"not_host\"} 2\n\
            ringside_edge_refusals_total{process=\"1\",code=\"not_host\"} 1\n\
            timer_fire_drift_seconds_bucket{le=\"0.01\"} 7\nunrelated_total 9\nengine_ready 1\n";
        let v = keep(text);
        assert_eq!(v["ringside_edge_players"], json!(7.0));
        assert_eq!(v["ringside_edge_refusals_total"]["not_host"], json!(3.0));
        assert_eq!(v["timer_fire_drift_seconds_bucket"]["0.01"], json!(7.0));
        assert_eq!(v["engine_ready"], json!(1.0));
        assert!(v.get("unrelated_total").is_none());
    }

    #[test]
    fn targets_parse_as_job_equals_url() {
        let t: Target = "edge=http://127.0.0.1:9180/metrics".parse().unwrap();
        assert_eq!(
            (t.job.as_str(), t.url.as_str()),
            ("edge", "http://127.0.0.1:9180/metrics")
        );
        assert!("http://x/metrics".parse::<Target>().is_err());
        assert!("edge=https://x/metrics".parse::<Target>().is_err());
    }
}

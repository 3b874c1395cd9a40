//! The InfluxDB-compatible HTTP listener: `/write`, `/api/v2/write`, `/ping`, `/query`,
//! `/health`, `/metrics`, and the v2 reads (`/api/v2/query`, `/api/v2/buckets`, `/ready`,
//! `/api/v2/health`; see [`v2_read`]).
//!
//! Served by hyper directly (not `axum::serve`) for two reasons: header names go out in
//! title case (`X-Influxdb-Version`), because some clients (aioinflux) read them from a
//! case-sensitive dict; and the connection limit and graceful shutdown are ours to enforce.

use std::{
    collections::HashMap,
    io::Read,
    sync::Arc,
    time::{Duration, SystemTime},
};

use axum::{
    body::{Body, Bytes},
    extract::{Query, State},
    http::{header, HeaderMap, HeaderValue, Method, StatusCode},
    response::{IntoResponse, Response},
    routing::{any, get, post},
    Router,
};
use hyper_util::rt::TokioIo;
use tokio::{net::TcpListener, sync::Semaphore, time::Instant};
use tokio_util::task::TaskTracker;

use super::{
    auth::{Auth, Credentials},
    ListenerCtx,
};
use crate::{
    config::{AckMode, HttpListener, InfluxApi, QueryPolicy},
    error_chain,
    output::influxdb::{Destination, Target},
    output::{influxdb::InfluxOutput, Answer, Output},
    pipeline::{Batch, Wait},
    tls::Conn,
    warn_limited,
};

mod v2_read;
pub use v2_read::FLUX_REFUSED;

/// What `/ping` and every response report as the server version. InfluxDB clients parse it
/// (some switch behaviour on the major version), so it names the 1.x API fluxgate speaks.
const INFLUXDB_VERSION: &str = "1.8.10";

#[derive(Debug)]
struct HttpState {
    ctx: Arc<ListenerCtx>,
    cfg: HttpListener,
    auth: Auth,
}

type AppState = State<Arc<HttpState>>;

pub async fn serve(
    listener: Arc<TcpListener>,
    ctx: Arc<ListenerCtx>,
    cfg: HttpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    tracker: TaskTracker,
) {
    let slots = Arc::new(Semaphore::new(cfg.max_connections));
    let timeouts = Timeouts {
        header: cfg.header_timeout,
        idle: cfg.idle_timeout,
    };
    let state = Arc::new(HttpState {
        ctx: ctx.clone(),
        auth: Auth::new(&cfg),
        cfg,
    });
    let router = Router::new()
        .route("/write", post(write_v1))
        .route("/api/v2/write", post(write_v2))
        .route("/ping", get(ping).head(ping))
        .route("/query", any(query))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/api/v2/query", post(v2_read::query_v2))
        .route("/api/v2/buckets", any(v2_read::buckets))
        .route("/ready", get(v2_read::ready))
        .route("/api/v2/health", get(v2_read::health_v2))
        .fallback(not_found)
        .layer(axum::middleware::map_response(influx_headers))
        .layer(axum::middleware::from_fn(v1_error_dialect))
        .with_state(state);
    serve_router(listener, ctx, router, slots, timeouts, tls, tracker).await
}

/// `/metrics` (and `/health`) alone, on `[telemetry] address`: a gateway without the HTTP
/// listener stays observable. The credentials and `metrics_auth` of `[listeners.http]`
/// apply, as they do to its `/metrics`; the connection limits and timeouts too.
pub async fn serve_metrics(
    listener: Arc<TcpListener>,
    ctx: Arc<ListenerCtx>,
    cfg: HttpListener,
    tracker: TaskTracker,
) {
    let slots = Arc::new(Semaphore::new(cfg.max_connections));
    let timeouts = Timeouts {
        header: cfg.header_timeout,
        idle: cfg.idle_timeout,
    };
    let state = Arc::new(HttpState {
        ctx: ctx.clone(),
        auth: Auth::new(&cfg),
        cfg,
    });
    let router = Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .with_state(state);
    serve_router(listener, ctx, router, slots, timeouts, None, tracker).await
}

async fn serve_router(
    listener: Arc<TcpListener>,
    ctx: Arc<ListenerCtx>,
    router: Router,
    slots: Arc<Semaphore>,
    timeouts: Timeouts,
    tls: Option<tokio_rustls::TlsAcceptor>,
    tracker: TaskTracker,
) {
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(a) => a,
                Err(e) => {
                    warn_limited!(ctx.log_limit, listener = ctx.name, "accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = ctx.stop_accepting.cancelled() => return,
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            ctx.reject("max_connections", 1);
            warn_limited!(ctx.log_limit, listener = ctx.name, %peer, "connection refused: max_connections reached");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service = hyper_util::service::TowerToHyperService::new(router.clone());
        let cancel = ctx.cancel.clone();
        let conn_ctx = ctx.clone();
        let tls = tls.clone();
        tracker.spawn(async move {
            conn_ctx.connections.inc();
            // The handshake counts against the header timeout: a client that connects and
            // sends nothing holds its slot for no longer than one that trickles headers.
            let activity = Activity::new();
            let io = match tls {
                None => Some(Conn::Plain(stream)),
                Some(acceptor) => tokio::select! {
                    r = tokio::time::timeout(timeouts.header, acceptor.accept(stream)) => match r {
                        Ok(Ok(s)) => Some(Conn::Server(Box::new(s))),
                        // Closed before saying anything: a port probe.
                        Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => None,
                        Ok(Err(e)) => {
                            conn_ctx.reject("tls_handshake", 1);
                            warn_limited!(conn_ctx.log_limit, listener = conn_ctx.name, %peer, "TLS handshake failed: {e}");
                            None
                        }
                        Err(_) => {
                            conn_ctx.reject("header_timeout", 1);
                            None
                        }
                    },
                    _ = cancel.cancelled() => None,
                },
            };
            if let Some(io) = io {
                let conn = hyper::server::conn::http1::Builder::new()
                    .title_case_headers(true)
                    .keep_alive(true)
                    // Our own watchdog below does it: hyper's timer also runs while a
                    // keep-alive connection waits for its next request, so it cannot tell
                    // a slow client from an idle one.
                    .header_read_timeout(None)
                    .serve_connection(
                        TokioIo::new(TimedIo::new(io, activity.clone())),
                        Marked {
                            inner: service,
                            activity: activity.clone(),
                        },
                    );
                tokio::pin!(conn);
                tokio::select! {
                    _ = conn.as_mut() => {}
                    reason = activity.expired(timeouts) => {
                        conn_ctx.reject(reason, 1);
                    }
                    _ = cancel.cancelled() => {
                        conn.as_mut().graceful_shutdown();
                        let _ = conn.await;
                    }
                }
            }
            conn_ctx.connections.dec();
            drop(permit);
        });
    }
}

#[derive(Debug, Clone, Copy)]
struct Timeouts {
    header: Duration,
    idle: Duration,
}

/// Where a connection is in its request cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for a request's headers to end (since the connection opened, or since the
    /// first byte of a keep-alive connection's next request): `header_timeout` applies.
    Head,
    /// Headers complete, the request is being handled (its body read, the answer made).
    Busy,
    /// Answered (its body may still be streaming out); a keep-alive connection then waits
    /// for its next request.
    Idle,
}

#[derive(Debug)]
struct ActivityState {
    phase: Phase,
    /// When `Head` began.
    head_since: Instant,
    /// The last byte read or written.
    last_io: Instant,
}

/// Tracks a connection for [`Timeouts`]: `header_timeout` from the start of a request's
/// headers to their end (hyper handing the request to the service); `idle_timeout` for a
/// connection that moves no byte, between requests or inside one (a client that stalls in
/// the middle of a body, or never reads its answer).
#[derive(Debug)]
struct Activity(std::sync::Mutex<ActivityState>);

impl Activity {
    fn new() -> Arc<Self> {
        let now = Instant::now();
        Arc::new(Self(std::sync::Mutex::new(ActivityState {
            phase: Phase::Head,
            head_since: now,
            last_io: now,
        })))
    }

    fn state(&self) -> std::sync::MutexGuard<'_, ActivityState> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn read(&self) {
        let now = Instant::now();
        let mut st = self.state();
        st.last_io = now;
        if st.phase == Phase::Idle {
            st.phase = Phase::Head;
            st.head_since = now;
        }
    }

    fn wrote(&self) {
        self.state().last_io = Instant::now();
    }

    fn request_started(&self) {
        self.state().phase = Phase::Busy;
    }

    fn answered(&self) {
        let mut st = self.state();
        st.phase = Phase::Idle;
        st.last_io = Instant::now();
    }

    /// Resolves, with the `rejected` reason, when the connection overstayed a timeout.
    async fn expired(&self, t: Timeouts) -> &'static str {
        // Phases change without waking this task, so it looks again at least this often;
        // a deadline is therefore noticed at most one recheck late.
        let recheck = if t.idle.is_zero() {
            t.header
        } else {
            t.header.min(t.idle)
        }
        .max(Duration::from_millis(20))
            / 2;
        loop {
            let (deadline, reason) = {
                let st = self.state();
                match st.phase {
                    Phase::Head => (Some(st.head_since + t.header), "header_timeout"),
                    _ if t.idle.is_zero() => (None, "idle_timeout"),
                    _ => (Some(st.last_io + t.idle), "idle_timeout"),
                }
            };
            let now = Instant::now();
            match deadline {
                Some(d) if d <= now => return reason,
                Some(d) => tokio::time::sleep_until(d.min(now + recheck)).await,
                None => tokio::time::sleep(recheck).await,
            }
        }
    }
}

/// The router, telling the connection's [`Activity`] when a request's headers are in and
/// when it has been answered.
#[derive(Debug, Clone)]
struct Marked<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S, R> hyper::service::Service<R> for Marked<S>
where
    S: hyper::service::Service<R>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = futures::future::BoxFuture<'static, Result<S::Response, S::Error>>;

    fn call(&self, req: R) -> Self::Future {
        self.activity.request_started();
        let answer = self.inner.call(req);
        let activity = self.activity.clone();
        Box::pin(async move {
            let r = answer.await;
            activity.answered();
            r
        })
    }
}

/// A connection that reports what it reads and writes to its [`Activity`].
#[derive(Debug)]
struct TimedIo {
    io: Conn,
    activity: Arc<Activity>,
}

impl TimedIo {
    fn new(io: Conn, activity: Arc<Activity>) -> Self {
        Self { io, activity }
    }
}

impl tokio::io::AsyncRead for TimedIo {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = std::pin::Pin::new(&mut self.io).poll_read(cx, buf);
        if let std::task::Poll::Ready(Ok(())) = &r {
            if buf.filled().len() > before {
                self.activity.read();
            }
        }
        r
    }
}

impl tokio::io::AsyncWrite for TimedIo {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let r = std::pin::Pin::new(&mut self.io).poll_write(cx, buf);
        if let std::task::Poll::Ready(Ok(n)) = &r {
            if *n > 0 {
                self.activity.wrote();
            }
        }
        r
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let r = std::pin::Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        if let std::task::Poll::Ready(Ok(n)) = &r {
            if *n > 0 {
                self.activity.wrote();
            }
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// InfluxDB puts these on every response; clients look for the version one.
async fn influx_headers(mut resp: Response) -> Response {
    let id = request_id();
    let h = resp.headers_mut();
    if !h.contains_key("x-influxdb-version") {
        h.insert(
            "x-influxdb-version",
            HeaderValue::from_static(INFLUXDB_VERSION),
        );
    }
    h.insert("x-influxdb-build", HeaderValue::from_static("OSS"));
    h.insert(
        "x-fluxgate-version",
        HeaderValue::from_static(env!("CARGO_PKG_VERSION")),
    );
    if let Ok(v) = HeaderValue::from_str(&id) {
        h.insert("request-id", v.clone());
        h.insert("x-request-id", v);
    }
    resp
}

fn request_id() -> String {
    use rand::Rng;
    let r: u128 = rand::thread_rng().gen();
    let s = format!("{r:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &s[..8],
        &s[8..12],
        &s[12..16],
        &s[16..20],
        &s[20..]
    )
}

/// The two error dialects: 1.x `{"error": ...}` + `X-Influxdb-Error`, 2.x `{"code", "message"}`.
/// Marks a 1.x error body fluxgate wrote itself (see [`v1_error_dialect`]).
#[derive(Debug, Clone, Copy)]
struct V1Error;

/// InfluxDB 1.x answers in MessagePack to a client that asks for it (`Accept:
/// application/x-msgpack`, as influxdb-python does), its errors included; clients decode the
/// error by that content type, so fluxgate's own 1.x errors are re-encoded the same way.
/// The map is two strings: written by hand rather than with a MessagePack crate.
async fn v1_error_dialect(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let msgpack = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/x-msgpack"));
    let resp = next.run(req).await;
    if !msgpack || resp.extensions().get::<V1Error>().is_none() {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let bytes = axum::body::to_bytes(body, 1 << 20)
        .await
        .unwrap_or_default();
    let message = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str().map(str::to_owned)))
        .unwrap_or_default();
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-msgpack"),
    );
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(msgpack_error(&message)))
}

/// `{"error": message}` in MessagePack.
fn msgpack_error(message: &str) -> Vec<u8> {
    let mut out = vec![0x81, 0xa5];
    out.extend_from_slice(b"error");
    let len = message.len();
    match len {
        0..=31 => out.push(0xa0 | len as u8),
        32..=255 => out.extend_from_slice(&[0xd9, len as u8]),
        256..=65535 => {
            out.push(0xda);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            out.push(0xdb);
            out.extend_from_slice(&(len as u32).to_be_bytes());
        }
    }
    out.extend_from_slice(message.as_bytes());
    out
}

fn error(api: InfluxApi, status: StatusCode, message: &str) -> Response {
    let mut resp = match api {
        InfluxApi::V1 => {
            let mut r = (
                status,
                [(header::CONTENT_TYPE, "application/json")],
                // Go's json.Encoder ends the body with a newline; clients print it as is.
                serde_json::json!({ "error": message }).to_string() + "\n",
            )
                .into_response();
            r.extensions_mut().insert(V1Error);
            r
        }
        InfluxApi::V2 => {
            let code = match status.as_u16() {
                400 => "invalid",
                401 => "unauthorized",
                403 => "forbidden",
                404 => "not found",
                413 => "request too large",
                422 => "unprocessable entity",
                429 => "too many requests",
                503 => "unavailable",
                _ => "internal error",
            };
            (
                status,
                [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
                serde_json::json!({ "code": code, "message": message }).to_string(),
            )
                .into_response()
        }
    };
    if api == InfluxApi::V1 {
        // Go's header sanitizer turns newlines into spaces; so do we. Cut at 1024 as 1.x does.
        let flat: String = message
            .chars()
            .map(|c| if c == '\n' || c == '\r' { ' ' } else { c })
            .take(1024)
            .collect();
        if let Ok(v) = HeaderValue::from_str(&flat) {
            resp.headers_mut().insert("x-influxdb-error", v);
        }
    }
    if status == StatusCode::SERVICE_UNAVAILABLE || status == StatusCode::TOO_MANY_REQUESTS {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    resp
}

async fn write_v1(
    State(st): AppState,
    uri: axum::http::Uri,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if let Some(refused) = authorize(&st, InfluxApi::V1, &headers, &query_pairs(&uri)) {
        return refused;
    }
    let Some(db) = q.get("db").filter(|d| !d.is_empty()) else {
        st.ctx.reject("bad_request", 1);
        return error(
            InfluxApi::V1,
            StatusCode::BAD_REQUEST,
            "database is required",
        );
    };
    let dest = Destination::new(db, q.get("rp").map_or("", |s| s.as_str()));
    // 1.x treats an unknown precision as nanoseconds rather than failing the write.
    let precision = q
        .get("precision")
        .and_then(|p| line_protocol::Precision::parse(p).ok())
        .unwrap_or(line_protocol::Precision::Nanoseconds);
    write(&st, InfluxApi::V1, dest, precision, &headers, body).await
}

async fn write_v2(
    State(st): AppState,
    uri: axum::http::Uri,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if let Some(refused) = authorize(&st, InfluxApi::V2, &headers, &query_pairs(&uri)) {
        return refused;
    }
    let Some(bucket) = q.get("bucket").filter(|b| !b.is_empty()) else {
        st.ctx.reject("bad_request", 1);
        return error(
            InfluxApi::V2,
            StatusCode::BAD_REQUEST,
            "bucket not specified",
        );
    };
    let precision = match q.get("precision") {
        None => line_protocol::Precision::Nanoseconds,
        Some(p) => match line_protocol::Precision::parse(p).ok() {
            Some(p) => p,
            None => {
                st.ctx.reject("bad_request", 1);
                return error(
                    InfluxApi::V2,
                    StatusCode::BAD_REQUEST,
                    &format!("invalid precision {p:?}: use one of ns, us, ms, s"),
                );
            }
        },
    };
    write(
        &st,
        InfluxApi::V2,
        Destination::from_bucket(bucket),
        precision,
        &headers,
        body,
    )
    .await
}

/// Reads the body (gunzipping within the size limit), validates every line, and queues the
/// good ones with nanosecond timestamps. v1 semantics: good lines are written even when some
/// fail (400 partial write); v2 semantics: one bad line rejects the whole request.
async fn write(
    st: &HttpState,
    api: InfluxApi,
    dest: Destination,
    precision: line_protocol::Precision,
    headers: &HeaderMap,
    body: Body,
) -> Response {
    let limit = st.cfg.max_body_bytes;
    // Bodies are read against the listener's byte budget (`max_buffered_bytes`), so many
    // large uploads at once wait for room instead of taking memory without bound.
    let (raw, mut held) = match read_body(st, body, limit).await {
        Ok(b) => b,
        Err(BodyError::TooLarge) => {
            st.ctx.reject("body_too_large", 1);
            return error(
                api,
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("request body too large: the limit is {limit} bytes"),
            );
        }
        Err(BodyError::Budget) => {
            st.ctx.reject("buffer_budget", 1);
            return error(
                api,
                StatusCode::SERVICE_UNAVAILABLE,
                "fluxgate is overloaded: too many request bodies in flight; retry later",
            );
        }
        Err(BodyError::Stalled) => {
            st.ctx.reject("idle_timeout", 1);
            return error(
                api,
                StatusCode::REQUEST_TIMEOUT,
                "the request body stopped arriving (idle_timeout)",
            );
        }
        Err(BodyError::Read(e)) => {
            st.ctx.reject("read_error", 1);
            return error(
                api,
                StatusCode::BAD_REQUEST,
                &format!("cannot read the body: {e}"),
            );
        }
    };
    let gzipped = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("gzip") || v.eq_ignore_ascii_case("x-gzip"));
    let body = if gzipped {
        // Decompression is CPU work: large bodies do it off the runtime threads.
        let unzipped = if raw.len() > OFF_RUNTIME_BYTES {
            let raw = raw.clone();
            tokio::task::spawn_blocking(move || gunzip(&raw, limit))
                .await
                .unwrap_or(Err(GunzipError::TooLarge))
        } else {
            gunzip(&raw, limit)
        };
        match unzipped {
            Ok(b) => {
                // Held after the fact: one body per connection may pass the budget briefly.
                held.merge(st.ctx.buffered.force(0, b.len()));
                Bytes::from(b)
            }
            Err(GunzipError::TooLarge) => {
                st.ctx.reject("body_too_large", 1);
                return error(
                    api,
                    StatusCode::PAYLOAD_TOO_LARGE,
                    &format!(
                        "request body too large: the limit is {limit} bytes after decompression"
                    ),
                );
            }
            Err(GunzipError::Bad(e)) => {
                st.ctx.reject("bad_request", 1);
                return error(
                    api,
                    StatusCode::BAD_REQUEST,
                    &format!("invalid gzip body: {e}"),
                );
            }
        }
    } else {
        raw
    };
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0);
    if let Err(e) = std::str::from_utf8(&body) {
        st.ctx.reject("bad_request", 1);
        return error(
            api,
            StatusCode::BAD_REQUEST,
            &format!(
                "unable to parse body: invalid UTF-8 at byte {}",
                e.valid_up_to()
            ),
        );
    }
    let pipeline = st.ctx.pipeline();
    let max_line = st.cfg.max_line_bytes;
    let name = st.ctx.name;
    let parsed = if body.len() > OFF_RUNTIME_BYTES {
        let (pipeline, body) = (pipeline.clone(), body.clone());
        tokio::task::spawn_blocking(move || {
            parse_body(&pipeline, name, &body, precision, now, max_line)
        })
        .await
        .expect("parsing does not panic")
    } else {
        parse_body(&pipeline, name, &body, precision, now, max_line)
    };
    let Parsed {
        mut batch,
        failures,
        failed,
    } = parsed;
    drop(body);
    drop(held);
    let points = batch.len();
    if failed > 0 {
        st.ctx.reject("invalid_line", failed as u64);
        warn_limited!(
            st.ctx.log_limit,
            listener = st.ctx.name,
            lines = failed,
            "rejected line protocol: {}",
            &failures[0]
        );
    }
    let joined = failures.join("\n");
    if failed > 0 && (points == 0 || api == InfluxApi::V2) {
        return error(api, StatusCode::BAD_REQUEST, &joined);
    }
    let mut upstream = None;
    if points > 0 {
        let target = Target::Explicit(dest);
        let wait = match st.cfg.ack {
            AckMode::Delivered => Wait::Delivered(st.cfg.write_timeout),
            AckMode::Durable => Wait::Durable(st.cfg.write_timeout),
            AckMode::Queued => Wait::AllOrNothing(st.cfg.write_timeout),
        };
        let s = batch.submit(&st.ctx, &pipeline, &target, wait).await;
        if s.timed_out > 0 || (s.accepted == 0 && s.dropped + s.closed > 0) {
            st.ctx.reject("queue_full", points as u64);
            return error(
                api,
                StatusCode::SERVICE_UNAVAILABLE,
                "fluxgate is overloaded: an output queue is full; retry later",
            );
        }
        if let Some(Answer::Unavailable(why)) = &s.answer {
            st.ctx.reject("upstream_unavailable", points as u64);
            return error(
                api,
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("the upstream did not take the write: {why}; retry later"),
            );
        }
        st.ctx.received.inc_by(points as u64);
        upstream = s.answer;
    }
    match upstream {
        // The upstream's own refusal, in the dialect the client wrote in; lines fluxgate
        // refused itself are listed first, as one InfluxDB would list them all.
        Some(Answer::Refused { status, message }) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
            let message = match (failed > 0, message.strip_prefix("partial write: ")) {
                (true, Some(theirs)) => merge_partial(&joined, failed, theirs),
                _ => message,
            };
            return error(api, status, &message);
        }
        _ if failed > 0 => {
            return error(
                api,
                StatusCode::BAD_REQUEST,
                &format!("partial write: {joined} dropped={failed}"),
            );
        }
        _ => {}
    }
    StatusCode::NO_CONTENT.into_response()
}

/// One partial-write message for lines refused here and by the upstream.
fn merge_partial(ours: &str, ours_dropped: usize, theirs: &str) -> String {
    let (text, dropped) = match theirs.rsplit_once(" dropped=") {
        Some((text, n)) => (text, n.trim().parse::<usize>().unwrap_or(0)),
        None => (theirs, 0),
    };
    format!(
        "partial write: {ours}\n{text} dropped={}",
        ours_dropped + dropped
    )
}

/// A body this large is decompressed and parsed off the runtime threads.
const OFF_RUNTIME_BYTES: usize = 256 * 1024;

/// How long a body waits for room in the listener's byte budget before the write is refused.
const BODY_BUDGET_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

enum BodyError {
    TooLarge,
    Budget,
    /// Nothing more of the body arrived for `idle_timeout`.
    Stalled,
    Read(String),
}

/// Reads a request body, at most `limit` bytes, taking each part from the listener's byte
/// budget (waiting a little for room when it is spent).
async fn read_body(
    st: &HttpState,
    body: Body,
    limit: usize,
) -> Result<(Bytes, crate::queue::Permit), BodyError> {
    use http_body_util::BodyExt;
    let mut body = body;
    let mut out = bytes::BytesMut::new();
    let mut held = crate::queue::Permit::default();
    // A body that stops arriving lets its room go after `idle_timeout`.
    let idle = if st.cfg.idle_timeout.is_zero() {
        std::time::Duration::from_secs(3600)
    } else {
        st.cfg.idle_timeout
    };
    loop {
        let frame = match tokio::time::timeout(idle, body.frame()).await {
            Ok(Some(frame)) => frame,
            Ok(None) => break,
            Err(_) => return Err(BodyError::Stalled),
        };
        let frame = frame.map_err(|e| BodyError::Read(e.to_string()))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if out.len() + data.len() > limit {
            return Err(BodyError::TooLarge);
        }
        let deadline = tokio::time::Instant::now() + BODY_BUDGET_WAIT;
        loop {
            let waiter = st.ctx.buffered.waiter();
            let room = waiter.register();
            match st.ctx.buffered.try_acquire(0, data.len()) {
                crate::queue::Acquire::Granted(p) => {
                    held.merge(p);
                    break;
                }
                crate::queue::Acquire::Closed => return Err(BodyError::Budget),
                crate::queue::Acquire::Full => {
                    if tokio::time::timeout_at(deadline, room).await.is_err() {
                        return Err(BodyError::Budget);
                    }
                }
            }
        }
        out.extend_from_slice(&data);
    }
    Ok((out.freeze(), held))
}

/// What a body's lines became.
struct Parsed {
    batch: Batch,
    failures: Vec<String>,
    failed: usize,
}

/// Validates every line of `body` (UTF-8 already checked) and translates the good ones into
/// a batch for the outputs.
fn parse_body(
    pipeline: &crate::pipeline::Pipeline,
    listener: &'static str,
    body: &[u8],
    precision: line_protocol::Precision,
    now: i64,
    max_line: usize,
) -> Parsed {
    let text = std::str::from_utf8(body).unwrap_or_default();
    let mut batch = Batch::new(listener);
    let mut line = Vec::with_capacity(256);
    let mut failures: Vec<String> = Vec::new();
    let mut failed = 0usize;
    // InfluxDB's own line splitting: a newline inside a quoted string value is content.
    for parsed in line_protocol::parse_lines(text).precision(precision) {
        let added = parsed.map_err(|e| e.to_string()).and_then(|p| {
            if p.line().len() > max_line {
                let head: String = p.line().chars().take(64).collect();
                return Err(format!(
                    "unable to parse '{head}...': line too long ({} bytes; max_line_bytes is {max_line})",
                    p.line().len()
                ));
            }
            if let Some((as_sent, ns)) = written_as_sent(body, &p, precision) {
                batch.add_line_protocol(pipeline, &p, as_sent, ns);
                return Ok(());
            }
            line.clear();
            let ns = append_point(&p, precision, now, &mut line).map_err(|e| e.to_string())?;
            batch.add_line_protocol(pipeline, &p, &line, ns);
            Ok(())
        });
        if let Err(e) = added {
            failed += 1;
            // Enough to show the client what is wrong without echoing a huge body.
            if failures.len() < 32 {
                failures.push(e);
            }
        }
    }
    Parsed {
        batch,
        failures,
        failed,
    }
}

/// The line as it sits in `body`, with its newline, when that is already exactly what
/// [`append_point`] would write (a nanosecond timestamp spelled as written, after one space,
/// nothing after it), and the timestamp: the line is then handed on without a copy.
fn written_as_sent<'b>(
    body: &'b [u8],
    p: &line_protocol::ParsedLine<'_>,
    precision: line_protocol::Precision,
) -> Option<(&'b [u8], i64)> {
    if precision != line_protocol::Precision::Nanoseconds {
        return None;
    }
    let ns = p.timestamp_nanos(precision).ok()??;
    let line = p.line().as_bytes();
    let sep = line.iter().rposition(|&b| b == b' ' || b == b'\t')?;
    if line[sep] != b' ' || sep == 0 || matches!(line[sep - 1], b' ' | b'\t') {
        return None;
    }
    let token = &line[sep + 1..];
    let digits = token.strip_prefix(b"-").unwrap_or(token);
    let canonical = match digits {
        [b'0'] => token.len() == 1,
        [b'1'..=b'9', rest @ ..] => rest.iter().all(u8::is_ascii_digit),
        _ => false,
    };
    if !canonical {
        return None;
    }
    // `line` borrows from `body`: where it starts there, and whether a newline follows it.
    let start = (line.as_ptr() as usize).checked_sub(body.as_ptr() as usize)?;
    let end = start + line.len();
    (body.get(end) == Some(&b'\n')).then(|| (&body[start..=end], ns))
}

/// Appends a parsed point to `out` with a nanosecond timestamp. The line's own text is kept
/// (it parsed, so it is valid line protocol); only the timestamp is rewritten, or added with
/// the time of receipt when the line had none, so a point that waits in a queue keeps the
/// time it was written, not the time of a late retry.
pub(crate) fn append_point(
    p: &line_protocol::ParsedLine<'_>,
    precision: line_protocol::Precision,
    now: i64,
    out: &mut Vec<u8>,
) -> Result<i64, line_protocol::Error> {
    let line = p
        .line()
        .trim_start()
        .trim_end_matches(['\n', '\r', ' ', '\t']);
    let (head, ns) = match p.timestamp_nanos(precision)? {
        None => (line, now),
        // The timestamp is the last token of a line that parsed with one.
        Some(ns) => (line.rsplit_once([' ', '\t']).map_or(line, |(h, _)| h), ns),
    };
    out.extend_from_slice(head.trim_end_matches([' ', '\t']).as_bytes());
    out.push(b' ');
    out.extend_from_slice(itoa::Buffer::new().format(ns).as_bytes());
    out.push(b'\n');
    Ok(ns)
}

enum GunzipError {
    TooLarge,
    Bad(std::io::Error),
}

fn gunzip(data: &[u8], limit: usize) -> Result<Vec<u8>, GunzipError> {
    let mut out = Vec::with_capacity((data.len() * 4).min(limit));
    let mut dec = flate2::read::MultiGzDecoder::new(data).take(limit as u64 + 1);
    dec.read_to_end(&mut out).map_err(GunzipError::Bad)?;
    if out.len() > limit {
        return Err(GunzipError::TooLarge);
    }
    Ok(out)
}

/// `/ping` reports the version of the InfluxDB behind the gateway once it has answered
/// (clients switch behaviour on it), and fluxgate's own 1.x API version until then.
async fn ping(State(st): AppState, Query(q): Query<HashMap<String, String>>) -> Response {
    let version = st
        .ctx
        .pipeline()
        .outputs
        .iter()
        .find_map(|o| o.as_influx())
        .and_then(|i| i.upstream_version())
        .unwrap_or_else(|| INFLUXDB_VERSION.to_owned());
    let mut resp = if q.get("verbose").is_some_and(|v| v == "true" || v == "1") {
        (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            serde_json::json!({ "version": version }).to_string(),
        )
            .into_response()
    } else {
        StatusCode::NO_CONTENT.into_response()
    };
    if let Ok(v) = HeaderValue::from_str(&version) {
        resp.headers_mut().insert("x-influxdb-version", v);
    }
    resp
}

async fn health() -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::json!({
            "name": "fluxgate",
            "message": "ready for writes",
            "status": "pass",
            "version": env!("CARGO_PKG_VERSION"),
        })
        .to_string(),
    )
        .into_response()
}

async fn metrics(State(st): AppState, uri: axum::http::Uri, headers: HeaderMap) -> Response {
    if st.cfg.metrics_needs_auth() {
        if let Some(refused) = authorize(&st, InfluxApi::V1, &headers, &query_pairs(&uri)) {
            return refused;
        }
    }
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        st.ctx.metrics.render(),
    )
        .into_response()
}

async fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "404 page not found\n").into_response()
}

/// With a buffered `ack`, a query naming a database first waits (at most `query_wait`) until
/// the writes acknowledged before it are delivered, so a client that writes and then reads
/// sees its write, as it would against InfluxDB.
async fn read_your_writes(st: &HttpState, out: &InfluxOutput, params: &[(String, String)]) {
    if st.cfg.ack == AckMode::Delivered || st.cfg.query_wait.is_zero() {
        return;
    }
    let Some(db) = params.iter().find(|(k, _)| k == "db").map(|(_, v)| v) else {
        return;
    };
    let Some(barrier) = out.barrier(db) else {
        return;
    };
    let outcome = match tokio::time::timeout(st.cfg.query_wait, barrier).await {
        Ok(()) => "delivered",
        Err(_) => "timed_out",
    };
    st.ctx
        .metrics
        .query_waits
        .with_label_values(&[outcome])
        .inc();
}

/// The query string's pairs, percent-decoded.
fn query_pairs(uri: &axum::http::Uri) -> Vec<(String, String)> {
    uri.query().map(form_pairs).unwrap_or_default()
}

fn form_pairs(s: &str) -> Vec<(String, String)> {
    url::form_urlencoded::parse(s.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// With `users` or `tokens` configured, the request's credentials must match one of them;
/// otherwise the answer is a 401 in its API's shape, counted (`unauthorized`) and logged.
fn authorize(
    st: &HttpState,
    api: InfluxApi,
    headers: &HeaderMap,
    params: &[(String, String)],
) -> Option<Response> {
    let creds = Credentials::from_request(headers, params);
    if !st.auth.enabled() || st.auth.check(&creds) {
        return None;
    }
    st.ctx.reject("unauthorized", 1);
    warn_limited!(
        st.ctx.log_limit,
        listener = st.ctx.name,
        credentials = if creds.present() { "wrong" } else { "none" },
        "request refused: authorization failed"
    );
    Some(unauthorized(api))
}

fn unauthorized(api: InfluxApi) -> Response {
    let mut resp = match api {
        InfluxApi::V1 => error(api, StatusCode::UNAUTHORIZED, "authorization failed"),
        InfluxApi::V2 => error(api, StatusCode::UNAUTHORIZED, "unauthorized access"),
    };
    resp.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"InfluxDB\""),
    );
    resp
}

/// What `query = "read_only"` answers to a statement that is not a read.
pub const QUERY_REFUSED: &str =
    "fluxgate: only SELECT, SHOW and CREATE DATABASE statements are allowed through /query (query = \"read_only\")";

fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
}

/// `/query` goes to the first InfluxDB v1 output, so a client pointed at the gateway can
/// read as if talking to InfluxDB.
///
/// - `query = "off"`: 404. `"read_only"` (the default): every `q`, from the query string
///   and from a form-encoded body, must hold only `SELECT` (without `INTO`), `SHOW` and
///   `CREATE DATABASE`
///   statements (see [`super::influxql`]); otherwise 403 [`QUERY_REFUSED`], counted as
///   `query_refused`. A body that is not form-encoded is refused too, since InfluxDB would
///   read a `q` from it that this check cannot see. What is forwarded is re-encoded from
///   what was checked, so InfluxDB parses exactly that.
/// - Credentials: with `users`/`tokens` set, the client authenticated to fluxgate; its
///   fluxgate credentials are not passed on, and the output's credentials are used. Without
///   them, the client's own credentials (if any) go upstream and the output's never do:
///   lending them to an anonymous client would give it the output's privileges.
/// - The answer is streamed as it arrives; an upstream failure in the middle of it ends the
///   response with an error (a cut chunked body), never a complete-looking empty one.
async fn query(
    State(st): AppState,
    method: Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if st.cfg.query == QueryPolicy::Off {
        st.ctx.reject("query_refused", 1);
        return error(
            InfluxApi::V1,
            StatusCode::NOT_FOUND,
            "fluxgate: /query is turned off (query = \"off\")",
        );
    }
    let url_pairs = query_pairs(&uri);
    let form = is_form(&headers);
    let body_pairs = if form {
        form_pairs(&String::from_utf8_lossy(&body))
    } else {
        Vec::new()
    };
    let all: Vec<(String, String)> = url_pairs.iter().chain(&body_pairs).cloned().collect();
    if let Some(refused) = authorize(&st, InfluxApi::V1, &headers, &all) {
        return refused;
    }
    if st.cfg.query == QueryPolicy::ReadOnly {
        let refused = if !form && !body.is_empty() {
            Some("a non-form body".to_owned())
        } else {
            all.iter()
                .filter(|(k, _)| k == "q")
                .find_map(|(_, q)| super::influxql::check_read_only(q).err())
                .map(|r| r.keyword)
        };
        if let Some(what) = refused {
            st.ctx.reject("query_refused", 1);
            // The statement's text is not logged: it may carry a password.
            warn_limited!(
                st.ctx.log_limit,
                listener = st.ctx.name,
                statement = %what,
                "/query refused: only SELECT, SHOW and CREATE DATABASE pass (query = \"read_only\")"
            );
            return error(InfluxApi::V1, StatusCode::FORBIDDEN, QUERY_REFUSED);
        }
    }
    let pipeline = st.ctx.pipeline();
    let Some(out) = pipeline
        .outputs
        .iter()
        .filter_map(|o| o.as_influx())
        .find(|i| i.config().api == InfluxApi::V1)
    else {
        return error(
            InfluxApi::V1,
            StatusCode::SERVICE_UNAVAILABLE,
            "no InfluxDB v1 output is configured to answer /query",
        );
    };
    read_your_writes(&st, out, &all).await;
    let cfg = out.config();
    let authenticated = st.auth.enabled();
    // Under fluxgate's own auth, `u`/`p` were fluxgate's: they stay here.
    let keep = |(k, _): &&(String, String)| !(authenticated && (k == "u" || k == "p"));
    let encode = |pairs: &[(String, String)]| {
        url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs.iter().filter(keep))
            .finish()
    };
    let mut url = match reqwest::Url::parse(out.base_url().trim_end_matches('/')) {
        Ok(u) => u,
        Err(_) => {
            return error(
                InfluxApi::V1,
                StatusCode::BAD_GATEWAY,
                "the InfluxDB output's url is not usable",
            )
        }
    };
    url.set_path(&format!("{}/query", url.path().trim_end_matches('/')));
    let query_string = encode(&url_pairs);
    url.set_query((!query_string.is_empty()).then_some(query_string.as_str()));
    let mut req = out.client().request(method, url);
    for name in [
        header::CONTENT_TYPE,
        header::ACCEPT,
        header::ACCEPT_ENCODING,
    ] {
        if let Some(v) = headers.get(&name) {
            req = req.header(name, v);
        }
    }
    if authenticated {
        if !cfg.username.is_empty() {
            req = req.basic_auth(&cfg.username, Some(&cfg.password));
        }
    } else if let Some(v) = headers.get(header::AUTHORIZATION) {
        req = req.header(header::AUTHORIZATION, v);
    }
    let body = if form {
        Bytes::from(encode(&body_pairs))
    } else {
        body
    };
    let upstream = crate::config::redact_url(out.base_url());
    let copied = [
        header::CONTENT_TYPE,
        header::CONTENT_ENCODING,
        header::HeaderName::from_static("x-influxdb-error"),
    ];
    proxied_answer(
        &st,
        InfluxApi::V1,
        "/query",
        &upstream,
        &copied,
        req.body(body).send().await,
    )
}

/// A proxied read's answer (`/query`, the v2 reads): the upstream's status, the `copied`
/// headers and its body streamed back as it arrives; an upstream that breaks off or does not
/// answer is logged (rate-limited, URL left out: its query string can hold credentials) and
/// a request it never answered gets a 502 in `api`'s error shape.
fn proxied_answer(
    st: &HttpState,
    api: InfluxApi,
    what: &str,
    upstream: &str,
    copied: &[header::HeaderName],
    sent: Result<reqwest::Response, reqwest::Error>,
) -> Response {
    match sent {
        Ok(resp) => {
            let status = resp.status();
            let copied: Vec<_> = copied
                .iter()
                .filter_map(|name| resp.headers().get(name).cloned().map(|v| (name.clone(), v)))
                .collect();
            let ctx = st.ctx.clone();
            let (what, upstream) = (what.to_owned(), upstream.to_owned());
            let stream = futures::TryStreamExt::map_err(resp.bytes_stream(), move |e| {
                let e = e.without_url();
                warn_limited!(
                    ctx.log_limit,
                    listener = ctx.name,
                    upstream = %upstream,
                    "{what}: the upstream's answer broke off: {}",
                    error_chain(&e)
                );
                e
            });
            let mut r = (status, Body::from_stream(stream)).into_response();
            for (name, value) in copied {
                r.headers_mut().insert(name, value);
            }
            r
        }
        Err(e) => {
            // reqwest's message names the URL, query string (u, p) included: leave it out.
            let why = error_chain(&e.without_url());
            warn_limited!(
                st.ctx.log_limit,
                listener = st.ctx.name,
                upstream = %upstream,
                "{what}: the upstream did not answer: {why}"
            );
            error(
                api,
                StatusCode::BAD_GATEWAY,
                &format!("upstream {upstream} did not answer: {why}"),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(body: &str, p: line_protocol::Precision) -> Result<String, String> {
        let mut out = Vec::new();
        for parsed in line_protocol::parse_lines(body).precision(p) {
            let parsed = parsed.map_err(|e| e.to_string())?;
            append_point(&parsed, p, 42, &mut out).map_err(|e| e.to_string())?;
        }
        Ok(String::from_utf8(out).unwrap())
    }

    #[test]
    fn lines_get_nanosecond_timestamps() {
        use line_protocol::Precision::*;
        assert_eq!(
            norm("m,t=a f=1 5", Seconds).unwrap(),
            "m,t=a f=1 5000000000\n"
        );
        assert_eq!(norm("m f=1 5", Nanoseconds).unwrap(), "m f=1 5\n");
        // aioinflux leaves a trailing space after a point without time.
        assert_eq!(norm("m f=True ", Nanoseconds).unwrap(), "m f=True 42\n");
        assert_eq!(
            norm("  m s=\"a b\" 7", Milliseconds).unwrap(),
            "m s=\"a b\" 7000000\n"
        );
        assert_eq!(norm("# comment\n\n", Nanoseconds).unwrap(), "");
    }

    #[test]
    fn errors_in_messagepack_are_a_one_entry_map() {
        assert_eq!(msgpack_error("no"), b"\x81\xa5error\xa2no");
        let long = "x".repeat(40);
        assert_eq!(&msgpack_error(&long)[..9], b"\x81\xa5error\xd9\x28");
    }

    #[test]
    fn a_newline_inside_a_string_value_is_content() {
        use line_protocol::Precision::*;
        assert_eq!(
            norm("m text=\"first\nsecond\" 5\nn v=2 6", Nanoseconds).unwrap(),
            "m text=\"first\nsecond\" 5\nn v=2 6\n"
        );
    }

    #[test]
    fn bad_lines_say_why_like_influxdb() {
        assert_eq!(
            norm("bad line", line_protocol::Precision::Nanoseconds).unwrap_err(),
            "unable to parse 'bad line': invalid field format"
        );
    }
}

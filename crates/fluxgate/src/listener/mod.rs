//! Listeners: sockets in, batches out.

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use prometheus::{IntCounter, IntGauge};
use tokio::{
    net::{TcpListener, TcpStream},
    sync::{watch, Semaphore},
};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{
    metrics::{Metrics, RateLimit},
    pipeline::Pipeline,
    tls::Conn,
    warn_limited,
};

mod auth;
mod flux;
pub(crate) mod graphite;
pub mod http;
mod influxql;
pub mod line_udp;
pub mod nats;
pub mod pickle;
pub mod plaintext;
pub mod statsd;
pub mod udp;

/// What every connection task of one listener shares.
#[derive(Debug)]
pub struct ListenerCtx {
    /// The `listener` label: `plaintext_tcp`, `plaintext_udp`, `pickle`, `http`, `statsd`,
    /// `line_udp`, `telemetry`.
    pub name: &'static str,
    pipeline: watch::Receiver<Arc<Pipeline>>,
    pub metrics: Metrics,
    pub received: IntCounter,
    pub connections: IntGauge,
    pub log_limit: RateLimit,
    /// Cancelled when the listener stops taking connections (shutdown, or a reload that
    /// replaced it).
    pub stop_accepting: CancellationToken,
    /// Cancelled when its connections must end (shutdown; an HTTP listener's on reload).
    pub cancel: CancellationToken,
    /// What all its connections together may hold in partial lines, frames and bodies
    /// (`max_buffered_bytes`): past it, a connection stops reading until there is room.
    pub buffered: crate::queue::Budget,
}

impl ListenerCtx {
    pub fn new(
        name: &'static str,
        pipeline: watch::Receiver<Arc<Pipeline>>,
        metrics: &Metrics,
        stop_accepting: CancellationToken,
        cancel: CancellationToken,
        max_buffered_bytes: usize,
    ) -> Arc<Self> {
        let log_interval = pipeline.borrow().config.log.rate_limit;
        Arc::new(Self {
            name,
            received: metrics.received.with_label_values(&[name]),
            connections: metrics.connections.with_label_values(&[name]),
            metrics: metrics.clone(),
            log_limit: RateLimit::new(log_interval),
            stop_accepting,
            cancel,
            buffered: crate::queue::Budget::new(usize::MAX, max_buffered_bytes, None),
            pipeline,
        })
    }

    /// The pipeline in force now (it changes on reload).
    pub fn pipeline(&self) -> Arc<Pipeline> {
        self.pipeline.borrow().clone()
    }

    pub(crate) fn reject(&self, reason: &str, n: u64) {
        self.metrics
            .rejected
            .with_label_values(&[self.name, reason])
            .inc_by(n);
    }
}

/// How a TCP listener treats its connections.
#[derive(Clone)]
pub struct TcpOptions {
    pub max_connections: usize,
    /// A connection that sends nothing for this long is closed (zero: never).
    pub idle_timeout: Duration,
    /// TLS on every connection (handshake within [`HANDSHAKE_TIMEOUT`]).
    pub tls: Option<tokio_rustls::TlsAcceptor>,
}

impl std::fmt::Debug for TcpOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpOptions")
            .field("max_connections", &self.max_connections)
            .field("idle_timeout", &self.idle_timeout)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

/// How long a client gets to complete a TLS handshake on a Graphite listener.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts connections until cancelled, at most `max_connections` at once: one more is
/// closed at once and counted as rejected (`max_connections`), so an overload degrades into
/// refused connections instead of unbounded tasks and buffers. With TLS, the handshake is
/// done in the connection's own task (under [`HANDSHAKE_TIMEOUT`]), so a slow client never
/// holds up the accept loop; a failed handshake is counted (`tls_handshake`).
pub async fn serve_tcp<F, Fut>(
    listener: Arc<TcpListener>,
    ctx: Arc<ListenerCtx>,
    opts: TcpOptions,
    tracker: TaskTracker,
    handle: F,
) where
    F: Fn(Conn, SocketAddr, Arc<ListenerCtx>, Duration) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let max_connections = opts.max_connections;
    let slots = Arc::new(Semaphore::new(max_connections));
    let handle = Arc::new(handle);
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = ctx.stop_accepting.cancelled() => return,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // EMFILE and friends: back off briefly instead of spinning.
                warn_limited!(ctx.log_limit, listener = ctx.name, "accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            ctx.reject("max_connections", 1);
            warn_limited!(
                ctx.log_limit,
                listener = ctx.name,
                %peer,
                "connection refused: max_connections ({max_connections}) reached"
            );
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let conn_ctx = ctx.clone();
        let tls = opts.tls.clone();
        let idle = opts.idle_timeout;
        let handle = handle.clone();
        tracker.spawn(async move {
            conn_ctx.connections.inc();
            if let Some(conn) = handshake(stream, peer, tls, &conn_ctx).await {
                handle(conn, peer, conn_ctx.clone(), idle).await;
            }
            conn_ctx.connections.dec();
            drop(permit);
        });
    }
}

/// The connection, with TLS set up on it when the listener has TLS; `None` (counted and
/// logged) when the handshake failed, timed out, or the listener stopped meanwhile.
pub(crate) async fn handshake(
    stream: TcpStream,
    peer: SocketAddr,
    tls: Option<tokio_rustls::TlsAcceptor>,
    ctx: &ListenerCtx,
) -> Option<Conn> {
    let Some(acceptor) = tls else {
        return Some(Conn::Plain(stream));
    };
    let done = tokio::select! {
        r = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)) => r,
        _ = ctx.cancel.cancelled() => return None,
    };
    match done {
        Ok(Ok(s)) => Some(Conn::Server(Box::new(s))),
        // Closed before saying anything: a port probe, not a failed client.
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => None,
        Ok(Err(e)) => {
            ctx.reject("tls_handshake", 1);
            warn_limited!(ctx.log_limit, listener = ctx.name, %peer, "TLS handshake failed: {e}");
            None
        }
        Err(_) => {
            ctx.reject("tls_handshake", 1);
            warn_limited!(ctx.log_limit, listener = ctx.name, %peer, "TLS handshake timed out");
            None
        }
    }
}

//! Listeners: sockets in, batches out.

use std::{future::Future, net::SocketAddr, sync::Arc};

use prometheus::{IntCounter, IntGauge};
use tokio::{
    net::{TcpListener, TcpStream},
    sync::{watch, Semaphore},
};
use tokio_util::sync::CancellationToken;

use crate::{
    metrics::{Metrics, RateLimit},
    pipeline::Pipeline,
    warn_limited,
};

pub(crate) mod graphite;
pub mod http;
pub mod pickle;
pub mod plaintext;

/// What every connection task of one listener shares.
#[derive(Debug)]
pub struct ListenerCtx {
    /// The `listener` label: `plaintext_tcp`, `plaintext_udp`, `pickle`, `http`.
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
}

impl ListenerCtx {
    pub fn new(
        name: &'static str,
        pipeline: watch::Receiver<Arc<Pipeline>>,
        metrics: &Metrics,
        stop_accepting: CancellationToken,
        cancel: CancellationToken,
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

/// Accepts connections until cancelled, at most `max_connections` at once: one more is
/// closed at once and counted as rejected (`max_connections`), so an overload degrades into
/// refused connections instead of unbounded tasks and buffers.
pub async fn serve_tcp<F, Fut>(
    listener: Arc<TcpListener>,
    ctx: Arc<ListenerCtx>,
    max_connections: usize,
    handle: F,
) where
    F: Fn(TcpStream, SocketAddr, Arc<ListenerCtx>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(max_connections));
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
        let fut = handle(stream, peer, ctx.clone());
        let conn_ctx = ctx.clone();
        tokio::spawn(async move {
            conn_ctx.connections.inc();
            fut.await;
            conn_ctx.connections.dec();
            drop(permit);
        });
    }
}

//! StatsD over UDP and TCP: what arrives is aggregated for one flush interval, then the
//! interval's series go into the pipeline as Graphite samples stamped with the flush time
//! (whole seconds).
//!
//! Both transports feed one aggregation state, as Etsy statsd's servers feed one: a counter
//! sent partly over UDP and partly over TCP is one series. Over TCP the stream is
//! newline-delimited (statsd's `servers/tcp`); a line is limited to `max_line_bytes`, and the
//! connections share the limits of the other TCP listeners (`max_connections`,
//! `idle_timeout`, `max_buffered_bytes`).
//!
//! Flushes fall on multiples of `flush_interval` of the wall clock, as statsd's fall on
//! multiples after its start second: senders in step with one are in step with the other.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use bytes::{Buf, BytesMut};
use graphite_plaintext::{LineSplitter, Timestamp};
use tokio::net::UdpSocket;

use super::{
    graphite::{GraphiteBatch, Read},
    ListenerCtx,
};
use crate::{
    statsd::{Aggregator, Rejected},
    tls::Conn,
};

/// Binds the UDP socket, asking for a receive buffer of `receive_buffer` bytes (0: the
/// system's default; the kernel caps it at `net.core.rmem_max`).
pub fn bind(addr: SocketAddr, receive_buffer: usize) -> std::io::Result<UdpSocket> {
    super::udp::bind("statsd", addr, receive_buffer)
}

/// What identifies the listener's sockets (`None`: neither `udp` nor `tcp` is set).
pub fn address_key(cfg: &crate::config::StatsdListener) -> Option<String> {
    match (&cfg.udp, &cfg.tcp) {
        (None, None) => None,
        (udp, tcp) => Some(format!(
            "udp={} tcp={}",
            udp.as_deref().unwrap_or("-"),
            tcp.as_deref().unwrap_or("-")
        )),
    }
}

/// The aggregation state every transport of one StatsD listener adds to.
pub type Shared = Arc<Mutex<Aggregator>>;

fn lock(shared: &Shared) -> std::sync::MutexGuard<'_, Aggregator> {
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

/// The time until the next multiple of `interval_ms` of the wall clock.
fn until_next_flush(interval_ms: u64) -> Duration {
    let interval = u128::from(interval_ms.max(1));
    let left = interval - now_ms() % interval;
    Duration::from_millis(left as u64)
}

/// Datagrams read in one wakeup before the aggregation state is let go for a flush or the
/// other transport.
const UDP_BURST: usize = 256;

/// Reads datagrams into the aggregation state. After each wakeup the socket is drained of
/// what it already holds (up to [`UDP_BURST`] datagrams), under one lock.
pub async fn udp(
    socket: Arc<UdpSocket>,
    ctx: Arc<ListenerCtx>,
    shared: Shared,
    max_datagram: usize,
) {
    let mut buf = vec![0u8; max_datagram + 1];
    let batch = GraphiteBatch::new(ctx.clone(), None);
    let mut reject = |r: Rejected| batch.reject(r.reason, &r.detail);
    loop {
        let first = tokio::select! {
            r = socket.recv_from(&mut buf) => r,
            _ = ctx.stop_accepting.cancelled() => return,
        };
        {
            let mut agg = lock(&shared);
            let mut next = first.map(|(n, _)| n);
            for read in 1..=UDP_BURST {
                match next {
                    Ok(n) => {
                        let data = if n > max_datagram {
                            reject(Rejected {
                            reason: "truncated",
                            detail: format!("datagram longer than max_datagram_bytes ({max_datagram}): its last line was cut"),
                        });
                            let whole =
                                memchr::memrchr(b'\n', &buf[..max_datagram]).map_or(0, |i| i + 1);
                            &buf[..whole]
                        } else {
                            &buf[..n]
                        };
                        agg.add_packet(data, &mut reject);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) => reject(Rejected {
                        reason: "read_error",
                        detail: format!("recv failed: {e}"),
                    }),
                }
                if read == UDP_BURST {
                    // The next datagram waits in the socket for the next wakeup.
                    break;
                }
                next = socket.try_recv_from(&mut buf).map(|(n, _)| n);
            }
        }
    }
}

/// One TCP connection: newline-delimited StatsD lines into the aggregation state. A line
/// longer than `max_line_bytes` is skipped up to its newline and counted; a final line
/// without a newline counts when the sender closes.
pub async fn connection(
    mut stream: Conn,
    peer: SocketAddr,
    ctx: Arc<ListenerCtx>,
    idle: Duration,
    shared: Shared,
    max_line_bytes: usize,
) {
    const READ_BYTES: usize = 64 * 1024;
    let mut buf = BytesMut::new();
    let mut splitter = LineSplitter::new(max_line_bytes);
    let mut batch = GraphiteBatch::new(ctx.clone(), Some(peer));
    loop {
        let read = batch
            .read_more(&mut stream, &mut buf, READ_BYTES, idle)
            .await;
        let consumed = {
            let reject_batch = &batch;
            let mut reject = |r: Rejected| reject_batch.reject(r.reason, &r.detail);
            let mut agg = lock(&shared);
            let mut lines = splitter.lines(&buf, read == Read::Eof);
            for line in lines.by_ref() {
                match line {
                    Ok(line) => agg.add_packet(line.bytes, &mut reject),
                    Err(e) => reject_batch.reject(e.reason(), &e),
                }
            }
            lines.consumed()
        };
        buf.advance(consumed);
        batch.settle(&mut buf);
        match read {
            Read::More => {}
            Read::Eof => return,
            Read::Stopped | Read::Idle => {
                if !buf.is_empty() || splitter.is_discarding() {
                    let why = if read == Read::Idle {
                        "the sender went quiet"
                    } else {
                        "the gateway stopped"
                    };
                    batch.reject(
                        "truncated",
                        &format_args!(
                            "{why} in the middle of a line ({} bytes discarded)",
                            buf.len()
                        ),
                    );
                }
                return;
            }
        }
    }
}

/// Flushes the aggregation state into the pipeline at every multiple of `interval_ms`.
pub async fn flusher(ctx: Arc<ListenerCtx>, shared: Shared, interval_ms: u64) {
    let mut batch = GraphiteBatch::new(ctx.clone(), None);
    loop {
        let next = tokio::time::Instant::now() + until_next_flush(interval_ms);
        tokio::select! {
            _ = tokio::time::sleep_until(next) => {}
            _ = ctx.stop_accepting.cancelled() => return,
        }
        let ts = (now_ms() as f64 / 1000.0).round();
        let mut points = Vec::new();
        lock(&shared).flush(&mut |name, value| points.push((name.to_string(), value)));
        batch.begin();
        let pipeline = ctx.pipeline();
        let mut translator = pipeline.templates.translator();
        for (name, value) in &points {
            batch.add(
                &pipeline,
                &mut translator,
                name,
                *value,
                Timestamp::Seconds(ts),
            );
            if batch.is_full() {
                drop(translator);
                batch.flush(&pipeline).await;
                translator = pipeline.templates.translator();
            }
        }
        drop(translator);
        batch.flush(&pipeline).await;
    }
}

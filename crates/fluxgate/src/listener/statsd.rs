//! StatsD over UDP: packets are aggregated for one flush interval, then the interval's series
//! go into the pipeline as Graphite samples stamped with the flush time (whole seconds).
//!
//! Flushes fall on multiples of `flush_interval` of the wall clock, as statsd's fall on
//! multiples after its start second: senders in step with one are in step with the other.

use std::{
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use graphite_plaintext::Timestamp;
use tokio::net::UdpSocket;

use super::{graphite::GraphiteBatch, ListenerCtx};
use crate::statsd::{Aggregator, Settings};

/// Binds the UDP socket, asking for a receive buffer of `receive_buffer` bytes (0: the
/// system's default; the kernel caps it at `net.core.rmem_max`).
pub fn bind(addr: std::net::SocketAddr, receive_buffer: usize) -> std::io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if receive_buffer > 0 {
        socket.set_recv_buffer_size(receive_buffer)?;
    }
    socket.bind(&addr.into())?;
    socket.set_nonblocking(true)?;
    UdpSocket::from_std(socket.into())
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

pub async fn udp(
    socket: Arc<UdpSocket>,
    ctx: Arc<ListenerCtx>,
    settings: Settings,
    max_datagram: usize,
) {
    let interval_ms = settings.flush_interval_ms;
    let mut agg = Aggregator::new(settings);
    let mut buf = vec![0u8; max_datagram + 1];
    let mut batch = GraphiteBatch::new(ctx.clone(), None);
    let mut next = tokio::time::Instant::now() + until_next_flush(interval_ms);
    loop {
        tokio::select! {
            r = socket.recv_from(&mut buf) => match r {
                Ok((n, _)) => {
                    let data = if n > max_datagram {
                        batch.reject(
                            "truncated",
                            &format_args!("datagram longer than max_datagram_bytes ({max_datagram}): its last line was cut"),
                        );
                        let whole = memchr::memrchr(b'\n', &buf[..max_datagram]).map_or(0, |i| i + 1);
                        &buf[..whole]
                    } else {
                        &buf[..n]
                    };
                    agg.add_packet(data, &mut |r| batch.reject(r.reason, &r.detail));
                }
                Err(e) => batch.reject("read_error", &format_args!("recv failed: {e}")),
            },
            _ = tokio::time::sleep_until(next) => {
                let ts = (now_ms() as f64 / 1000.0).round();
                batch.begin();
                let pipeline = ctx.pipeline();
                let mut translator = pipeline.templates.translator();
                let mut points = Vec::new();
                agg.flush(&mut |name, value| points.push((name.to_string(), value)));
                for (name, value) in &points {
                    batch.add(&pipeline, &mut translator, name, *value, Timestamp::Seconds(ts));
                    if batch.is_full() {
                        batch.flush(&pipeline).await;
                    }
                }
                drop(translator);
                batch.flush(&pipeline).await;
                next = tokio::time::Instant::now() + until_next_flush(interval_ms);
            }
            _ = ctx.stop_accepting.cancelled() => return,
        }
    }
}

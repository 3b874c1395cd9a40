//! Graphite pickle over TCP: 4-byte big-endian length, then a pickle of
//! `[(path, (timestamp, value)), ...]`.
//!
//! Decoding is data-only (see `graphite-pickle`): a pickle that asks for code to run is an
//! error, never executed. A bad item is skipped and counted; a malformed frame is counted and
//! its connection closed, since what follows a broken frame cannot be trusted to be framed.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use bytes::{Buf, BytesMut};
use graphite_pickle::{Decoder, FrameSplitter};
use graphite_plaintext::Timestamp;

use super::{
    graphite::{GraphiteBatch, Read},
    ListenerCtx,
};
use crate::tls::Conn;

/// One connection. A path longer than `max_line_bytes` is refused like a plaintext line
/// that long; a frame whose points expand past a batch's size is handed on in parts, so
/// memory follows the queues' byte budgets, not what the pickle multiplies.
pub async fn connection(
    mut stream: Conn,
    peer: SocketAddr,
    ctx: Arc<ListenerCtx>,
    idle: Duration,
    max_frame_bytes: usize,
    max_line_bytes: usize,
) {
    let splitter = FrameSplitter::new(max_frame_bytes);
    let mut decoder = Decoder::new();
    // Allocated as reads need it, against the listener's byte budget.
    let mut buf = BytesMut::new();
    let mut batch = GraphiteBatch::new(ctx.clone(), Some(peer));
    loop {
        // A frame whose length is known takes room for all of it at once: a connection that
        // holds room for its whole frame never needs more, so the ones holding room finish
        // (or end) and give it back, whatever the others wait for.
        if buf.len() >= 4 {
            let declared = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
            let whole = declared.min(max_frame_bytes) + 4;
            if let Some(end) = batch.hold(whole.max(buf.len()), buf.len()).await {
                if end == Read::Eof {
                    return;
                }
                stopped_mid_frame(&batch, buf.len());
                return;
            }
        }
        let read = batch
            .read_more(&mut stream, &mut buf, 64 * 1024, idle)
            .await;
        batch.begin();
        let pipeline = ctx.pipeline();
        let mut translator = pipeline.templates.translator();
        let mut frames = splitter.split(&buf);
        let mut fatal = false;
        for frame in frames.by_ref() {
            let frame = match frame {
                Ok(f) => f,
                Err(e) => {
                    batch.reject("frame_too_large", &e);
                    fatal = true;
                    break;
                }
            };
            match decoder.decode(frame) {
                Ok(decoded) => {
                    for skipped in &decoded.skipped {
                        batch.reject("bad_item", skipped);
                    }
                    for p in &decoded.points {
                        if p.path.len() > max_line_bytes {
                            batch.reject(
                                "line_too_long",
                                &format_args!(
                                    "path of {} bytes (max_line_bytes is {max_line_bytes})",
                                    p.path.len()
                                ),
                            );
                            continue;
                        }
                        let ts = graphite_timestamp(p.timestamp);
                        batch.add(&pipeline, &mut translator, &p.path, p.value, ts);
                        if batch.is_full() {
                            batch.flush(&pipeline).await;
                        }
                    }
                }
                Err(e) => {
                    let reason = if e.is_forbidden() {
                        "forbidden_opcode"
                    } else {
                        "bad_frame"
                    };
                    batch.reject(reason, &e);
                    fatal = true;
                    break;
                }
            }
        }
        let consumed = frames.consumed();
        let incomplete = !frames.remainder().is_empty();
        drop(translator);
        buf.advance(consumed);
        // The read buffer is let go before waiting for room: a connection held back by a
        // full pipeline keeps only what it parsed.
        batch.settle(&mut buf);
        batch.flush(&pipeline).await;
        if fatal {
            return;
        }
        match read {
            Read::More => {}
            Read::Eof if incomplete => {
                batch.reject(
                    "truncated_frame",
                    &format_args!("connection closed inside a frame ({} bytes)", buf.len()),
                );
                return;
            }
            Read::Stopped | Read::Idle if incomplete => {
                stopped_mid_frame(&batch, buf.len());
                return;
            }
            Read::Eof | Read::Stopped | Read::Idle => return,
        }
    }
}

/// Counts a frame cut short by the gateway stopping (or giving up on a quiet sender).
fn stopped_mid_frame(batch: &GraphiteBatch, buffered: usize) {
    batch.reject(
        "truncated",
        &format_args!("the gateway stopped in the middle of a frame ({buffered} bytes discarded)"),
    );
}

/// carbon treats `-1` (by its integer part) as "now", in pickles as in plaintext.
fn graphite_timestamp(t: f64) -> Timestamp {
    if t.trunc() == -1.0 {
        Timestamp::Now
    } else {
        Timestamp::Seconds(t)
    }
}

//! Graphite plaintext (`path value timestamp\n`) over TCP and UDP.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use bytes::{Buf, BytesMut};
use graphite_plaintext::LineSplitter;
use tokio::net::UdpSocket;

use super::{
    graphite::{GraphiteBatch, Read},
    ListenerCtx,
};
use crate::{pipeline::Pipeline, tls::Conn, translate::graphite::Translator};

/// Reads are parsed whole, so this is also the largest batch one read produces.
const READ_BYTES: usize = 64 * 1024;

/// One TCP connection: read, split into lines, translate, hand on; repeat. While the pipeline
/// is full `flush` waits, nothing is read, and TCP pushes back on the sender.
pub async fn connection(
    mut stream: Conn,
    peer: SocketAddr,
    ctx: Arc<ListenerCtx>,
    idle: Duration,
    max_line_bytes: usize,
) {
    // Allocated as reads need it, against the listener's byte budget.
    let mut buf = BytesMut::new();
    let mut splitter = LineSplitter::new(max_line_bytes);
    let mut batch = GraphiteBatch::new(ctx.clone(), Some(peer));
    loop {
        let read = batch
            .read_more(&mut stream, &mut buf, READ_BYTES, idle)
            .await;
        batch.begin();
        let pipeline = ctx.pipeline();
        let mut translator = pipeline.templates.translator();
        let mut lines = splitter.lines(&buf, read == Read::Eof);
        for line in lines.by_ref() {
            batch.add_line(&pipeline, &mut translator, line);
        }
        let consumed = lines.consumed();
        drop(translator);
        buf.advance(consumed);
        batch.flush(&pipeline).await;
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

/// UDP: every datagram holds whole lines; a final line without `\n` counts (go-carbon). A
/// datagram longer than `max_datagram` arrives cut short: its whole lines count, and its cut
/// last line is discarded and counted (`truncated`).
pub async fn udp(
    socket: Arc<UdpSocket>,
    ctx: Arc<ListenerCtx>,
    max_datagram: usize,
    max_line: usize,
) {
    // One byte more than allowed, so a longer datagram shows as one that filled the buffer.
    let mut buf = vec![0u8; max_datagram + 1];
    let mut splitter = LineSplitter::new(max_line);
    let mut batch = GraphiteBatch::new(ctx.clone(), None);
    loop {
        let (n, _peer) = tokio::select! {
            r = socket.recv_from(&mut buf) => match r {
                Ok(r) => r,
                Err(e) => {
                    batch.reject("read_error", &format_args!("recv failed: {e}"));
                    continue;
                }
            },
            _ = ctx.stop_accepting.cancelled() => return,
        };
        batch.begin();
        let pipeline = ctx.pipeline();
        let mut translator = pipeline.templates.translator();
        // Datagrams keep coming while we wait: what the socket already holds joins this
        // batch before it is handed on, so a burst is one batch, not one per datagram.
        let mut n = n;
        loop {
            datagram(
                &mut splitter,
                &mut batch,
                &pipeline,
                &mut translator,
                &buf[..n],
                max_datagram,
            );
            if batch.len() >= UDP_BATCH_POINTS {
                break;
            }
            match socket.try_recv_from(&mut buf) {
                Ok((more, _)) => n = more,
                Err(_) => break,
            }
        }
        drop(translator);
        batch.flush(&pipeline).await;
    }
}

/// Points gathered from a burst of datagrams before the batch is handed on.
const UDP_BATCH_POINTS: usize = 5000;

fn datagram(
    splitter: &mut LineSplitter,
    batch: &mut GraphiteBatch,
    pipeline: &Pipeline,
    tr: &mut Translator<'_>,
    data: &[u8],
    max_datagram: usize,
) {
    splitter.reset();
    let data = if data.len() > max_datagram {
        // Cut by the kernel: keep the whole lines, refuse the cut one.
        let whole = memchr::memrchr(b'\n', &data[..max_datagram]).map_or(0, |i| i + 1);
        batch.reject(
            "truncated",
            &format_args!(
                "datagram longer than max_datagram_bytes ({max_datagram}): its last line was cut"
            ),
        );
        &data[..whole]
    } else {
        data
    };
    for line in splitter.lines(data, true) {
        batch.add_line(pipeline, tr, line);
    }
}

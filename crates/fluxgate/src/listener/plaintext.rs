//! Graphite plaintext (`path value timestamp\n`) over TCP and UDP.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use bytes::{Buf, BytesMut};
use graphite_plaintext::LineSplitter;
use tokio::net::UdpSocket;

use super::{
    graphite::{GraphiteBatch, Read},
    ListenerCtx,
};
use crate::{
    pipeline::{LpThrough, Passthrough, Pipeline},
    tls::Conn,
    translate::graphite::Translator,
};

/// Reads are parsed whole, so this is also the largest batch one read produces.
const READ_BYTES: usize = 64 * 1024;

/// Up to this many open connections each read [`READ_BYTES`]; beyond, reads shrink in
/// proportion (to at least [`MIN_READ_BYTES`]). A connection held back by a full pipeline
/// holds what it last read and parsed until there is room, so what all of them hold together
/// stays near `READ_BYTES * FULL_READ_CONNECTIONS` however many there are; the rest waits in
/// the senders' sockets, where TCP pushes back.
const FULL_READ_CONNECTIONS: usize = 64;
const MIN_READ_BYTES: usize = 8 * 1024;

/// How much one read takes with `connections` open.
fn read_bytes(connections: i64) -> usize {
    let connections = usize::try_from(connections).unwrap_or(0).max(1);
    (READ_BYTES * FULL_READ_CONNECTIONS / connections).clamp(MIN_READ_BYTES, READ_BYTES)
}

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
            .read_more(
                &mut stream,
                &mut buf,
                read_bytes(ctx.connections.get()),
                idle,
            )
            .await;
        batch.begin();
        let pipeline = ctx.pipeline();
        let mut translator = pipeline.templates.translator();
        let eof = read == Read::Eof;
        let consumed = match pipeline.passthrough() {
            Some(pass) => match whole_run(&batch, &pass, &buf, &mut splitter, eof) {
                Run::Whole(used, count) => {
                    // The read is one run of lines that go on as they are: handed on as
                    // this piece of the read buffer.
                    let lines = buf.split_to(used).freeze();
                    batch.add_plain_shared(&pipeline, lines, count);
                    0
                }
                Run::First(first) => add_passing(
                    &mut batch,
                    &pipeline,
                    &mut translator,
                    (&pass, first),
                    &buf,
                    &mut splitter,
                    eof,
                ),
            },
            None => match pipeline.lp_through() {
                Some(lp) => add_translating(
                    &mut batch,
                    &pipeline,
                    &mut translator,
                    &lp,
                    &buf,
                    &mut splitter,
                    eof,
                ),
                None => {
                    let mut lines = splitter.lines(&buf, eof);
                    for line in lines.by_ref() {
                        batch.add_line(&pipeline, &mut translator, line);
                    }
                    lines.consumed()
                }
            },
        };
        drop(translator);
        buf.advance(consumed);
        // The read buffer is let go before waiting for room: a connection held back by a
        // full pipeline keeps only what it parsed.
        batch.settle(&mut buf);
        batch.flush(&pipeline).await;
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

/// The run of lines at the start of a read that go on as they are (bytes, lines).
enum Run {
    /// All the read holds: what is left is the start of a line, and the batch is empty.
    /// The splitter counted the lines as taken.
    Whole(usize, usize),
    /// Only the first run; the rest of the read still to be looked at.
    First(Option<(usize, usize)>),
}

fn whole_run(
    batch: &GraphiteBatch,
    pass: &Passthrough<'_>,
    input: &[u8],
    splitter: &mut LineSplitter,
    eof: bool,
) -> Run {
    if splitter.is_discarding() {
        return Run::First(None);
    }
    let max_line = splitter.max_line_bytes();
    let (used, count) = pass.take_run(input, max_line);
    let rest = &input[used..];
    // The rest must be the start of a line that the splitter would wait on.
    let waits = rest.len() <= max_line && memchr::memchr(b'\n', rest).is_none();
    if count == 0 || batch.len() > 0 || !waits || (eof && !rest.is_empty()) {
        return Run::First(Some((used, count)));
    }
    splitter.skip_lines(count as u64);
    Run::Whole(used, count)
}

/// The lines of `input` when a [`Passthrough`] applies: runs of lines it accepts are
/// copied on as one piece of the input, without the splitter; every other line takes the
/// splitter and the parsing way, in order. Returns how much of `input` was used.
fn add_passing(
    batch: &mut GraphiteBatch,
    pipeline: &Pipeline,
    tr: &mut Translator<'_>,
    (pass, mut first): (&Passthrough<'_>, Option<(usize, usize)>),
    input: &[u8],
    splitter: &mut LineSplitter,
    eof: bool,
) -> usize {
    let run = |batch: &mut GraphiteBatch, _: &mut Translator<'_>, rest: &[u8], max_line| {
        let (used, count) = first
            .take()
            .unwrap_or_else(|| pass.take_run(rest, max_line));
        if count > 0 {
            batch.add_plain_run(pipeline, &rest[..used], count);
        }
        (used, count)
    };
    add_runs(batch, pipeline, tr, input, splitter, eof, run)
}

/// The lines of `input` when an [`LpThrough`] applies: runs of lines it takes are
/// translated by their name's cached series text, without the splitter; every other line
/// takes the splitter and the parsing way, in order. Returns how much of `input` was used.
fn add_translating(
    batch: &mut GraphiteBatch,
    pipeline: &Pipeline,
    tr: &mut Translator<'_>,
    lp: &LpThrough<'_>,
    input: &[u8],
    splitter: &mut LineSplitter,
    eof: bool,
) -> usize {
    let run = |batch: &mut GraphiteBatch, tr: &mut Translator<'_>, rest: &[u8], max_line| {
        batch.add_lp_run(pipeline, |out| lp.take_run(rest, max_line, tr, out))
    };
    add_runs(batch, pipeline, tr, input, splitter, eof, run)
}

/// The lines of `input`, runs of them taken by `run` and every other line by the splitter
/// and the parsing way, in order. `run` gets the input from where it stands and the line
/// limit, adds what it takes to the batch, and says how many bytes and lines that was; it is
/// not asked while the splitter discards an over-long line. Returns how much of `input` was
/// used.
fn add_runs(
    batch: &mut GraphiteBatch,
    pipeline: &Pipeline,
    tr: &mut Translator<'_>,
    input: &[u8],
    splitter: &mut LineSplitter,
    eof: bool,
    mut run: impl FnMut(&mut GraphiteBatch, &mut Translator<'_>, &[u8], usize) -> (usize, usize),
) -> usize {
    let max_line = splitter.max_line_bytes();
    let mut pos = 0;
    loop {
        if !splitter.is_discarding() {
            let (used, count) = run(batch, tr, &input[pos..], max_line);
            if count > 0 {
                splitter.skip_lines(count as u64);
                pos += used;
            }
        }
        let mut lines = splitter.lines(&input[pos..], eof);
        let line = lines.next();
        pos += lines.consumed();
        match line {
            Some(line) => batch.add_line(pipeline, tr, line),
            None => return pos,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_shrink_with_many_connections_and_hold_about_the_same_together() {
        assert_eq!(read_bytes(0), READ_BYTES);
        assert_eq!(read_bytes(64), READ_BYTES);
        assert_eq!(read_bytes(128), READ_BYTES / 2);
        assert_eq!(read_bytes(512), MIN_READ_BYTES);
        assert_eq!(read_bytes(100_000), MIN_READ_BYTES);
        for n in [65i64, 100, 200, 500] {
            let together = read_bytes(n) * n as usize;
            assert!(
                together <= READ_BYTES * FULL_READ_CONNECTIONS,
                "{n}: {together}"
            );
        }
    }
}

//! Graphite samples to batches of line protocol, shared by the plaintext (TCP and UDP) and
//! pickle listeners.
//!
//! A connection task owns one [`GraphiteBatch`]: everything parsed out of one socket read is
//! translated straight into the pipeline's per-output buffers (no per-metric allocation),
//! then handed on as one batch. One clock reading per read stands in for "now".

use std::{
    net::SocketAddr,
    sync::Arc,
    time::{SystemTime, UNIX_EPOCH},
};

use graphite_plaintext::Timestamp;

use crate::{
    listener::ListenerCtx,
    output::influxdb::Target,
    pipeline::{Batch, Pipeline, Wait},
    translate::graphite::Translator,
    warn_limited,
};

/// InfluxDB's representable range (models.MinNanoTime / MaxNanoTime).
const MIN_NANOS: i64 = i64::MIN + 2;
const MAX_NANOS: i64 = i64::MAX - 1;

/// How a read ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Read {
    /// Data arrived; more may follow.
    More,
    /// The peer closed (or the read failed): what is buffered is all there is.
    Eof,
    /// The listener is stopping: buffered whole lines count, a cut-off tail does not.
    Stopped,
    /// The peer sent nothing for `idle_timeout` (counted): handled as [`Read::Stopped`].
    Idle,
}

/// A batch this large is handed on in the middle of a read: a pickle frame can name one
/// memoized path many times, so what a read turns into is not bounded by the read's size.
const FLUSH_BYTES: usize = 1 << 20;

/// How long a connection waits for room in its listener's `max_buffered_bytes` before it is
/// closed (counted as `buffer_budget`).
const BUFFER_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// At a stop, how much a connection still reads of what its socket holds.
const STOP_DRAIN_BYTES: usize = 4 << 20;

/// A parsed buffer holding at most this much (a line or frame begun) is moved into one of
/// its size while the connection waits for more.
const SETTLED_TAIL_BYTES: usize = 4096;

#[derive(Debug)]
pub(crate) struct GraphiteBatch {
    ctx: Arc<ListenerCtx>,
    /// Room in the listener's byte budget for this connection's read buffer.
    held: crate::queue::Permit,
    peer: Option<SocketAddr>,
    batch: Batch,
    now: f64,
}

impl GraphiteBatch {
    pub(crate) fn new(ctx: Arc<ListenerCtx>, peer: Option<SocketAddr>) -> Self {
        Self {
            held: crate::queue::Permit::default(),
            batch: Batch::new(ctx.name),
            ctx,
            peer,
            now: now_seconds(),
        }
    }

    /// Reads what the peer sent next into `buf` (room for `chunk` more bytes first).
    ///
    /// When the listener stops, what the socket already holds is still read (up to
    /// [`STOP_DRAIN_BYTES`]): the sender wrote it before the connection closed, and a
    /// close with unread data would reset the connection. The caller then parses only whole
    /// lines or frames: a tail cut by the stop is not the sender's last line.
    ///
    /// A peer that sends nothing for `idle` (zero: no limit) is given up on: counted as
    /// `idle_timeout` and answered [`Read::Idle`]. The clock runs only while waiting for
    /// the peer, never while the connection waits for room in the pipeline.
    pub(crate) async fn read_more(
        &mut self,
        stream: &mut crate::tls::Conn,
        buf: &mut bytes::BytesMut,
        chunk: usize,
        idle: std::time::Duration,
    ) -> Read {
        use tokio::io::AsyncReadExt;
        // Within room already held (a whole pickle frame's), read no more than it covers.
        let chunk = match self.held.bytes().checked_sub(buf.len()) {
            Some(room) if room > 0 => chunk.min(room),
            _ => chunk,
        };
        let idle_timer = || async {
            if idle.is_zero() {
                std::future::pending::<()>().await
            } else {
                tokio::time::sleep(idle).await
            }
        };
        // Data first, then a buffer for it: a connection that waits for its sender holds no
        // read buffer (with many connections, most of them wait at any moment).
        if let Some(plain) = stream.plain() {
            tokio::select! {
                r = plain.readable() => {
                    if let Err(e) = r {
                        self.reject("read_error", &format_args!("read failed: {e}"));
                        return Read::Eof;
                    }
                }
                _ = idle_timer() => {
                    self.reject(
                        "idle_timeout",
                        &format_args!("nothing received for {idle:?}: closing the connection"),
                    );
                    return Read::Idle;
                }
                // Stopping: the drain below reads what is there.
                _ = self.ctx.cancel.cancelled() => {}
            }
        }
        if let Some(end) = self.hold(buf.len() + chunk, buf.len()).await {
            return end;
        }
        buf.reserve(chunk);
        let read = tokio::select! {
            r = stream.read_buf(buf) => r,
            _ = idle_timer() => {
                self.reject(
                    "idle_timeout",
                    &format_args!("nothing received for {idle:?}: closing the connection"),
                );
                return Read::Idle;
            }
            _ = self.ctx.cancel.cancelled() => {
                let mut drained = 0;
                while drained < STOP_DRAIN_BYTES {
                    buf.reserve(chunk);
                    match stream.try_read_buf(buf) {
                        Ok(0) => return Read::Eof,
                        Ok(n) => drained += n,
                        Err(_) => break,
                    }
                }
                return Read::Stopped;
            }
        };
        match read {
            Ok(0) => Read::Eof,
            Ok(_) => Read::More,
            Err(e) => {
                self.reject("read_error", &format_args!("read failed: {e}"));
                Read::Eof
            }
        }
    }

    /// Takes room in the listener's byte budget for a buffer of `size` bytes, waiting while
    /// it is spent (the connection then reads nothing: its sender is pushed back). While it
    /// waits it keeps only the room its `in_use` buffered bytes need, so connections that all
    /// wait for more cannot hold the budget from each other. `Some` ends the connection: no
    /// room came within [`BUFFER_WAIT`], or the listener stopped.
    pub(crate) async fn hold(&mut self, size: usize, in_use: usize) -> Option<Read> {
        use crate::queue::Acquire;
        if size <= self.held.bytes() {
            return None;
        }
        let deadline = tokio::time::Instant::now() + BUFFER_WAIT;
        loop {
            let extra = size.saturating_sub(self.held.bytes());
            let waiter = self.ctx.buffered.waiter();
            let room = waiter.register();
            match self.ctx.buffered.try_acquire(0, extra) {
                Acquire::Granted(p) => {
                    self.held.merge(p);
                    return None;
                }
                Acquire::Closed => return Some(Read::Stopped),
                Acquire::Full => {
                    let unused = self.held.bytes().saturating_sub(in_use);
                    if unused > 0 {
                        drop(self.held.split(0, unused));
                    }
                }
            }
            tokio::select! {
                _ = room => {}
                _ = tokio::time::sleep_until(deadline) => {
                    self.reject(
                        "buffer_budget",
                        &format_args!("no room in max_buffered_bytes for {BUFFER_WAIT:?}: closing the connection"),
                    );
                    return Some(Read::Eof);
                }
                _ = self.ctx.cancel.cancelled() => return Some(Read::Stopped),
            }
        }
    }

    /// After a read was parsed: the buffer is let go, with its room in the budget, and what
    /// it still holds (the start of a line or frame, when small) moves to one of its size, so
    /// waiting connections hold next to nothing.
    pub(crate) fn settle(&mut self, buf: &mut bytes::BytesMut) {
        if buf.is_empty() && buf.capacity() > 0 {
            *buf = bytes::BytesMut::new();
            self.held = crate::queue::Permit::default();
        } else if buf.len() <= SETTLED_TAIL_BYTES && buf.capacity() > SETTLED_TAIL_BYTES {
            *buf = bytes::BytesMut::from(&buf[..]);
            let unused = self.held.bytes().saturating_sub(buf.len());
            drop(self.held.split(0, unused));
        }
    }

    /// Starts a new read: takes one clock reading for the samples that say "now".
    pub(crate) fn begin(&mut self) {
        self.now = now_seconds();
    }

    /// Counts and (rate-limited) logs a rejected line or item.
    pub(crate) fn reject(&self, reason: &str, detail: &dyn std::fmt::Display) {
        self.ctx
            .metrics
            .rejected
            .with_label_values(&[self.ctx.name, reason])
            .inc();
        match self.peer {
            Some(peer) => warn_limited!(
                self.ctx.log_limit,
                listener = self.ctx.name,
                %peer,
                reason,
                "rejected: {detail}"
            ),
            None => warn_limited!(
                self.ctx.log_limit,
                listener = self.ctx.name,
                reason,
                "rejected: {detail}"
            ),
        }
    }

    /// Translates one sample into the batch; a sample that cannot be stored is counted.
    pub(crate) fn add(
        &mut self,
        pipeline: &Pipeline,
        tr: &mut Translator<'_>,
        path: &str,
        value: f64,
        ts: Timestamp,
    ) {
        self.add_as_sent(pipeline, tr, path, value, ts, None);
    }

    /// [`GraphiteBatch::add`] for a sample parsed from the plaintext line `as_sent`, which is
    /// spelled canonically ([`graphite_plaintext::is_canonical`]).
    fn add_as_sent(
        &mut self,
        pipeline: &Pipeline,
        tr: &mut Translator<'_>,
        path: &str,
        value: f64,
        ts: Timestamp,
        as_sent: Option<&[u8]>,
    ) {
        let Some(ns) = to_nanos(ts.or_now(self.now)) else {
            return self.reject(
                "timestamp_out_of_range",
                &format_args!("{path}: timestamp out of range"),
            );
        };
        if let Err(e) = self
            .batch
            .add_graphite_as_sent(pipeline, tr, path, value, ns, as_sent)
        {
            self.reject(e.reason(), &format_args!("{path}: {e}"));
        }
    }

    /// One result of the plaintext line splitter: blank lines are skipped, bad ones counted.
    pub(crate) fn add_line(
        &mut self,
        pipeline: &Pipeline,
        tr: &mut Translator<'_>,
        line: Result<graphite_plaintext::Line<'_>, graphite_plaintext::Error>,
    ) {
        match line {
            Ok(line) if line.is_blank() => {}
            Ok(line) => match line.parse_spelled() {
                Ok((s, spelled)) => {
                    let as_sent = spelled.then_some(line.bytes);
                    self.add_as_sent(pipeline, tr, s.path, s.value, s.timestamp, as_sent)
                }
                Err(e) => self.reject(e.reason(), &e),
            },
            Err(e) => self.reject(e.reason(), &e),
        }
    }

    /// Canonical lines that go on as they came ([`crate::pipeline::Batch::add_plain_run`]).
    pub(crate) fn add_plain_run(&mut self, pipeline: &Pipeline, lines: &[u8], count: usize) {
        self.batch.add_plain_run(pipeline, lines, count);
    }

    /// [`crate::pipeline::Batch::add_plain_shared`]: lines handed on without a copy.
    pub(crate) fn add_plain_shared(
        &mut self,
        pipeline: &Pipeline,
        lines: bytes::Bytes,
        count: usize,
    ) {
        self.batch.add_plain_shared(pipeline, lines, count);
    }

    /// [`crate::pipeline::Batch::add_lp_run`]: lines translated by their cached series text.
    pub(crate) fn add_lp_run(
        &mut self,
        pipeline: &Pipeline,
        write: impl FnOnce(&mut Vec<u8>) -> (usize, usize),
    ) -> (usize, usize) {
        self.batch.add_lp_run(pipeline, write)
    }

    /// Points translated and not yet flushed.
    pub(crate) fn len(&self) -> usize {
        self.batch.len()
    }

    /// True when the batch holds enough to be handed on before the read is finished.
    pub(crate) fn is_full(&self) -> bool {
        self.batch.bytes() >= FLUSH_BYTES
    }

    /// Hands what was translated so far to the pipeline (awaiting room: backpressure).
    pub(crate) async fn flush(&mut self, pipeline: &Pipeline) {
        let points = self.batch.len();
        if points == 0 {
            return;
        }
        self.ctx.received.inc_by(points as u64);
        self.batch
            .submit(&self.ctx, pipeline, &Target::Default, Wait::Partial)
            .await;
    }
}

fn now_seconds() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Seconds to nanoseconds as InfluxDB's graphite service converts them:
/// `time.Unix(int64(t), int64((t - floor(t)) * 1e9))`.
pub(crate) fn to_nanos(t: f64) -> Option<i64> {
    if !t.is_finite() || t.abs() > 9.3e9 {
        return None;
    }
    // Whole seconds (nearly every sample): the same result without the libm calls.
    let whole = t as i64;
    if whole as f64 == t {
        let ns = whole.checked_mul(1_000_000_000)?;
        return (MIN_NANOS..=MAX_NANOS).contains(&ns).then_some(ns);
    }
    let secs = t.trunc() as i64;
    let frac = ((t - t.floor()) * 1e9) as i64;
    let ns = secs.checked_mul(1_000_000_000)?.checked_add(frac)?;
    (MIN_NANOS..=MAX_NANOS).contains(&ns).then_some(ns)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_convert_like_influxdb() {
        assert_eq!(to_nanos(1_700_000_000.0), Some(1_700_000_000_000_000_000));
        assert_eq!(to_nanos(1.5), Some(1_500_000_000));
        assert_eq!(to_nanos(0.0), Some(0));
        assert_eq!(to_nanos(1e12), None);
        assert_eq!(to_nanos(f64::INFINITY), None);
    }
}

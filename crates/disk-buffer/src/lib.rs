//! The on-disk queue behind `buffer = "disk"` outputs: records appended by the gateway, read
//! back in order by the output, acked (in any order) once delivered, and kept across restarts
//! and crashes until then.
//!
//! A [`Buffer`] is a directory holding a `LOCK` file and segment files
//! `NNNNNNNNNNNNNNNNNNNN.seg` (the zero-padded segment id), each at most
//! [`Options::segment_bytes`]. A segment starts with an 8-byte header (`FGB1`, then the format
//! version as u32 LE), so that a file that is not a segment is refused rather than "repaired",
//! and holds records framed as `[u32 LE payload length][u32 LE crc32 of payload][payload]`.
//!
//! The semantics follow Vector's disk buffer (v2):
//!
//! - [`Buffer::append`] writes into a write buffer; [`Buffer::sync`] writes it out and fsyncs
//!   (the directory too after a segment file was created or deleted) and says how many records
//!   it made durable. The writer rolls to a new segment when a record does not fit.
//! - [`Error::Full`] when the segment files would take more than [`Options::max_bytes`]: the
//!   caller decides whether to block, shed or dead-letter.
//! - [`Buffer::read_next`] returns records in append order, those recovered at open first,
//!   those not yet synced too. [`Buffer::read_at`] reads one by id (a record set aside).
//! - [`Buffer::ack`] in any order; a segment file is deleted once every record in it is acked
//!   and the writer has moved on from it.
//! - [`Buffer::open`] locks the directory (a second open fails with [`Error::Locked`]), reads
//!   every segment and verifies every checksum. Damage in a segment (a torn record, a bad
//!   checksum, a length past the end of the file) cuts that segment at its last good record and
//!   the open goes on: later segments are still read. [`Recovery`] says what was kept and
//!   what was cut where. Damage is never a panic or an error that would fail every restart;
//!   only a file that is not a segment at all is ([`Error::Foreign`], [`Error::Version`]).
//!
//! Where it differs from Vector: acks are kept in memory only, with no ledger. After a
//! restart, every record of every segment not yet deleted is read again, acked or not:
//! delivery is at least once, and a restart may resend up to a segment's worth of acked
//! records. Graphite and InfluxDB writes of the same point are idempotent, so that costs
//! bandwidth, not correctness, and there is no ledger to disagree with the segment files
//! (a reader resuming at a deleted file was a crash loop of Vector's).
//!
//! [`Buffer::list`] reads a directory without the lock, for a listing beside a running
//! gateway; [`Buffer::drain_into`] moves every unacked record to another buffer (replaying a
//! dead-letter buffer into the main one).
//!
//! The I/O is synchronous `std::fs`: call it from a dedicated thread or `spawn_blocking`.
//! Every method takes `&self`. One lock covers the index, appends and acks, held for memory
//! work and buffered writes only: fsyncs run outside it, and readers read through file handles
//! of their own outside it.
//!
//! ```
//! use disk_buffer::{Buffer, Options};
//!
//! let dir = tempfile::tempdir()?;
//! let (buffer, recovery) = Buffer::open(dir.path(), Options::default())?;
//! assert!(recovery.is_clean());
//! let first = buffer.append(b"servers.web1.cpu 12.5 1700000000\n")?;
//! buffer.append(b"servers.web2.cpu 3.5 1700000000\n")?;
//! assert_eq!(buffer.sync()?, 2);
//! drop(buffer);
//!
//! // After a restart, unacked records come back in order.
//! let (buffer, recovery) = Buffer::open(dir.path(), Options::default())?;
//! assert_eq!(recovery.records, 2);
//! let (id, payload) = buffer.read_next()?.expect("a record");
//! assert_eq!((id, &payload[..]), (first, &b"servers.web1.cpu 12.5 1700000000\n"[..]));
//! buffer.ack(id)?;
//! assert_eq!(buffer.pending_records(), 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Why a log of its own
//!
//! The queue needs two things together: acks of single records in any order (an output
//! retries one destination's batch while later batches are delivered), and a segment deleted
//! as soon as its last record is acked, wherever it sits in the log. A log that only frees a
//! prefix pins everything behind one stuck record: a batch retried for an hour would keep the
//! whole hour on disk, here it keeps one segment. The log crates offer neither:
//!
//! - `okaywal` is a write-ahead log for a database: it decides when to checkpoint and then
//!   hands a whole prefix of entries (`checkpoint_to(last_checkpointed_id, ..)`) to the
//!   application to persist elsewhere. There is no acking of a single entry, and a segment is
//!   recycled only with everything before it. Its README also warns that its format is
//!   unstable.
//! - `commitlog` is a Kafka-like log of consecutive offsets: reads from an offset, `truncate`
//!   from the tail, memory-mapped index files. Dropping records from the head, let alone one
//!   out of order, is not part of its API.
//!
//! Either way, per-record acks would need a side structure of ours, and deleting a fully acked
//! segment in the middle would need the log to give up a file it still owns. What is left of a
//! log once those are ours is this crate: a frame, a scan, and a segment index holding each
//! record's offset and one ack bit (a little over 8 bytes a record in memory).
//!
//! # Throughput
//!
//! `cargo bench -p disk-buffer --bench append` (criterion, wall time; 64 KiB payloads,
//! 16 MiB segments, records acked as they go), on the 2-core development VM (ext4 on a
//! virtio disk), medians of 20 samples:
//!
//! | what | time | throughput |
//! | --- | --- | --- |
//! | append 1 record, `sync` | 673 µs | 93 MiB/s |
//! | append 16 records, `sync` | 4.02 ms | 249 MiB/s |
//! | `read_next` of 1 record (page cache warm, checksum verified) | 12.0 µs | 5.1 GiB/s |
//!
//! The fsync dominates appends: an output that syncs once per batch of batches rather than
//! per record gets most of the disk's bandwidth. Reading is a `read` and a crc32 per record.

mod buffer;
mod error;
mod format;

pub use buffer::{
    Buffer, Cut, Drained, ListedSegment, Listing, Options, RecordId, Recovery, SegmentInfo,
    LOCK_FILE,
};
pub use error::Error;
pub use format::{
    parse_segment_file_name, segment_file_name, CutReason, FRAME_BYTES, HEADER_BYTES,
};

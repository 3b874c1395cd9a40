//! The crate's single error type.

use std::io;
use std::path::{Path, PathBuf};

use crate::format::CutReason;
use crate::RecordId;

/// Everything that can go wrong while opening, appending to, reading or acking a buffer.
///
/// Positions are attached where they are known: the file an I/O error concerns, the record
/// ([`RecordId`], shown as `segment-file:offset`) a read or an ack concerns.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An I/O error on one file or directory of the buffer.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the operating system said.
        source: io::Error,
    },
    /// Another `Buffer` (in this process or another) holds the directory's `LOCK`.
    #[error("buffer directory {} is in use: {} is locked by another process or handle", dir.display(), dir.join(crate::LOCK_FILE).display())]
    Locked {
        /// The buffer directory.
        dir: PathBuf,
    },
    /// A file named like a segment that does not start with the segment magic: the directory
    /// is not (only) a buffer, and nothing in it is touched.
    #[error("{} is not a buffer segment: it starts with {found:02x?}, not \"FGB1\"", path.display())]
    Foreign {
        /// The file.
        path: PathBuf,
        /// Its first bytes (up to four).
        found: Vec<u8>,
    },
    /// A segment written by a newer format version.
    #[error("{}: segment format version {found}, this build reads version {supported}", path.display())]
    Version {
        /// The file.
        path: PathBuf,
        /// The version in its header.
        found: u32,
        /// The version this build writes and reads.
        supported: u32,
    },
    /// The record would take the bytes on disk past `max_bytes`.
    #[error("buffer full: {used} of {max} bytes on disk, the record needs {needed} more")]
    Full {
        /// Bytes of all segment files not yet deleted.
        used: u64,
        /// Bytes the record (and a new segment header, when it rolls) would add.
        needed: u64,
        /// The configured `max_bytes`.
        max: u64,
    },
    /// A payload that does not fit in one segment.
    #[error("record of {len} bytes is larger than a segment of {segment_bytes} bytes holds ({max} bytes)")]
    TooLarge {
        /// The payload length.
        len: usize,
        /// The configured `segment_bytes`.
        segment_bytes: u64,
        /// The largest payload a segment holds.
        max: u64,
    },
    /// An empty payload. Refused so that a zero-filled tail (which some file systems leave
    /// after a crash) is never taken for records: a zero length marks corruption.
    #[error("empty record")]
    Empty,
    /// The id does not name a record of this buffer.
    #[error("no record {id}")]
    UnknownRecord {
        /// The id.
        id: RecordId,
    },
    /// A record that was good when the buffer was opened no longer reads back as written (the
    /// file was changed underneath). The record is dropped (counted as acked) so the rest of
    /// the buffer stays readable.
    #[error("corrupt record {id}: {reason}")]
    Corrupt {
        /// The record.
        id: RecordId,
        /// What is wrong with it.
        reason: CutReason,
    },
    /// `drain_into` with the same buffer on both sides.
    #[error("cannot drain a buffer into itself")]
    SameBuffer,
    /// Options that cannot work.
    #[error("invalid buffer options: {0}")]
    InvalidOptions(String),
}

/// `map_err` helper: an I/O error on `path`.
pub(crate) fn io_at(path: &Path) -> impl FnOnce(io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_position() {
        let e = Error::Corrupt {
            id: RecordId {
                segment: 3,
                offset: 8,
            },
            reason: CutReason::Checksum {
                stored: 1,
                computed: 2,
            },
        };
        assert_eq!(
            e.to_string(),
            "corrupt record 00000000000000000003.seg:8: checksum 0x00000001 stored, 0x00000002 computed"
        );
        let e = io_at(Path::new("/x/LOCK"))(io::Error::other("boom"));
        assert_eq!(e.to_string(), "/x/LOCK: boom");
        let e = Error::Foreign {
            path: "/x/1.seg".into(),
            found: b"GIF8".to_vec(),
        };
        assert_eq!(
            e.to_string(),
            "/x/1.seg is not a buffer segment: it starts with [47, 49, 46, 38], not \"FGB1\""
        );
    }
}

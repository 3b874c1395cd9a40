//! The on-disk format: segment names, the segment header, record framing, and the scan that
//! verifies a segment and finds where its good records end.

use std::fmt;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use crate::error::{io_at, Error};

/// First bytes of every segment.
pub(crate) const MAGIC: [u8; 4] = *b"FGB1";
/// The format version this build writes and reads.
pub(crate) const VERSION: u32 = 1;
/// Bytes of the segment header: magic, then the version as u32 LE.
pub const HEADER_BYTES: u64 = 8;
/// Bytes of a record's frame before its payload: length, then crc32, both u32 LE.
pub const FRAME_BYTES: u64 = 8;

/// The segment header as written.
pub(crate) fn header() -> [u8; HEADER_BYTES as usize] {
    let mut h = [0; HEADER_BYTES as usize];
    h[..4].copy_from_slice(&MAGIC);
    h[4..].copy_from_slice(&VERSION.to_le_bytes());
    h
}

/// A record's frame (length and checksum of `payload`).
pub(crate) fn frame(payload: &[u8]) -> [u8; FRAME_BYTES as usize] {
    let mut f = [0; FRAME_BYTES as usize];
    f[..4].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    f[4..].copy_from_slice(&crc32fast::hash(payload).to_le_bytes());
    f
}

/// The file name of segment `id`: twenty digits, so names sort as ids do.
pub fn segment_file_name(id: u64) -> String {
    format!("{id:020}.seg")
}

/// The id of a file named by [`segment_file_name`], `None` for any other name.
pub fn parse_segment_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".seg")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Why a segment's tail was cut (at open) or a record could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CutReason {
    /// The file is shorter than the segment header (it was being created).
    TornHeader,
    /// Fewer bytes than a record frame are left.
    TornFrame {
        /// Bytes left.
        available: u64,
    },
    /// A frame with length zero (no record is empty: this is zero-filled or garbage space).
    ZeroLength,
    /// The frame's length reaches past the end of the file.
    PastEnd {
        /// The length in the frame.
        len: u32,
        /// Payload bytes actually left in the file.
        available: u64,
    },
    /// The payload does not match its checksum.
    Checksum {
        /// The checksum in the frame.
        stored: u32,
        /// The checksum of the bytes read.
        computed: u32,
    },
}

impl fmt::Display for CutReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            CutReason::TornHeader => f.write_str("torn segment header"),
            CutReason::TornFrame { available } => {
                write!(f, "torn record frame ({available} of 8 bytes)")
            }
            CutReason::ZeroLength => f.write_str("record length zero"),
            CutReason::PastEnd { len, available } => write!(
                f,
                "record length {len} past the end of the file ({available} bytes left)"
            ),
            CutReason::Checksum { stored, computed } => {
                write!(
                    f,
                    "checksum {stored:#010x} stored, {computed:#010x} computed"
                )
            }
        }
    }
}

/// What a scan found in one segment file.
#[derive(Debug)]
pub(crate) struct Scan {
    /// Offset of every good record, in order.
    pub(crate) offsets: Vec<u64>,
    /// Where the good records end (`HEADER_BYTES` for a segment without records, 0 for a torn
    /// header).
    pub(crate) end: u64,
    /// The file's length.
    pub(crate) file_len: u64,
    /// Where and why the good records stop before the end of the file.
    pub(crate) cut: Option<(u64, CutReason)>,
}

/// Reads a segment from the start, verifying the header and every record's checksum.
///
/// A foreign file or an unknown version is an error; damage (a torn header, a torn or corrupt
/// record) is not: the scan stops at it and reports it in [`Scan::cut`].
pub(crate) fn scan(path: &Path, file: &File) -> Result<Scan, Error> {
    let file_len = file.metadata().map_err(io_at(path))?.len();
    let mut file = file;
    file.seek(SeekFrom::Start(0)).map_err(io_at(path))?;
    let mut reader = BufReader::with_capacity(256 * 1024, file);
    let mut head = [0u8; HEADER_BYTES as usize];
    let got = read_up_to(&mut reader, &mut head).map_err(io_at(path))?;
    let magic_len = got.min(MAGIC.len());
    if head[..magic_len] != MAGIC[..magic_len] {
        return Err(Error::Foreign {
            path: path.to_path_buf(),
            found: head[..magic_len].to_vec(),
        });
    }
    if (got as u64) < HEADER_BYTES {
        // Torn while being created: a prefix of the magic, or the magic and part of the version.
        let version_len = got.saturating_sub(MAGIC.len());
        if head[4..4 + version_len] == VERSION.to_le_bytes()[..version_len] {
            return Ok(Scan {
                offsets: Vec::new(),
                end: 0,
                file_len,
                cut: Some((0, CutReason::TornHeader)),
            });
        }
    }
    let version = u32::from_le_bytes(head[4..].try_into().expect("4 bytes"));
    if version != VERSION {
        return Err(Error::Version {
            path: path.to_path_buf(),
            found: version,
            supported: VERSION,
        });
    }

    let mut offsets = Vec::new();
    let mut pos = HEADER_BYTES;
    let mut payload = Vec::new();
    let cut = loop {
        let left = file_len - pos;
        if left == 0 {
            break None;
        }
        if left < FRAME_BYTES {
            break Some((pos, CutReason::TornFrame { available: left }));
        }
        let mut f = [0u8; FRAME_BYTES as usize];
        reader.read_exact(&mut f).map_err(io_at(path))?;
        let len = u32::from_le_bytes(f[..4].try_into().expect("4 bytes"));
        let stored = u32::from_le_bytes(f[4..].try_into().expect("4 bytes"));
        if len == 0 {
            break Some((pos, CutReason::ZeroLength));
        }
        let available = left - FRAME_BYTES;
        if u64::from(len) > available {
            break Some((pos, CutReason::PastEnd { len, available }));
        }
        payload.resize(len as usize, 0);
        reader.read_exact(&mut payload).map_err(io_at(path))?;
        let computed = crc32fast::hash(&payload);
        if computed != stored {
            break Some((pos, CutReason::Checksum { stored, computed }));
        }
        offsets.push(pos);
        pos += FRAME_BYTES + u64::from(len);
    };
    Ok(Scan {
        offsets,
        end: pos,
        file_len,
        cut,
    })
}

/// Checks a frame and payload read back from a known record position.
pub(crate) fn verify(frame: &[u8; FRAME_BYTES as usize], payload: &[u8]) -> Result<(), CutReason> {
    let len = u32::from_le_bytes(frame[..4].try_into().expect("4 bytes"));
    let stored = u32::from_le_bytes(frame[4..].try_into().expect("4 bytes"));
    if len == 0 {
        return Err(CutReason::ZeroLength);
    }
    if len as usize != payload.len() {
        return Err(CutReason::PastEnd {
            len,
            available: payload.len() as u64,
        });
    }
    let computed = crc32fast::hash(payload);
    if computed != stored {
        return Err(CutReason::Checksum { stored, computed });
    }
    Ok(())
}

/// Fills as much of `buf` as the reader has; returns how much.
fn read_up_to(reader: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match reader.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn scan_bytes(bytes: &[u8]) -> Result<Scan, Error> {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(bytes).unwrap();
        let path = Path::new("test.seg");
        scan(path, &f)
    }

    fn record(payload: &[u8]) -> Vec<u8> {
        let mut v = frame(payload).to_vec();
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn names_round_trip_and_sort() {
        assert_eq!(segment_file_name(42), "00000000000000000042.seg");
        assert_eq!(
            parse_segment_file_name("00000000000000000042.seg"),
            Some(42)
        );
        assert_eq!(
            parse_segment_file_name(&segment_file_name(u64::MAX)),
            Some(u64::MAX)
        );
        assert_eq!(parse_segment_file_name("42.seg"), None);
        assert_eq!(parse_segment_file_name("0000000000000000004x.seg"), None);
        assert_eq!(parse_segment_file_name("00000000000000000042.tmp"), None);
        assert_eq!(parse_segment_file_name("99999999999999999999.seg"), None);
        assert!(segment_file_name(9) < segment_file_name(10));
    }

    #[test]
    fn scans_good_records() {
        let mut bytes = header().to_vec();
        bytes.extend(record(b"one"));
        bytes.extend(record(b"two!"));
        let s = scan_bytes(&bytes).unwrap();
        assert_eq!(s.offsets, vec![8, 19]);
        assert_eq!(s.end, bytes.len() as u64);
        assert!(s.cut.is_none());
    }

    #[test]
    fn stops_at_damage() {
        let mut bytes = header().to_vec();
        bytes.extend(record(b"one"));
        let good = bytes.len() as u64;

        let mut torn = bytes.clone();
        torn.extend(&record(b"two")[..5]);
        let s = scan_bytes(&torn).unwrap();
        assert_eq!(s.cut, Some((good, CutReason::TornFrame { available: 5 })));
        assert_eq!((s.end, s.offsets.len()), (good, 1));

        let mut past = bytes.clone();
        past.extend(&record(b"two")[..10]);
        let s = scan_bytes(&past).unwrap();
        assert_eq!(
            s.cut,
            Some((
                good,
                CutReason::PastEnd {
                    len: 3,
                    available: 2
                }
            ))
        );

        let mut zeros = bytes.clone();
        zeros.extend([0u8; 64]);
        assert_eq!(
            scan_bytes(&zeros).unwrap().cut,
            Some((good, CutReason::ZeroLength))
        );

        let mut flipped = bytes.clone();
        let mut r = record(b"two");
        r[9] ^= 0x20;
        flipped.extend(r);
        assert!(matches!(
            scan_bytes(&flipped).unwrap().cut,
            Some((g, CutReason::Checksum { .. })) if g == good
        ));
    }

    #[test]
    fn torn_header_is_damage_foreign_is_refused() {
        for n in 0..HEADER_BYTES as usize {
            let s = scan_bytes(&header()[..n]).unwrap();
            assert_eq!(s.cut, Some((0, CutReason::TornHeader)), "{n} bytes");
            assert_eq!(s.end, 0);
        }
        assert!(matches!(
            scan_bytes(b"GIF89a, certainly not a segment"),
            Err(Error::Foreign { .. })
        ));
        assert!(scan_bytes(b"FG").is_ok());
        assert!(matches!(scan_bytes(b"FX"), Err(Error::Foreign { .. })));
        let mut v2 = MAGIC.to_vec();
        v2.extend(2u32.to_le_bytes());
        assert!(matches!(
            scan_bytes(&v2),
            Err(Error::Version { found: 2, .. })
        ));
        // Magic and a torn version that is not a prefix of ours: not ours either.
        assert!(matches!(
            scan_bytes(b"FGB1\x07"),
            Err(Error::Version { .. })
        ));
    }

    #[test]
    fn verify_checks_length_and_checksum() {
        let f = frame(b"abc");
        assert_eq!(verify(&f, b"abc"), Ok(()));
        assert!(matches!(
            verify(&f, b"abd"),
            Err(CutReason::Checksum { .. })
        ));
        assert!(matches!(verify(&f, b"ab"), Err(CutReason::PastEnd { .. })));
    }
}

//! The buffer: a locked directory of segments, its writer, its reader, acks and deletion.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::error::{io_at, Error};
use crate::format::{
    self, frame, header, parse_segment_file_name, segment_file_name, CutReason, FRAME_BYTES,
    HEADER_BYTES,
};

/// The lock file every open buffer holds.
pub const LOCK_FILE: &str = "LOCK";

/// Bytes the writer gathers before it writes them out; larger records are written directly.
const WRITE_BUFFER: usize = 256 * 1024;

/// Limits of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// The most bytes all segment files together may take; an append past it fails with
    /// [`Error::Full`]. Acked records free room only when their segment file is deleted.
    pub max_bytes: u64,
    /// The largest a segment file grows before the writer rolls to a new one. A payload must
    /// fit in one segment (16 bytes of header and frame less than this).
    pub segment_bytes: u64,
}

impl Default for Options {
    /// 1 GiB in segments of 64 MiB.
    fn default() -> Self {
        Options {
            max_bytes: 1 << 30,
            segment_bytes: 64 << 20,
        }
    }
}

impl Options {
    fn validate(&self) -> Result<(), Error> {
        let least = HEADER_BYTES + FRAME_BYTES + 1;
        if self.segment_bytes < least {
            return Err(Error::InvalidOptions(format!(
                "segment_bytes {} is less than {least}, the smallest segment that holds a record",
                self.segment_bytes
            )));
        }
        if self.max_bytes < least {
            return Err(Error::InvalidOptions(format!(
                "max_bytes {} is less than {least}, the smallest buffer that holds a record",
                self.max_bytes
            )));
        }
        Ok(())
    }

    /// The largest payload a segment holds.
    pub fn max_payload(&self) -> u64 {
        (self
            .segment_bytes
            .saturating_sub(HEADER_BYTES + FRAME_BYTES))
        .min(u64::from(u32::MAX))
    }
}

/// Where a record is: its segment and the byte offset of its frame in the segment file.
///
/// Ids order as records were appended. Shown as `segment-file:offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RecordId {
    /// The segment id (the number in its file name).
    pub segment: u64,
    /// Byte offset of the record's frame in the segment file.
    pub offset: u64,
}

impl fmt::Display for RecordId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", segment_file_name(self.segment), self.offset)
    }
}

/// What was cut from one segment at open, or what a listing found damaged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cut {
    /// The segment id.
    pub segment: u64,
    /// The segment's file name.
    pub file_name: String,
    /// Where the good records end: the offset of the first damaged byte.
    pub offset: u64,
    /// Bytes from there to the end of the file.
    pub bytes: u64,
    /// What was found there.
    pub reason: CutReason,
}

impl fmt::Display for Cut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: {} bytes cut, {}",
            self.file_name, self.offset, self.bytes, self.reason
        )
    }
}

/// What [`Buffer::open`] found and repaired.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Segment files kept.
    pub segments: usize,
    /// Records found intact; [`Buffer::read_next`] returns them first.
    pub records: u64,
    /// Bytes of those records (frames included).
    pub bytes: u64,
    /// Bytes cut from damaged tails (and from segment files removed for a torn header).
    pub truncated_bytes: u64,
    /// Every cut, in segment order.
    pub cuts: Vec<Cut>,
    /// Segment files deleted because they held no record and were not the newest.
    pub removed: Vec<String>,
}

impl Recovery {
    /// Whether every segment was intact.
    pub fn is_clean(&self) -> bool {
        self.cuts.is_empty()
    }
}

impl fmt::Display for Recovery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} records ({} bytes) in {} segments",
            self.records, self.bytes, self.segments
        )?;
        if !self.cuts.is_empty() {
            write!(f, "; {} bytes truncated:", self.truncated_bytes)?;
            for (i, cut) in self.cuts.iter().enumerate() {
                write!(f, "{} {cut}", if i == 0 { "" } else { ";" })?;
            }
        }
        if !self.removed.is_empty() {
            write!(f, "; removed empty {}", self.removed.join(", "))?;
        }
        Ok(())
    }
}

/// One segment of an open buffer, for metrics and listings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentInfo {
    /// The segment id.
    pub id: u64,
    /// Its file name.
    pub file_name: String,
    /// Its length (including bytes appended but not yet written out).
    pub bytes: u64,
    /// Records in it.
    pub records: u64,
    /// Records in it already acked.
    pub acked: u64,
    /// Whether it is the segment being appended to (never deleted while it is).
    pub writing: bool,
}

/// One segment file as [`Buffer::list`] read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedSegment {
    /// The segment id.
    pub id: u64,
    /// Its file name.
    pub file_name: String,
    /// The file's length.
    pub bytes: u64,
    /// Intact records.
    pub records: u64,
    /// Damage after the intact records. For the segment an open buffer is writing, this may
    /// just be a record being written out.
    pub damaged: Option<Cut>,
}

/// A directory read by [`Buffer::list`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing {
    /// The segment files, in order.
    pub segments: Vec<ListedSegment>,
    /// Intact records in all of them. Acks are not stored, so this counts acked records of
    /// segments not yet deleted too.
    pub records: u64,
    /// Bytes of all segment files.
    pub bytes: u64,
}

/// What [`Buffer::drain_into`] moved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Drained {
    /// Records appended to the other buffer (made durable there, then acked here).
    pub records: u64,
    /// Their payload bytes.
    pub bytes: u64,
    /// Records that no longer read back intact here, dropped.
    pub corrupt: u64,
    /// Whether the drain stopped because the other buffer was full (records are left here).
    pub full: bool,
}

/// A segment's in-memory index.
#[derive(Debug)]
struct Segment {
    id: u64,
    /// Length of the file's good part, including bytes still in the write buffer.
    bytes: u64,
    /// Offsets of the records' frames.
    offsets: Vec<u64>,
    /// One bit per record.
    acked: Vec<u64>,
    acked_records: u64,
}

impl Segment {
    fn new(id: u64, bytes: u64, offsets: Vec<u64>) -> Self {
        Segment {
            id,
            bytes,
            offsets,
            acked: Vec::new(),
            acked_records: 0,
        }
    }

    fn records(&self) -> u64 {
        self.offsets.len() as u64
    }

    /// Bytes of record `index`, frame included.
    fn record_bytes(&self, index: usize) -> u64 {
        let end = self.offsets.get(index + 1).copied().unwrap_or(self.bytes);
        end - self.offsets[index]
    }

    fn is_acked(&self, index: usize) -> bool {
        self.acked
            .get(index / 64)
            .is_some_and(|w| w & (1 << (index % 64)) != 0)
    }

    /// Marks record `index` acked; false if it already was.
    fn set_acked(&mut self, index: usize) -> bool {
        let word = index / 64;
        if self.acked.len() <= word {
            self.acked.resize(word + 1, 0);
        }
        let bit = 1 << (index % 64);
        if self.acked[word] & bit != 0 {
            return false;
        }
        self.acked[word] |= bit;
        self.acked_records += 1;
        true
    }

    fn all_acked(&self) -> bool {
        self.acked_records == self.records()
    }

    fn index_of(&self, offset: u64) -> Option<usize> {
        self.offsets.binary_search(&offset).ok()
    }
}

/// Appends to the newest segment through a buffer of its own (rather than `BufWriter`) so that a
/// failed write is retried exactly: bytes not known to be written stay in the buffer, and the
/// next write starts again at the last offset known good.
#[derive(Debug)]
struct Writer {
    id: u64,
    path: PathBuf,
    file: File,
    /// Bytes known written to the file.
    written: u64,
    buf: Vec<u8>,
    /// The file position is not `written` (after a failed write, or on open).
    reposition: bool,
}

impl Writer {
    fn write_parts(&mut self, parts: &[&[u8]]) -> Result<(), Error> {
        if self.reposition {
            self.file
                .seek(SeekFrom::Start(self.written))
                .map_err(io_at(&self.path))?;
            self.reposition = false;
        }
        for part in parts {
            if let Err(e) = self.file.write_all(part) {
                self.reposition = true;
                return Err(io_at(&self.path)(e));
            }
        }
        self.written += parts.iter().map(|p| p.len() as u64).sum::<u64>();
        Ok(())
    }

    /// Writes the buffer out (no fsync).
    fn flush(&mut self) -> Result<(), Error> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let mut buf = std::mem::take(&mut self.buf);
        let written = self.write_parts(&[&buf]);
        if written.is_ok() {
            buf.clear();
        }
        self.buf = buf;
        written
    }

    fn append(&mut self, frame: &[u8], payload: &[u8]) -> Result<(), Error> {
        let total = frame.len() + payload.len();
        if self.buf.len() + total > WRITE_BUFFER {
            self.flush()?;
        }
        if total > WRITE_BUFFER {
            self.write_parts(&[frame, payload])
        } else {
            if self.buf.capacity() == 0 {
                self.buf.reserve(WRITE_BUFFER);
            }
            self.buf.extend_from_slice(frame);
            self.buf.extend_from_slice(payload);
            Ok(())
        }
    }
}

/// A record found for a reader: its id, its index in the segment, its payload length.
#[derive(Debug, Clone, Copy)]
struct Loc {
    id: RecordId,
    index: usize,
    len: u64,
}

/// Everything behind the buffer's main lock.
#[derive(Debug)]
struct State {
    dir: PathBuf,
    segments: BTreeMap<u64, Segment>,
    writer: Writer,
    disk_bytes: u64,
    pending_records: u64,
    pending_bytes: u64,
    appended_since_sync: u64,
    /// Rolled segments written but not yet fsynced.
    unsynced: Vec<(u64, File)>,
    /// A segment file was created or deleted since the directory was last fsynced.
    dir_dirty: bool,
}

impl State {
    fn path(&self, id: u64) -> PathBuf {
        self.dir.join(segment_file_name(id))
    }

    fn current(&mut self) -> &mut Segment {
        self.segments
            .get_mut(&self.writer.id)
            .expect("the segment being written is indexed")
    }

    /// The first unacked record at or after record `index` of segment `segment`; writes out
    /// the write buffer if the record is (partly) still in it.
    fn next_unacked(&mut self, segment: u64, index: usize) -> Result<Option<Loc>, Error> {
        let found = self.segments.range(segment..).find_map(|(&id, seg)| {
            let from = if id == segment { index } else { 0 };
            (from..seg.offsets.len())
                .find(|&i| !seg.is_acked(i))
                .map(|i| (seg, i))
        });
        let Some((seg, index)) = found else {
            return Ok(None);
        };
        let loc = Loc {
            id: RecordId {
                segment: seg.id,
                offset: seg.offsets[index],
            },
            index,
            len: seg.record_bytes(index) - FRAME_BYTES,
        };
        self.flush_for(loc)?;
        Ok(Some(loc))
    }

    fn flush_for(&mut self, loc: Loc) -> Result<(), Error> {
        if loc.id.segment == self.writer.id
            && loc.id.offset + FRAME_BYTES + loc.len > self.writer.written
        {
            self.writer.flush()?;
        }
        Ok(())
    }

    /// Acks record `index` of segment `id`, deleting the segment when that was its last unacked
    /// record and it is not being written. False if it already was acked.
    fn ack_index(&mut self, id: u64, index: usize) -> Result<bool, Error> {
        let writing = self.writer.id;
        let seg = self
            .segments
            .get_mut(&id)
            .expect("caller found the segment");
        if !seg.set_acked(index) {
            return Ok(false);
        }
        let bytes = seg.record_bytes(index);
        let done = seg.all_acked() && id != writing;
        self.pending_records -= 1;
        self.pending_bytes -= bytes;
        if done {
            self.delete(id)?;
        }
        Ok(true)
    }

    fn delete(&mut self, id: u64) -> Result<(), Error> {
        let path = self.path(id);
        self.unsynced.retain(|(u, _)| *u != id);
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_at(&path)(e)),
        }
        let seg = self
            .segments
            .remove(&id)
            .expect("deleting an indexed segment");
        self.disk_bytes -= seg.bytes;
        self.dir_dirty = true;
        Ok(())
    }

    /// Deletes every segment whose records are all acked, except the one being written.
    fn sweep(&mut self) -> Result<(), Error> {
        let done: Vec<u64> = self
            .segments
            .values()
            .filter(|s| s.id != self.writer.id && s.all_acked())
            .map(|s| s.id)
            .collect();
        let mut first_error = Ok(());
        for id in done {
            if let Err(e) = self.delete(id) {
                first_error = first_error.and(Err(e));
            }
        }
        first_error
    }

    /// Starts a new segment; the old one is fsynced at the next `sync`, or deleted now if every
    /// record in it is acked.
    fn roll(&mut self) -> Result<(), Error> {
        self.writer.flush()?;
        let id = self.writer.id + 1;
        let path = self.path(id);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(io_at(&path))?;
        let writer = Writer {
            id,
            path,
            file,
            written: 0,
            buf: header().to_vec(),
            reposition: false,
        };
        let old = std::mem::replace(&mut self.writer, writer);
        self.unsynced.push((old.id, old.file));
        self.segments
            .insert(id, Segment::new(id, HEADER_BYTES, Vec::new()));
        self.disk_bytes += HEADER_BYTES;
        self.dir_dirty = true;
        // A segment that cannot be deleted now stays indexed and is tried again at the next
        // roll; the append that rolled does not fail for it.
        let _ = self.sweep();
        Ok(())
    }
}

/// Why reading a located record failed.
#[derive(Debug)]
enum ReadFail {
    /// The segment file is gone (deleted once all its records were acked).
    Gone,
    /// The bytes are not what was written.
    Corrupt(CutReason),
    Io(Error),
}

/// A file handle kept open on one segment for sequential reads.
#[derive(Debug, Default)]
struct ReadHandle {
    open: Option<(u64, File)>,
}

impl ReadHandle {
    fn read(&mut self, dir: &Path, loc: Loc) -> Result<Vec<u8>, ReadFail> {
        let path = dir.join(segment_file_name(loc.id.segment));
        if self
            .open
            .as_ref()
            .is_none_or(|(id, _)| *id != loc.id.segment)
        {
            self.open = None;
            match File::open(&path) {
                Ok(file) => self.open = Some((loc.id.segment, file)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(ReadFail::Gone),
                Err(e) => return Err(ReadFail::Io(io_at(&path)(e))),
            }
        }
        let (_, file) = self.open.as_mut().expect("opened above");
        let io = |e: io::Error| ReadFail::Io(io_at(&path)(e));
        file.seek(SeekFrom::Start(loc.id.offset)).map_err(io)?;
        let mut f = [0u8; FRAME_BYTES as usize];
        let mut payload = vec![0u8; loc.len as usize];
        let short = |e: io::Error| match e.kind() {
            io::ErrorKind::UnexpectedEof => {
                ReadFail::Corrupt(CutReason::TornFrame { available: 0 })
            }
            _ => ReadFail::Io(io_at(&path)(e)),
        };
        file.read_exact(&mut f).map_err(short)?;
        file.read_exact(&mut payload).map_err(short)?;
        format::verify(&f, &payload).map_err(ReadFail::Corrupt)?;
        Ok(payload)
    }
}

/// The sequential reader's position: the next record index to look at, in a segment.
#[derive(Debug, Default)]
struct Reader {
    segment: u64,
    index: usize,
    handle: ReadHandle,
}

/// An on-disk queue of records in a locked directory. See the [crate docs](crate).
///
/// All methods take `&self`; the buffer is `Send + Sync` and meant to be shared in an `Arc`.
/// Appends, acks and metrics share one lock held for in-memory work and buffered writes only;
/// [`sync`](Buffer::sync) fsyncs and the readers read files outside it.
pub struct Buffer {
    dir: PathBuf,
    options: Options,
    state: Mutex<State>,
    reader: Mutex<Reader>,
    syncing: Mutex<()>,
    /// Holds the directory lock while the buffer lives.
    _lock: File,
}

impl fmt::Debug for Buffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Buffer")
            .field("dir", &self.dir)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The segment files of `dir`, by id.
fn segment_ids(dir: &Path) -> Result<Vec<u64>, Error> {
    let mut ids = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_at(dir))? {
        let entry = entry.map_err(io_at(dir))?;
        if let Some(id) = entry.file_name().to_str().and_then(parse_segment_file_name) {
            ids.push(id);
        }
    }
    ids.sort_unstable();
    Ok(ids)
}

fn sync_dir(dir: &Path) -> Result<(), Error> {
    #[cfg(unix)]
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_at(dir))?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

impl Buffer {
    /// Opens (creating if need be) the buffer in `dir`, locks it, and recovers its segments.
    ///
    /// Every record of every segment is read and its checksum verified. Damage in a segment
    /// (a torn or corrupt record, a length past the end of the file) cuts that segment at its
    /// last good record: the file is truncated there and later segments are still read. A
    /// segment left with no record is deleted unless it is the newest, which appends continue.
    /// A file named like a segment that is not one ([`Error::Foreign`], [`Error::Version`])
    /// fails the open and is left alone.
    ///
    /// Fails with [`Error::Locked`] while another `Buffer` has the directory open.
    pub fn open(dir: impl AsRef<Path>, options: Options) -> Result<(Buffer, Recovery), Error> {
        options.validate()?;
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(&dir).map_err(io_at(&dir))?;
        let lock_path = dir.join(LOCK_FILE);
        let lock_file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(io_at(&lock_path))?;
        match lock_file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Err(Error::Locked { dir }),
            Err(TryLockError::Error(e)) => return Err(io_at(&lock_path)(e)),
        }

        let ids = segment_ids(&dir)?;
        let mut recovery = Recovery::default();
        let mut segments = BTreeMap::new();
        let mut writer = None;
        let mut dir_dirty = false;
        for (i, &id) in ids.iter().enumerate() {
            let newest = i + 1 == ids.len();
            let file_name = segment_file_name(id);
            let path = dir.join(&file_name);
            let mut file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .map_err(io_at(&path))?;
            let scan = format::scan(&path, &file)?;
            if let Some((offset, reason)) = scan.cut {
                let bytes = scan.file_len - offset;
                recovery.truncated_bytes += bytes;
                recovery.cuts.push(Cut {
                    segment: id,
                    file_name: file_name.clone(),
                    offset,
                    bytes,
                    reason,
                });
            }
            if scan.offsets.is_empty() && !newest {
                drop(file);
                fs::remove_file(&path).map_err(io_at(&path))?;
                recovery.removed.push(file_name);
                dir_dirty = true;
                continue;
            }
            let mut end = scan.end;
            if end == 0 {
                // A torn header in the newest segment: write it again.
                file.set_len(0)
                    .and_then(|()| file.seek(SeekFrom::Start(0)))
                    .and_then(|_| file.write_all(&header()))
                    .and_then(|()| file.sync_data())
                    .map_err(io_at(&path))?;
                end = HEADER_BYTES;
            } else if scan.cut.is_some() {
                file.set_len(end)
                    .and_then(|()| file.sync_data())
                    .map_err(io_at(&path))?;
            }
            recovery.records += scan.offsets.len() as u64;
            recovery.bytes += end - HEADER_BYTES;
            segments.insert(id, Segment::new(id, end, scan.offsets));
            if newest {
                writer = Some(Writer {
                    id,
                    path,
                    file,
                    written: end,
                    buf: Vec::new(),
                    reposition: true,
                });
            }
        }
        let writer = match writer {
            Some(w) => w,
            None => {
                let id = ids.last().map_or(0, |last| last + 1);
                let path = dir.join(segment_file_name(id));
                let file = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create_new(true)
                    .open(&path)
                    .map_err(io_at(&path))?;
                segments.insert(id, Segment::new(id, HEADER_BYTES, Vec::new()));
                dir_dirty = true;
                Writer {
                    id,
                    path,
                    file,
                    written: 0,
                    buf: header().to_vec(),
                    reposition: false,
                }
            }
        };
        if !recovery.removed.is_empty() {
            sync_dir(&dir)?;
            dir_dirty = false;
        }
        recovery.segments = segments.len();
        let disk_bytes = segments.values().map(|s| s.bytes).sum();
        let state = State {
            dir: dir.clone(),
            segments,
            writer,
            disk_bytes,
            pending_records: recovery.records,
            pending_bytes: recovery.bytes,
            appended_since_sync: 0,
            unsynced: Vec::new(),
            dir_dirty,
        };
        let buffer = Buffer {
            dir,
            options,
            state: Mutex::new(state),
            reader: Mutex::new(Reader::default()),
            syncing: Mutex::new(()),
            _lock: lock_file,
        };
        Ok((buffer, recovery))
    }

    /// Reads the segments of `dir` without locking it or changing anything, verifying every
    /// record (for listings of a buffer that may be open elsewhere).
    pub fn list(dir: impl AsRef<Path>) -> Result<Listing, Error> {
        let dir = dir.as_ref();
        let mut listing = Listing::default();
        for id in segment_ids(dir)? {
            let file_name = segment_file_name(id);
            let path = dir.join(&file_name);
            let file = match File::open(&path) {
                Ok(file) => file,
                // Deleted by the buffer that has the directory open.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_at(&path)(e)),
            };
            let scan = format::scan(&path, &file)?;
            listing.records += scan.offsets.len() as u64;
            listing.bytes += scan.file_len;
            listing.segments.push(ListedSegment {
                id,
                file_name: file_name.clone(),
                bytes: scan.file_len,
                records: scan.offsets.len() as u64,
                damaged: scan.cut.map(|(offset, reason)| Cut {
                    segment: id,
                    file_name,
                    offset,
                    bytes: scan.file_len - offset,
                    reason,
                }),
            });
        }
        Ok(listing)
    }

    /// The buffer's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The options it was opened with.
    pub fn options(&self) -> Options {
        self.options
    }

    /// Appends a record (buffered: not durable until [`sync`](Buffer::sync)).
    ///
    /// Rolls to a new segment when the record does not fit in the current one. Fails with
    /// [`Error::Full`] when the segment files would take more than `max_bytes`; a current
    /// segment whose records are all acked is rolled away first to make room.
    pub fn append(&self, payload: &[u8]) -> Result<RecordId, Error> {
        if payload.is_empty() {
            return Err(Error::Empty);
        }
        let len = payload.len() as u64;
        if len > self.options.max_payload() {
            return Err(Error::TooLarge {
                len: payload.len(),
                segment_bytes: self.options.segment_bytes,
                max: self.options.max_payload(),
            });
        }
        let record = FRAME_BYTES + len;
        let max = self.options.max_bytes;
        let mut st = lock(&self.state);
        let cur = st.current();
        let has_records = cur.records() > 0;
        let must_roll = has_records && cur.bytes + record > self.options.segment_bytes;
        let freeable = has_records && cur.all_acked();
        let mut needed = record + if must_roll { HEADER_BYTES } else { 0 };
        let mut rolled = false;
        if st.disk_bytes + needed > max && freeable {
            st.roll()?;
            rolled = true;
            needed = record;
        }
        if st.disk_bytes + needed > max {
            return Err(Error::Full {
                used: st.disk_bytes,
                needed,
                max,
            });
        }
        if must_roll && !rolled {
            st.roll()?;
        }
        let frame = frame(payload);
        st.writer.append(&frame, payload)?;
        let segment = st.writer.id;
        let cur = st.current();
        let offset = cur.bytes;
        cur.offsets.push(offset);
        cur.bytes += record;
        st.disk_bytes += record;
        st.pending_records += 1;
        st.pending_bytes += record;
        st.appended_since_sync += 1;
        Ok(RecordId { segment, offset })
    }

    /// Writes out and fsyncs everything appended so far (and the directory, after segment
    /// files were created or deleted). Returns how many records this made durable.
    ///
    /// Appends go on while the fsync runs; they are made durable by the next call.
    pub fn sync(&self) -> Result<u64, Error> {
        let _syncing = lock(&self.syncing);
        let (count, mut files, dir_dirty) = {
            let mut st = lock(&self.state);
            st.writer.flush()?;
            let current = st.writer.file.try_clone().map_err(io_at(&st.writer.path))?;
            let id = st.writer.id;
            let mut files = std::mem::take(&mut st.unsynced);
            files.push((id, current));
            (
                st.appended_since_sync,
                files,
                std::mem::take(&mut st.dir_dirty),
            )
        };
        let mut result = Ok(());
        for (id, file) in &files {
            if let Err(e) = file.sync_data() {
                result = Err(io_at(&self.dir.join(segment_file_name(*id)))(e));
                break;
            }
        }
        if result.is_ok() && dir_dirty {
            result = sync_dir(&self.dir);
        }
        let mut st = lock(&self.state);
        if let Err(e) = result {
            // Try again next time: the rolled segments (the current one is always synced).
            files.pop();
            files.retain(|(id, _)| st.segments.contains_key(id));
            st.unsynced.append(&mut files);
            st.dir_dirty |= dir_dirty;
            return Err(e);
        }
        st.appended_since_sync -= count;
        Ok(count)
    }

    /// Records appended since the last successful [`sync`](Buffer::sync) (or open).
    pub fn appended_since_sync(&self) -> u64 {
        lock(&self.state).appended_since_sync
    }

    /// The next unacked record in append order (records recovered at open first), or `None`
    /// when the reader has caught up with the writer. Records not yet synced are returned too.
    ///
    /// Each record is returned once per open; one that is not acked is returned again after
    /// the buffer is reopened. A record that no longer reads back intact is dropped (acked) and
    /// reported as [`Error::Corrupt`]; the next call goes on after it. After an I/O error the
    /// same record is tried again.
    pub fn read_next(&self) -> Result<Option<(RecordId, Vec<u8>)>, Error> {
        let mut reader = lock(&self.reader);
        loop {
            let Some(loc) = lock(&self.state).next_unacked(reader.segment, reader.index)? else {
                return Ok(None);
            };
            match reader.handle.read(&self.dir, loc) {
                Ok(payload) => {
                    reader.segment = loc.id.segment;
                    reader.index = loc.index + 1;
                    return Ok(Some((loc.id, payload)));
                }
                Err(ReadFail::Gone) => {
                    let st = lock(&self.state);
                    if st.segments.contains_key(&loc.id.segment) {
                        // Deleted by someone else: not something to skip silently.
                        return Err(Error::Io {
                            path: st.path(loc.id.segment),
                            source: io::ErrorKind::NotFound.into(),
                        });
                    }
                }
                Err(ReadFail::Corrupt(reason)) => {
                    reader.segment = loc.id.segment;
                    reader.index = loc.index + 1;
                    self.drop_corrupt(loc)?;
                    return Err(Error::Corrupt { id: loc.id, reason });
                }
                Err(ReadFail::Io(e)) => return Err(e),
            }
        }
    }

    /// Reads record `id` wherever it is, without moving the sequential reader. `None` if it
    /// was acked (or its segment deleted).
    pub fn read_at(&self, id: RecordId) -> Result<Option<Vec<u8>>, Error> {
        let loc = {
            let mut st = lock(&self.state);
            let writing = st.writer.id;
            let Some(seg) = st.segments.get(&id.segment) else {
                return if id.segment < writing {
                    Ok(None)
                } else {
                    Err(Error::UnknownRecord { id })
                };
            };
            let index = seg.index_of(id.offset).ok_or(Error::UnknownRecord { id })?;
            if seg.is_acked(index) {
                return Ok(None);
            }
            let loc = Loc {
                id,
                index,
                len: seg.record_bytes(index) - FRAME_BYTES,
            };
            st.flush_for(loc)?;
            loc
        };
        match ReadHandle::default().read(&self.dir, loc) {
            Ok(payload) => Ok(Some(payload)),
            Err(ReadFail::Gone) => Ok(None),
            Err(ReadFail::Corrupt(reason)) => {
                self.drop_corrupt(loc)?;
                Err(Error::Corrupt { id, reason })
            }
            Err(ReadFail::Io(e)) => Err(e),
        }
    }

    fn drop_corrupt(&self, loc: Loc) -> Result<(), Error> {
        let mut st = lock(&self.state);
        if st.segments.contains_key(&loc.id.segment) {
            st.ack_index(loc.id.segment, loc.index)?;
        }
        Ok(())
    }

    /// Marks a record delivered, in any order. Acking a record twice is no error.
    ///
    /// When every record of a segment is acked and the writer has moved on from it, its file is
    /// deleted, which is what frees room under `max_bytes`. Acks are kept in memory only: after
    /// a reopen, the acked records of segments not yet deleted are read again.
    pub fn ack(&self, id: RecordId) -> Result<(), Error> {
        let mut st = lock(&self.state);
        let writing = st.writer.id;
        let Some(seg) = st.segments.get(&id.segment) else {
            return if id.segment < writing {
                Ok(())
            } else {
                Err(Error::UnknownRecord { id })
            };
        };
        let index = seg.index_of(id.offset).ok_or(Error::UnknownRecord { id })?;
        st.ack_index(id.segment, index)?;
        Ok(())
    }

    /// Bytes (frames included) of the records not yet acked.
    pub fn pending_bytes(&self) -> u64 {
        lock(&self.state).pending_bytes
    }

    /// Records not yet acked.
    pub fn pending_records(&self) -> u64 {
        lock(&self.state).pending_records
    }

    /// Bytes of all segment files, which `max_bytes` bounds.
    pub fn disk_bytes(&self) -> u64 {
        lock(&self.state).disk_bytes
    }

    /// The segments, in order.
    pub fn segments(&self) -> Vec<SegmentInfo> {
        let st = lock(&self.state);
        st.segments
            .values()
            .map(|s| SegmentInfo {
                id: s.id,
                file_name: segment_file_name(s.id),
                bytes: s.bytes,
                records: s.records(),
                acked: s.acked_records,
                writing: s.id == st.writer.id,
            })
            .collect()
    }

    /// Moves every unacked record of this buffer to `other`, in order: appends them there,
    /// syncs `other`, then acks them here (so a crash in between duplicates records rather
    /// than losing them). Independent of [`read_next`](Buffer::read_next)'s position.
    ///
    /// Stops early, with [`Drained::full`] set, when `other` is full; what was moved until then
    /// is synced and acked all the same.
    pub fn drain_into(&self, other: &Buffer) -> Result<Drained, Error> {
        if std::ptr::eq(self, other) {
            return Err(Error::SameBuffer);
        }
        let mut drained = Drained::default();
        let mut moved = Vec::new();
        let mut handle = ReadHandle::default();
        let (mut segment, mut index) = (0, 0);
        let mut stopped = Ok(());
        loop {
            let loc = match lock(&self.state).next_unacked(segment, index) {
                Ok(Some(loc)) => loc,
                Ok(None) => break,
                Err(e) => {
                    stopped = Err(e);
                    break;
                }
            };
            (segment, index) = (loc.id.segment, loc.index + 1);
            let payload = match handle.read(&self.dir, loc) {
                Ok(payload) => payload,
                Err(ReadFail::Gone) => continue,
                Err(ReadFail::Corrupt(_)) => {
                    self.drop_corrupt(loc)?;
                    drained.corrupt += 1;
                    continue;
                }
                Err(ReadFail::Io(e)) => {
                    stopped = Err(e);
                    break;
                }
            };
            match other.append(&payload) {
                Ok(_) => {
                    moved.push(loc.id);
                    drained.records += 1;
                    drained.bytes += payload.len() as u64;
                }
                Err(Error::Full { .. }) => {
                    drained.full = true;
                    break;
                }
                Err(e) => {
                    stopped = Err(e);
                    break;
                }
            }
        }
        if !moved.is_empty() {
            other.sync()?;
            for id in moved {
                self.ack(id)?;
            }
        }
        stopped.map(|()| drained)
    }
}

impl Drop for Buffer {
    /// Writes out buffered appends (without fsync): a clean shutdown loses nothing to a
    /// process exit, only to a machine crash. A segment being written whose every record was
    /// acked is deleted: acks are not kept on disk, and it would otherwise be read again at
    /// the next open (a drained dead-letter buffer would replay forever).
    fn drop(&mut self) {
        let mut st = lock(&self.state);
        let _ = st.writer.flush();
        let id = st.writer.id;
        let done = st
            .segments
            .get(&id)
            .is_some_and(|seg| seg.records() > 0 && seg.all_acked());
        if done {
            let _ = st.delete(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small(max_bytes: u64, segment_bytes: u64) -> Options {
        Options {
            max_bytes,
            segment_bytes,
        }
    }

    #[test]
    fn a_fully_acked_segment_is_gone_after_a_clean_close() {
        let dir = tempfile::tempdir().unwrap();
        let (b, _) = Buffer::open(dir.path(), Options::default()).unwrap();
        let a = b.append(b"alpha").unwrap();
        b.sync().unwrap();
        b.ack(a).unwrap();
        drop(b);
        let (b, rec) = Buffer::open(dir.path(), Options::default()).unwrap();
        assert_eq!(rec.records, 0);
        assert!(b.read_next().unwrap().is_none());
    }

    #[test]
    fn append_read_ack_in_one_segment() {
        let dir = tempfile::tempdir().unwrap();
        let (b, rec) = Buffer::open(dir.path(), Options::default()).unwrap();
        assert!(rec.is_clean());
        assert_eq!(rec.records, 0);
        let a = b.append(b"alpha").unwrap();
        let c = b.append(b"beta").unwrap();
        assert_eq!(
            a,
            RecordId {
                segment: 0,
                offset: 8
            }
        );
        assert_eq!(
            c,
            RecordId {
                segment: 0,
                offset: 21
            }
        );
        assert!(a < c);
        assert_eq!(b.appended_since_sync(), 2);
        assert_eq!(b.read_next().unwrap(), Some((a, b"alpha".to_vec())));
        assert_eq!(b.read_at(c).unwrap(), Some(b"beta".to_vec()));
        assert_eq!(b.read_next().unwrap(), Some((c, b"beta".to_vec())));
        assert_eq!(b.read_next().unwrap(), None);
        assert_eq!(b.pending_records(), 2);
        assert_eq!(b.pending_bytes(), 13 + 12);
        b.ack(c).unwrap();
        b.ack(c).unwrap();
        assert_eq!(b.pending_records(), 1);
        assert_eq!(b.read_at(c).unwrap(), None);
        b.ack(a).unwrap();
        // The segment being written is kept.
        assert_eq!(b.segments().len(), 1);
        assert_eq!(b.segments()[0].acked, 2);
        assert_eq!(b.sync().unwrap(), 2);
        assert_eq!(b.sync().unwrap(), 0);
        assert_eq!(b.appended_since_sync(), 0);
    }

    #[test]
    fn refuses_what_cannot_be_stored() {
        let dir = tempfile::tempdir().unwrap();
        let (b, _) = Buffer::open(dir.path(), small(1 << 20, 64)).unwrap();
        assert!(matches!(b.append(b""), Err(Error::Empty)));
        assert!(b.append(&[1; 48]).is_ok());
        assert!(matches!(
            b.append(&[1; 49]),
            Err(Error::TooLarge {
                len: 49,
                max: 48,
                ..
            })
        ));
        let bogus = RecordId {
            segment: 0,
            offset: 9,
        };
        assert!(matches!(b.ack(bogus), Err(Error::UnknownRecord { .. })));
        assert!(matches!(b.read_at(bogus), Err(Error::UnknownRecord { .. })));
        let future = RecordId {
            segment: 7,
            offset: 8,
        };
        assert!(matches!(b.ack(future), Err(Error::UnknownRecord { .. })));
        assert!(matches!(
            Buffer::open(dir.path().join("x"), small(1 << 20, 16)),
            Err(Error::InvalidOptions(_))
        ));
    }

    #[test]
    fn rolls_and_deletes_acked_segments() {
        let dir = tempfile::tempdir().unwrap();
        // Header 8 + two records of 8 + 20 = 64.
        let (b, _) = Buffer::open(dir.path(), small(1 << 20, 64)).unwrap();
        let ids: Vec<_> = (0..5u8).map(|i| b.append(&[i; 20]).unwrap()).collect();
        let segs: Vec<_> = ids.iter().map(|id| id.segment).collect();
        assert_eq!(segs, vec![0, 0, 1, 1, 2]);
        assert_eq!(b.segments().len(), 3);
        b.ack(ids[1]).unwrap();
        assert!(dir.path().join(segment_file_name(0)).exists());
        b.ack(ids[0]).unwrap();
        assert!(!dir.path().join(segment_file_name(0)).exists());
        // Acking a record of a deleted segment is a double ack.
        b.ack(ids[0]).unwrap();
        assert_eq!(b.read_at(ids[0]).unwrap(), None);
        // The reader skips acked records and deleted segments.
        assert_eq!(b.read_next().unwrap().unwrap().0, ids[2]);
        b.ack(ids[4]).unwrap();
        assert_eq!(b.segments().last().unwrap().acked, 1);
        assert!(b.segments().last().unwrap().writing);
        assert_eq!(b.disk_bytes(), 64 + 36);
    }

    #[test]
    fn reopen_after_acks_returns_unacked_and_undeleted() {
        let dir = tempfile::tempdir().unwrap();
        let ids: Vec<_> = {
            let (b, _) = Buffer::open(dir.path(), small(1 << 20, 64)).unwrap();
            let ids: Vec<_> = (0..5u8).map(|i| b.append(&[i; 20]).unwrap()).collect();
            b.ack(ids[0]).unwrap();
            b.ack(ids[1]).unwrap();
            b.ack(ids[2]).unwrap();
            b.sync().unwrap();
            ids
        };
        let (b, rec) = Buffer::open(dir.path(), small(1 << 20, 64)).unwrap();
        assert!(rec.is_clean(), "{rec}");
        assert_eq!(rec.records, 3);
        // Segment 0 was deleted; record 2 was acked but its segment kept: read again.
        let got: Vec<_> = std::iter::from_fn(|| b.read_next().unwrap())
            .map(|(id, _)| id)
            .collect();
        assert_eq!(got, ids[2..]);
    }

    #[test]
    fn drop_writes_out_buffered_appends() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (b, _) = Buffer::open(dir.path(), Options::default()).unwrap();
            b.append(b"kept").unwrap();
        }
        let (b, rec) = Buffer::open(dir.path(), Options::default()).unwrap();
        assert_eq!((rec.records, rec.is_clean()), (1, true));
        assert_eq!(b.read_next().unwrap().unwrap().1, b"kept");
    }

    #[test]
    fn large_records_bypass_the_write_buffer() {
        let dir = tempfile::tempdir().unwrap();
        let (b, _) = Buffer::open(dir.path(), Options::default()).unwrap();
        let big = vec![7u8; WRITE_BUFFER + 1];
        let small_id = b.append(b"small").unwrap();
        let big_id = b.append(&big).unwrap();
        b.append(b"after").unwrap();
        assert_eq!(b.read_at(big_id).unwrap().unwrap(), big);
        assert_eq!(b.read_next().unwrap().unwrap().0, small_id);
        assert_eq!(b.read_next().unwrap().unwrap().1, big);
        assert_eq!(b.read_next().unwrap().unwrap().1, b"after");
    }

    #[test]
    fn recovery_display_names_the_cut() {
        let rec = Recovery {
            segments: 1,
            records: 2,
            bytes: 30,
            truncated_bytes: 5,
            cuts: vec![Cut {
                segment: 1,
                file_name: segment_file_name(1),
                offset: 38,
                bytes: 5,
                reason: CutReason::TornFrame { available: 5 },
            }],
            removed: vec![],
        };
        assert_eq!(
            rec.to_string(),
            "2 records (30 bytes) in 1 segments; 5 bytes truncated: \
             00000000000000000001.seg:38: 5 bytes cut, torn record frame (5 of 8 bytes)"
        );
    }
}

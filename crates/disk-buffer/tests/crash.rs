//! Crash tests: segment files cut or damaged the way a crash (or a bad disk) leaves them, then
//! reopened. Every intact record before the damage comes back, the damaged one does not,
//! `Recovery` says where the cut was, and the buffer takes appends again.

use std::fs;
use std::path::{Path, PathBuf};

use disk_buffer::{segment_file_name, Buffer, CutReason, Error, Options, RecordId, FRAME_BYTES};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Segments of 256 bytes: the records below fill two and a half.
fn options() -> Options {
    Options {
        max_bytes: 1 << 20,
        segment_bytes: 256,
    }
}

fn payload(i: usize) -> Vec<u8> {
    let len = 20 + i * 7 % 50;
    (0..len).map(|j| (i * 17 + j * 3) as u8).collect()
}

/// A buffer of `n` synced records, closed; returns their ids and payloads.
fn written(dir: &Path, n: usize) -> Vec<(RecordId, Vec<u8>)> {
    let (buffer, _) = Buffer::open(dir, options()).unwrap();
    let records = (0..n)
        .map(|i| {
            let p = payload(i);
            (buffer.append(&p).unwrap(), p)
        })
        .collect();
    buffer.sync().unwrap();
    records
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

fn seg_path(dir: &Path, segment: u64) -> PathBuf {
    dir.join(segment_file_name(segment))
}

fn read_all(buffer: &Buffer) -> Vec<(RecordId, Vec<u8>)> {
    std::iter::from_fn(|| buffer.read_next().unwrap()).collect()
}

/// After recovery: appends work and come back after the recovered records, across a reopen.
fn appends_after_recovery(dir: &Path, buffer: Buffer, recovered: &[(RecordId, Vec<u8>)]) {
    let id = buffer.append(b"after recovery").unwrap();
    assert!(recovered.last().is_none_or(|(last, _)| id > *last));
    buffer.sync().unwrap();
    drop(buffer);
    let (buffer, recovery) = Buffer::open(dir, options()).unwrap();
    assert!(recovery.is_clean(), "{recovery}");
    let mut expected = recovered.to_vec();
    expected.push((id, b"after recovery".to_vec()));
    assert_eq!(read_all(&buffer), expected);
}

#[test]
fn torn_last_record_at_every_byte() {
    let base = tempfile::tempdir().unwrap();
    let records = written(base.path(), 12);
    let (last, last_payload) = records.last().unwrap().clone();
    let start = last.offset;
    let end = start + FRAME_BYTES + last_payload.len() as u64;
    assert_eq!(
        fs::metadata(seg_path(base.path(), last.segment))
            .unwrap()
            .len(),
        end
    );
    assert!(last.segment > 0, "the records span several segments");

    for cut in start..end {
        let work = tempfile::tempdir().unwrap();
        copy_dir(base.path(), work.path());
        let path = seg_path(work.path(), last.segment);
        fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(cut)
            .unwrap();

        let (buffer, recovery) = Buffer::open(work.path(), options()).unwrap();
        let intact = &records[..records.len() - 1];
        assert_eq!(recovery.records, intact.len() as u64, "cut at {cut}");
        if cut == start {
            // Cut exactly between records: nothing torn to see.
            assert!(recovery.is_clean());
        } else {
            assert_eq!(recovery.cuts.len(), 1, "cut at {cut}");
            let c = &recovery.cuts[0];
            assert_eq!(
                (c.segment, c.offset, c.bytes),
                (last.segment, start, cut - start)
            );
            assert_eq!(c.file_name, segment_file_name(last.segment));
            assert_eq!(recovery.truncated_bytes, cut - start);
            let expected_reason = if cut - start < FRAME_BYTES {
                CutReason::TornFrame {
                    available: cut - start,
                }
            } else {
                CutReason::PastEnd {
                    len: last_payload.len() as u32,
                    available: cut - start - FRAME_BYTES,
                }
            };
            assert_eq!(c.reason, expected_reason);
        }
        assert_eq!(fs::metadata(&path).unwrap().len(), start, "truncated");
        assert_eq!(read_all(&buffer), intact);
        appends_after_recovery(work.path(), buffer, intact);
    }
}

#[test]
fn flipped_byte_in_last_record() {
    let base = tempfile::tempdir().unwrap();
    let records = written(base.path(), 12);
    let (last, last_payload) = records.last().unwrap().clone();
    let start = last.offset;
    let end = start + FRAME_BYTES + last_payload.len() as u64;
    let mut rng = StdRng::seed_from_u64(0x6662_3100);
    // Every byte of the record, each with a random non-zero flip.
    for pos in start..end {
        let work = tempfile::tempdir().unwrap();
        copy_dir(base.path(), work.path());
        let path = seg_path(work.path(), last.segment);
        let mut bytes = fs::read(&path).unwrap();
        bytes[pos as usize] ^= rng.gen_range(1..=255u8);
        fs::write(&path, &bytes).unwrap();

        let (buffer, recovery) = Buffer::open(work.path(), options()).unwrap();
        let intact = &records[..records.len() - 1];
        assert_eq!(recovery.records, intact.len() as u64, "flip at {pos}");
        assert_eq!(recovery.cuts.len(), 1, "flip at {pos}");
        let c = &recovery.cuts[0];
        assert_eq!(
            (c.segment, c.offset, c.bytes),
            (last.segment, start, end - start)
        );
        assert!(
            matches!(
                c.reason,
                CutReason::Checksum { .. } | CutReason::PastEnd { .. } | CutReason::ZeroLength
            ),
            "flip at {pos}: {}",
            c.reason
        );
        assert_eq!(read_all(&buffer), intact);
        appends_after_recovery(work.path(), buffer, intact);
    }
}

#[test]
fn flipped_byte_in_an_earlier_segment_drops_the_rest_of_it() {
    let base = tempfile::tempdir().unwrap();
    let records = written(base.path(), 12);
    let mut rng = StdRng::seed_from_u64(7);
    for _ in 0..64 {
        // A random byte of a random record of segment 0 (not the one being written).
        let in_first: Vec<_> = records.iter().filter(|(id, _)| id.segment == 0).collect();
        let (victim, victim_payload) = in_first[rng.gen_range(0..in_first.len())];
        let pos = victim.offset + rng.gen_range(0..FRAME_BYTES + victim_payload.len() as u64);

        let work = tempfile::tempdir().unwrap();
        copy_dir(base.path(), work.path());
        let path = seg_path(work.path(), 0);
        let mut bytes = fs::read(&path).unwrap();
        let file_len = bytes.len() as u64;
        bytes[pos as usize] ^= rng.gen_range(1..=255u8);
        fs::write(&path, &bytes).unwrap();

        let (buffer, recovery) = Buffer::open(work.path(), options()).unwrap();
        let expected: Vec<_> = records
            .iter()
            .filter(|(id, _)| id.segment != 0 || id.offset < victim.offset)
            .cloned()
            .collect();
        assert_eq!(recovery.cuts.len(), 1, "flip at {pos}");
        let c = &recovery.cuts[0];
        assert_eq!(
            (c.segment, c.offset, c.bytes),
            (0, victim.offset, file_len - victim.offset)
        );
        assert_eq!(recovery.records, expected.len() as u64);
        if victim.offset == disk_buffer::HEADER_BYTES {
            // Nothing left of segment 0: it is deleted.
            assert_eq!(recovery.removed, vec![segment_file_name(0)]);
            assert!(!path.exists());
        }
        assert_eq!(read_all(&buffer), expected);
        appends_after_recovery(work.path(), buffer, &expected);
    }
}

#[test]
fn torn_header_of_a_new_segment() {
    let base = tempfile::tempdir().unwrap();
    let records = written(base.path(), 12);
    let next = records.last().unwrap().0.segment + 1;
    for len in 0..disk_buffer::HEADER_BYTES as usize {
        let work = tempfile::tempdir().unwrap();
        copy_dir(base.path(), work.path());
        // A crash right after the writer created the next segment.
        fs::write(seg_path(work.path(), next), &b"FGB1\x01\0\0\0"[..len]).unwrap();
        let (buffer, recovery) = Buffer::open(work.path(), options()).unwrap();
        assert_eq!(recovery.records, records.len() as u64);
        assert_eq!(recovery.cuts.len(), 1);
        assert_eq!(recovery.cuts[0].reason, CutReason::TornHeader);
        assert_eq!(recovery.cuts[0].segment, next);
        assert_eq!(read_all(&buffer), records);
        appends_after_recovery(work.path(), buffer, &records);
    }
}

#[test]
fn zero_filled_tail_is_cut() {
    // What some file systems show after a crash: the size grew, the data never came.
    let base = tempfile::tempdir().unwrap();
    let records = written(base.path(), 12);
    let last = records.last().unwrap().0.segment;
    let path = seg_path(base.path(), last);
    let good = fs::metadata(&path).unwrap().len();
    let f = fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len(good + 4096).unwrap();
    drop(f);
    let (buffer, recovery) = Buffer::open(base.path(), options()).unwrap();
    assert_eq!(recovery.cuts.len(), 1);
    assert_eq!(recovery.cuts[0].reason, CutReason::ZeroLength);
    assert_eq!(recovery.cuts[0].offset, good);
    assert_eq!(recovery.truncated_bytes, 4096);
    assert_eq!(read_all(&buffer), records);
    appends_after_recovery(base.path(), buffer, &records);
}

#[test]
fn unsynced_appends_lost_to_a_crash_are_never_half_read() {
    // Simulate a crash that kept only part of what was written after the last sync: every
    // prefix of the file is a state a crash can leave.
    let base = tempfile::tempdir().unwrap();
    let (buffer, _) = Buffer::open(base.path(), options()).unwrap();
    let synced = buffer.append(b"synced").unwrap();
    buffer.sync().unwrap();
    buffer.append(b"not synced, lost").unwrap();
    let path = seg_path(base.path(), 0);
    drop(buffer);
    let full = fs::read(&path).unwrap();
    for len in synced.offset as usize + FRAME_BYTES as usize + 6..full.len() {
        let work = tempfile::tempdir().unwrap();
        copy_dir(base.path(), work.path());
        fs::write(seg_path(work.path(), 0), &full[..len]).unwrap();
        let (buffer, _) = Buffer::open(work.path(), options()).unwrap();
        assert_eq!(read_all(&buffer), vec![(synced, b"synced".to_vec())]);
    }
}

#[test]
fn a_foreign_file_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = seg_path(dir.path(), 3);
    fs::write(&path, b"#!/bin/sh\necho not a segment\n").unwrap();
    let err = Buffer::open(dir.path(), options()).unwrap_err();
    assert!(matches!(err, Error::Foreign { .. }), "{err}");
    assert!(err
        .to_string()
        .contains("00000000000000000003.seg is not a buffer segment"));
    assert_eq!(fs::read(&path).unwrap(), b"#!/bin/sh\necho not a segment\n");
    assert!(matches!(
        Buffer::list(dir.path()),
        Err(Error::Foreign { .. })
    ));
    // Other files are none of the buffer's business.
    fs::remove_file(&path).unwrap();
    fs::write(dir.path().join("README"), b"hello").unwrap();
    let (_buffer, recovery) = Buffer::open(dir.path(), options()).unwrap();
    assert!(recovery.is_clean());
}

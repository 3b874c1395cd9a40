//! The directory lock, `max_bytes`, draining one buffer into another, listings, and use from
//! several threads at once.

use std::sync::Arc;
use std::thread;

use disk_buffer::{segment_file_name, Buffer, Error, Options, RecordId, FRAME_BYTES, HEADER_BYTES};

fn read_all(buffer: &Buffer) -> Vec<(RecordId, Vec<u8>)> {
    std::iter::from_fn(|| buffer.read_next().unwrap()).collect()
}

#[test]
fn a_second_open_of_a_locked_dir_fails() {
    let dir = tempfile::tempdir().unwrap();
    let (first, _) = Buffer::open(dir.path(), Options::default()).unwrap();
    first.append(b"mine").unwrap();
    let err = Buffer::open(dir.path(), Options::default()).unwrap_err();
    assert!(matches!(err, Error::Locked { .. }), "{err}");
    assert!(err.to_string().contains("is in use"), "{err}");
    // The listing needs no lock.
    assert_eq!(Buffer::list(dir.path()).unwrap().segments.len(), 1);
    drop(first);
    let (again, recovery) = Buffer::open(dir.path(), Options::default()).unwrap();
    assert_eq!(recovery.records, 1);
    assert_eq!(read_all(&again)[0].1, b"mine");
}

#[test]
fn full_at_max_bytes_and_acks_free_room() {
    let dir = tempfile::tempdir().unwrap();
    // Segments of header + 3 records of 8 + 24 bytes; room for two segments.
    let segment_bytes = HEADER_BYTES + 3 * (FRAME_BYTES + 24);
    let options = Options {
        max_bytes: 2 * segment_bytes,
        segment_bytes,
    };
    let (buffer, _) = Buffer::open(dir.path(), options).unwrap();
    let mut ids = Vec::new();
    let err = loop {
        match buffer.append(&[ids.len() as u8; 24]) {
            Ok(id) => ids.push(id),
            Err(e) => break e,
        }
        assert!(buffer.disk_bytes() <= options.max_bytes);
    };
    assert_eq!(ids.len(), 6);
    match err {
        Error::Full { used, needed, max } => {
            assert_eq!((used, max), (2 * segment_bytes, 2 * segment_bytes));
            assert_eq!(needed, HEADER_BYTES + FRAME_BYTES + 24);
        }
        e => panic!("{e}"),
    }
    // Acking part of a segment frees nothing; acking all of it deletes it.
    buffer.ack(ids[0]).unwrap();
    buffer.ack(ids[2]).unwrap();
    assert!(matches!(buffer.append(b"x"), Err(Error::Full { .. })));
    buffer.ack(ids[1]).unwrap();
    assert!(!dir.path().join(segment_file_name(0)).exists());
    assert_eq!(buffer.disk_bytes(), segment_bytes);
    ids.push(buffer.append(&[6; 24]).unwrap());
    assert_eq!(ids[6].segment, 2);
    // Also when the full segment is the one being written: once all of it is acked the writer
    // rolls away from it to make room.
    for id in &ids[3..7] {
        buffer.ack(*id).unwrap();
    }
    // Segment 1 was deleted, segment 2 (all acked) is being written.
    assert_eq!(buffer.segments().len(), 1);
    let small = Options {
        max_bytes: segment_bytes,
        segment_bytes: 1 << 20,
    };
    let dir2 = tempfile::tempdir().unwrap();
    let (one, _) = Buffer::open(dir2.path(), small).unwrap();
    let a = one.append(&[1; 24]).unwrap();
    let b = one.append(&[2; 24]).unwrap();
    let c = one.append(&[3; 24]).unwrap();
    assert!(matches!(one.append(&[4; 24]), Err(Error::Full { .. })));
    one.ack(a).unwrap();
    one.ack(b).unwrap();
    assert!(matches!(one.append(&[4; 24]), Err(Error::Full { .. })));
    one.ack(c).unwrap();
    let d = one.append(&[4; 24]).unwrap();
    assert_eq!(d.segment, 1);
    assert_eq!(one.segments().len(), 1);
    assert_eq!(read_all(&one), vec![(d, vec![4; 24])]);
}

#[test]
fn drain_moves_unacked_records_in_order() {
    let dead = tempfile::tempdir().unwrap();
    let main = tempfile::tempdir().unwrap();
    let options = Options {
        max_bytes: 1 << 20,
        segment_bytes: 200,
    };
    let (dead_letter, _) = Buffer::open(dead.path(), options).unwrap();
    let ids: Vec<_> = (0..20u8)
        .map(|i| dead_letter.append(&[i; 30]).unwrap())
        .collect();
    for id in ids.iter().step_by(3) {
        dead_letter.ack(*id).unwrap();
    }
    let (target, _) = Buffer::open(main.path(), options).unwrap();
    target.append(b"already there").unwrap();
    assert!(matches!(
        dead_letter.drain_into(&dead_letter),
        Err(Error::SameBuffer)
    ));
    let drained = dead_letter.drain_into(&target).unwrap();
    let expected: Vec<Vec<u8>> = (0..20u8)
        .filter(|i| i % 3 != 0)
        .map(|i| vec![i; 30])
        .collect();
    assert_eq!(drained.records, expected.len() as u64);
    assert_eq!(drained.bytes, 30 * expected.len() as u64);
    assert!(!drained.full);
    assert_eq!(dead_letter.pending_records(), 0);
    assert_eq!(
        dead_letter.segments().len(),
        1,
        "only the segment being written is left"
    );
    assert_eq!(target.appended_since_sync(), 0, "synced before acking");
    let got: Vec<_> = read_all(&target).into_iter().map(|(_, p)| p).collect();
    assert_eq!(got[0], b"already there");
    assert_eq!(got[1..], expected[..]);
    // Nothing left to move.
    assert_eq!(dead_letter.drain_into(&target).unwrap().records, 0);
}

#[test]
fn drain_stops_when_the_target_is_full() {
    let dead = tempfile::tempdir().unwrap();
    let main = tempfile::tempdir().unwrap();
    let (dead_letter, _) = Buffer::open(dead.path(), Options::default()).unwrap();
    for i in 0..10u8 {
        dead_letter.append(&[i; 100]).unwrap();
    }
    let tight = Options {
        max_bytes: HEADER_BYTES + 4 * (FRAME_BYTES + 100),
        segment_bytes: 1 << 20,
    };
    let (target, _) = Buffer::open(main.path(), tight).unwrap();
    let drained = dead_letter.drain_into(&target).unwrap();
    assert!(drained.full);
    assert_eq!(drained.records, 4);
    assert_eq!(dead_letter.pending_records(), 6);
    let (_, first_left) = dead_letter.read_next().unwrap().unwrap();
    assert_eq!(first_left, vec![4; 100]);
}

#[test]
fn listing_reads_without_changing_anything() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options {
        max_bytes: 1 << 20,
        segment_bytes: 100,
    };
    {
        let (buffer, _) = Buffer::open(dir.path(), options).unwrap();
        for i in 0..7u8 {
            buffer.append(&[i; 20]).unwrap();
        }
        buffer.sync().unwrap();
    }
    let last = dir.path().join(segment_file_name(2));
    let len = std::fs::metadata(&last).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&last)
        .unwrap()
        .set_len(len - 3)
        .unwrap();
    let listing = Buffer::list(dir.path()).unwrap();
    let names: Vec<_> = listing
        .segments
        .iter()
        .map(|s| s.file_name.as_str())
        .collect();
    assert_eq!(
        names,
        [
            segment_file_name(0),
            segment_file_name(1),
            segment_file_name(2)
        ]
    );
    assert_eq!(listing.records, 6);
    assert_eq!(listing.bytes, 2 * 92 + len - 3);
    let damaged = listing.segments[2].damaged.as_ref().unwrap();
    assert_eq!((damaged.offset, damaged.bytes), (HEADER_BYTES, 25));
    assert_eq!(
        std::fs::metadata(&last).unwrap().len(),
        len - 3,
        "untouched"
    );
    assert!(Buffer::list(dir.path().join("missing")).is_err());
}

#[test]
fn appends_reads_acks_and_syncs_from_several_threads() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options {
        max_bytes: 1 << 24,
        segment_bytes: 4096,
    };
    let (buffer, _) = Buffer::open(dir.path(), options).unwrap();
    let buffer = Arc::new(buffer);
    const N: u32 = 3000;
    let writer = {
        let buffer = Arc::clone(&buffer);
        thread::spawn(move || {
            for i in 0..N {
                let mut payload = i.to_le_bytes().to_vec();
                payload.resize(4 + (i % 97) as usize, i as u8);
                buffer.append(&payload).unwrap();
            }
        })
    };
    let syncer = {
        let buffer = Arc::clone(&buffer);
        thread::spawn(move || {
            let mut total = 0;
            while total < u64::from(N) {
                total += buffer.sync().unwrap();
            }
        })
    };
    let mut next = 0u32;
    let mut last_id = None;
    while next < N {
        match buffer.read_next().unwrap() {
            Some((id, payload)) => {
                assert_eq!(u32::from_le_bytes(payload[..4].try_into().unwrap()), next);
                assert_eq!(payload.len(), 4 + (next % 97) as usize);
                assert!(last_id < Some(id));
                last_id = Some(id);
                buffer.ack(id).unwrap();
                next += 1;
            }
            None => thread::yield_now(),
        }
    }
    writer.join().unwrap();
    syncer.join().unwrap();
    assert_eq!(buffer.read_next().unwrap(), None);
    assert_eq!(buffer.pending_records(), 0);
    assert_eq!(buffer.pending_bytes(), 0);
    assert_eq!(buffer.segments().len(), 1);
    assert_eq!(buffer.appended_since_sync(), 0);
}

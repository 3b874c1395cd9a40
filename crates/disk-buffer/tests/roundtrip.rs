//! Property tests: whatever is appended comes back in order after a reopen, and acks delete
//! only segments whose every record was acked.

use std::collections::BTreeSet;
use std::path::Path;

use disk_buffer::{segment_file_name, Buffer, Options, RecordId};
use proptest::prelude::*;

fn options(segment_bytes: u64) -> Options {
    Options {
        max_bytes: 1 << 30,
        segment_bytes,
    }
}

fn read_all(buffer: &Buffer) -> Vec<(RecordId, Vec<u8>)> {
    std::iter::from_fn(|| buffer.read_next().unwrap()).collect()
}

fn segment_exists(dir: &Path, segment: u64) -> bool {
    dir.join(segment_file_name(segment)).exists()
}

/// A payload that names its record, so a misplaced record cannot pass for another.
fn tagged(i: usize, len: usize) -> Vec<u8> {
    let mut p = format!("{i}:").into_bytes();
    p.extend((0..len).map(|j| (i * 31 + j) as u8));
    p
}

#[derive(Debug, Clone)]
enum Op {
    Append(Vec<u8>),
    Sync,
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => proptest::collection::vec(any::<u8>(), 1..200).prop_map(Op::Append),
        1 => Just(Op::Sync),
        1 => Just(Op::Reopen),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// Appends interleaved with syncs and reopens (each reopen preceded by a sync, as a clean
    /// shutdown does): the records read back after a final reopen are exactly those appended,
    /// in order, under the ids `append` returned.
    #[test]
    fn appended_records_come_back_in_order(
        ops in proptest::collection::vec(op(), 0..80),
        segment_bytes in 40u64..600,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let opts = options(segment_bytes);
        let (mut buffer, _) = Buffer::open(dir.path(), opts).unwrap();
        let mut expected = Vec::new();
        for op in ops {
            match op {
                Op::Append(payload) => {
                    if payload.len() as u64 > opts.max_payload() {
                        continue;
                    }
                    let id = buffer.append(&payload).unwrap();
                    if let Some((last, _)) = expected.last() {
                        prop_assert!(id > *last);
                    }
                    expected.push((id, payload));
                }
                Op::Sync => {
                    buffer.sync().unwrap();
                    prop_assert_eq!(buffer.appended_since_sync(), 0);
                }
                Op::Reopen => {
                    buffer.sync().unwrap();
                    drop(buffer);
                    let (b, recovery) = Buffer::open(dir.path(), opts).unwrap();
                    prop_assert!(recovery.is_clean(), "{}", recovery);
                    prop_assert_eq!(recovery.records, expected.len() as u64);
                    buffer = b;
                }
            }
        }
        buffer.sync().unwrap();
        for seg in buffer.segments() {
            prop_assert!(seg.bytes <= segment_bytes);
        }
        drop(buffer);
        let (buffer, recovery) = Buffer::open(dir.path(), opts).unwrap();
        prop_assert!(recovery.is_clean(), "{}", recovery);
        prop_assert_eq!(read_all(&buffer), expected.clone());
        let listing = Buffer::list(dir.path()).unwrap();
        prop_assert_eq!(listing.records, expected.len() as u64);
        prop_assert!(listing.segments.iter().all(|s| s.damaged.is_none()));
    }

    /// Acks in random order: a segment file is gone only if every record in it was acked; every
    /// unacked record is still readable, before and after a reopen; a reopen never returns a
    /// record of a deleted segment.
    #[test]
    fn acks_delete_only_fully_acked_segments(
        lens in proptest::collection::vec(1usize..120, 1..60),
        acks in proptest::collection::vec(any::<bool>(), 60),
        order in Just((0..60usize).collect::<Vec<_>>()).prop_shuffle(),
        segment_bytes in 64u64..400,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let opts = options(segment_bytes);
        let (buffer, _) = Buffer::open(dir.path(), opts).unwrap();
        let records: Vec<(RecordId, Vec<u8>)> = lens
            .iter()
            .enumerate()
            .map(|(i, &len)| {
                let payload = tagged(i, len.min(opts.max_payload() as usize - 4));
                (buffer.append(&payload).unwrap(), payload)
            })
            .collect();
        // The reader may have read some of them already; acks do not depend on it.
        let _ = buffer.read_next().unwrap();
        let mut acked = BTreeSet::new();
        for &i in order.iter().filter(|&&i| i < records.len() && acks[i]) {
            buffer.ack(records[i].0).unwrap();
            acked.insert(i);
        }
        let writing = buffer.segments().last().unwrap().id;
        for (i, (id, payload)) in records.iter().enumerate() {
            if segment_exists(dir.path(), id.segment) {
                continue;
            }
            prop_assert!(acked.contains(&i), "record {} deleted unacked", id);
            prop_assert!(id.segment != writing);
            prop_assert_eq!(buffer.read_at(*id).unwrap(), None);
            let _ = payload;
        }
        for (i, (id, payload)) in records.iter().enumerate() {
            if !acked.contains(&i) {
                prop_assert_eq!(buffer.read_at(*id).unwrap(), Some(payload.clone()));
            }
        }
        // Every fully acked segment other than the one being written is gone.
        for seg in buffer.segments() {
            prop_assert!(seg.writing || seg.acked < seg.records);
        }
        prop_assert_eq!(buffer.pending_records(), (records.len() - acked.len()) as u64);
        let on_disk: u64 = buffer
            .segments()
            .iter()
            .map(|s| std::fs::metadata(dir.path().join(&s.file_name)).unwrap().len())
            .sum();
        buffer.sync().unwrap();
        let on_disk_synced: u64 = buffer
            .segments()
            .iter()
            .map(|s| std::fs::metadata(dir.path().join(&s.file_name)).unwrap().len())
            .sum();
        prop_assert!(on_disk <= on_disk_synced);
        prop_assert_eq!(on_disk_synced, buffer.disk_bytes());
        // What a reopen reads again: the segments still on disk, less the one being written
        // if all of it was acked (a clean close deletes it).
        let live: BTreeSet<u64> = buffer
            .segments()
            .iter()
            .filter(|s| s.acked < s.records)
            .map(|s| s.id)
            .collect();
        let expected: Vec<_> = records
            .iter()
            .filter(|(id, _)| live.contains(&id.segment))
            .cloned()
            .collect();
        drop(buffer);

        let (buffer, recovery) = Buffer::open(dir.path(), opts).unwrap();
        prop_assert!(recovery.is_clean(), "{}", recovery);
        let got = read_all(&buffer);
        prop_assert_eq!(&got, &expected);
        for (i, record) in records.iter().enumerate() {
            if !acked.contains(&i) {
                prop_assert!(got.contains(record), "unacked record {} lost", record.0);
            }
        }
    }
}

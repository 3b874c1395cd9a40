//! Throughput of the disk buffer with 64 KiB payloads (a typical output batch).
//!
//! Run: `cargo bench -p disk-buffer --bench append`
//!
//! The buffers live under the target directory (`CARGO_TARGET_TMPDIR`), on a real disk rather
//! than a tmpfs `/tmp`, so that the fsyncs cost what they cost. Times are wall times: an fsync
//! is waiting, not CPU. Records are acked as they go, so segments are deleted and the disk use
//! stays flat however long criterion runs.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use disk_buffer::{Buffer, Options};

const PAYLOAD: usize = 64 * 1024;

fn options() -> Options {
    Options {
        max_bytes: 1 << 30,
        segment_bytes: 16 << 20,
    }
}

fn payload() -> Vec<u8> {
    // Not all zeros, not compressible in any way that matters here.
    (0..PAYLOAD).map(|i| (i * 131 % 251) as u8).collect()
}

fn bench_dir() -> tempfile::TempDir {
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("bench dir")
}

fn append_sync(c: &mut Criterion) {
    let data = payload();
    let mut group = c.benchmark_group("append");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(8));
    for batch in [1u64, 16] {
        group.throughput(Throughput::Bytes(PAYLOAD as u64 * batch));
        group.bench_function(format!("64KiB_sync_every_{batch}"), |b| {
            let dir = bench_dir();
            let (buffer, _) = Buffer::open(dir.path(), options()).unwrap();
            b.iter(|| {
                let mut ids = Vec::with_capacity(batch as usize);
                for _ in 0..batch {
                    ids.push(buffer.append(black_box(&data)).unwrap());
                }
                assert_eq!(buffer.sync().unwrap(), batch);
                for id in ids {
                    buffer.ack(id).unwrap();
                }
            });
        });
    }
    group.finish();
}

fn read_next(c: &mut Criterion) {
    let data = payload();
    let mut group = c.benchmark_group("read");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(5));
    group.throughput(Throughput::Bytes(PAYLOAD as u64));
    group.bench_function("64KiB_read_next", |b| {
        let dir = bench_dir();
        // 1024 records (64 MiB); read to the end, then reopen (untimed) to read them again.
        {
            let (buffer, _) = Buffer::open(dir.path(), options()).unwrap();
            for _ in 0..1024 {
                buffer.append(&data).unwrap();
            }
            buffer.sync().unwrap();
        }
        let mut buffer = Some(Buffer::open(dir.path(), options()).unwrap().0);
        b.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            for _ in 0..iters {
                let start = Instant::now();
                let got = buffer.as_ref().unwrap().read_next().unwrap();
                timed += start.elapsed();
                match got {
                    Some((_, payload)) => assert_eq!(black_box(payload).len(), PAYLOAD),
                    None => {
                        buffer = None;
                        buffer = Some(Buffer::open(dir.path(), options()).unwrap().0);
                        let start = Instant::now();
                        let (_, payload) = buffer.as_ref().unwrap().read_next().unwrap().unwrap();
                        timed += start.elapsed();
                        assert_eq!(payload.len(), PAYLOAD);
                    }
                }
            }
            timed
        });
    });
    group.finish();
}

criterion_group!(benches, append_sync, read_next);
criterion_main!(benches);

//! Decode and encode of what a relay carries: protocol-2 frames of 500 points with
//! relay-style names (`servers.dcN.hostNNNN.metric`), 10 000 distinct names in all.
//!
//! `cargo bench -p graphite-pickle`; medians land in
//! `target/criterion/<group>/<bench>/new/estimates.json`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use graphite_pickle::{Decoder, FrameEncoder, FrameSplitter};

const METRICS: [&str; 10] = [
    "cpu.user",
    "cpu.system",
    "cpu.iowait",
    "mem.free",
    "mem.cached",
    "disk.sda.reads",
    "disk.sda.writes",
    "net.eth0.rx_bytes",
    "net.eth0.tx_bytes",
    "load.shortterm",
];

/// `relay_names` of tests/fixtures/gen.py.
fn relay_names(n: usize, dc: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            format!(
                "servers.dc{dc}.host{:04}.{}",
                i / METRICS.len(),
                METRICS[i % METRICS.len()]
            )
        })
        .collect()
}

/// Byte for byte what CPython 3 writes for `pickle.dumps(points, protocol=2)` with str
/// paths and float datapoints (carbon-relay's `_sendDatapointsNow`): a BINPUT/LONG_BINPUT
/// after every str and tuple, one APPENDS per 1000 items.
fn cpython_protocol2(points: &[(String, f64, f64)]) -> Vec<u8> {
    let mut out = vec![0x80, 2, b']'];
    let mut memo = 0u32;
    let mut put = |out: &mut Vec<u8>| {
        if memo < 256 {
            out.extend_from_slice(&[b'q', memo as u8]);
        } else {
            out.push(b'r');
            out.extend_from_slice(&memo.to_le_bytes());
        }
        memo += 1;
    };
    put(&mut out);
    for batch in points.chunks(1000) {
        out.push(b'(');
        for (path, ts, value) in batch {
            out.push(b'X');
            out.extend_from_slice(&(path.len() as u32).to_le_bytes());
            out.extend_from_slice(path.as_bytes());
            put(&mut out);
            out.push(b'G');
            out.extend_from_slice(&ts.to_be_bytes());
            out.push(b'G');
            out.extend_from_slice(&value.to_be_bytes());
            out.push(0x86);
            put(&mut out);
            out.push(0x86);
            put(&mut out);
        }
        out.push(b'e');
    }
    out.push(b'.');
    out
}

struct Corpus {
    points: Vec<(String, f64, f64)>,
    /// Pickles (no length prefix) as CPython writes them.
    python: Vec<Vec<u8>>,
    /// Framed stream as FrameEncoder writes it.
    ours: Vec<u8>,
}

fn corpus() -> Corpus {
    // The emulation must match what gen.py had Python write.
    let fixture: Vec<(String, f64, f64)> = relay_names(500, 1)
        .into_iter()
        .enumerate()
        .map(|(i, n)| (n, 1_700_000_000.0 + (i % 7) as f64, i as f64 * 0.5))
        .collect();
    let frame = include_bytes!("../tests/fixtures/carbon_relay_py3_500.frame");
    assert_eq!(
        cpython_protocol2(&fixture),
        frame[4..],
        "CPython emulation drifted"
    );

    let points: Vec<(String, f64, f64)> = (0..20)
        .flat_map(|dc| relay_names(500, dc))
        .enumerate()
        .map(|(i, n)| {
            (
                n,
                1_700_000_000.0 + (i / 500) as f64 * 10.0,
                (i % 997) as f64 * 0.25 + 0.1,
            )
        })
        .collect();
    let python = points.chunks(500).map(cpython_protocol2).collect();
    let mut ours = Vec::new();
    FrameEncoder::new().encode(
        points.iter().map(|(p, t, v)| (p.as_str(), *t, *v)),
        &mut ours,
    );
    Corpus {
        points,
        python,
        ours,
    }
}

fn benches(c: &mut Criterion) {
    let corpus = corpus();
    let python_bytes: usize = corpus.python.iter().map(Vec::len).sum();

    let mut g = c.benchmark_group("decode");
    g.throughput(Throughput::Bytes(python_bytes as u64));
    g.bench_function("cpython_protocol2_500", |b| {
        let mut decoder = Decoder::new();
        b.iter(|| {
            let mut n = 0;
            for frame in &corpus.python {
                decoder
                    .decode_with(black_box(frame), |p| {
                        if let Ok(p) = p {
                            n += p.path.len();
                        }
                    })
                    .unwrap();
            }
            n
        })
    });
    g.throughput(Throughput::Bytes(corpus.ours.len() as u64));
    g.bench_function("fluxgate_protocol2_500", |b| {
        let mut decoder = Decoder::new();
        let splitter = FrameSplitter::default();
        b.iter(|| {
            let mut n = 0;
            for frame in splitter.split(black_box(&corpus.ours)) {
                n += decoder.decode(frame.unwrap()).unwrap().points.len();
            }
            n
        })
    });
    g.finish();

    let mut g = c.benchmark_group("encode");
    g.throughput(Throughput::Bytes(corpus.ours.len() as u64));
    g.bench_function("protocol2_500", |b| {
        let encoder = FrameEncoder::new();
        let mut out = Vec::with_capacity(corpus.ours.len());
        b.iter(|| {
            out.clear();
            encoder.encode(
                black_box(&corpus.points)
                    .iter()
                    .map(|(p, t, v)| (p.as_str(), *t, *v)),
                &mut out,
            );
            out.len()
        })
    });
    g.finish();
}

criterion_group! {
    name = pickle;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .sample_size(50);
    targets = benches
}
criterion_main!(pickle);

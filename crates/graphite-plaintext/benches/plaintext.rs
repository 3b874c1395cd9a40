//! Throughput of the hot paths on a relay-like corpus: thousands of distinct
//! `servers.dcN.hostNNNN.<metric>` names, values as collectd/statsd/diamond write them.
//!
//! Run: `cargo bench -p graphite-plaintext --bench plaintext`
//!
//! Times are the benchmark thread's on-CPU time (Linux scheduler accounting), not wall time:
//! the targets are per core, and on a shared machine wall time mostly measures the neighbours.
//! Where `/proc/thread-self/schedstat` is unreadable, wall time is used.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::measurement::{Measurement, ValueFormatter};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use graphite_plaintext::{encode_sample, parse_line, LineSplitter, TaggedPath, Timestamp};

const METRICS: &[&str] = &[
    "cpu.user",
    "cpu.system",
    "cpu.iowait",
    "memory.free",
    "memory.cached",
    "loadavg.01",
    "disk.sda.reads",
    "disk.sda.writes",
    "net.eth0.rx_bytes",
    "net.eth0.tx_bytes",
];

/// xorshift64*: a deterministic corpus without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn value(rng: &mut Rng) -> String {
    match rng.below(20) {
        // counters and gauges as integers
        0..=7 => rng.below(10_000_000).to_string(),
        // short decimals (statsd timers, percentages)
        8..=15 => format!("{}.{}", rng.below(1000), rng.below(100)),
        // collectd's %.15g
        16..=18 => format!("{:.15}", (rng.below(1 << 40) as f64) / (1u64 << 40) as f64)
            .trim_end_matches('0')
            .to_string(),
        // the occasional exponent
        _ => format!("{}e-{}", rng.below(100) as f64 / 10.0, rng.below(9)),
    }
}

/// About `size` bytes of `path value timestamp\n` lines over 4 × 2500 hosts × 10 metrics.
fn corpus(size: usize) -> Vec<u8> {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut out = Vec::with_capacity(size + 128);
    let mut ts = 1_700_000_000u64;
    while out.len() < size {
        let line = format!(
            "servers.dc{}.host{:04}.{} {} {}\n",
            rng.below(4) + 1,
            rng.below(2500),
            METRICS[rng.below(METRICS.len() as u64) as usize],
            value(&mut rng),
            ts
        );
        out.extend_from_slice(line.as_bytes());
        ts += rng.below(2);
    }
    out
}

/// On-CPU time of the calling thread in nanoseconds, from the scheduler's accounting (exact at
/// context switches, otherwise at most one tick stale; samples here last hundreds of ms).
fn thread_cpu_nanos() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    text.split_whitespace().next()?.parse().ok()
}

/// Criterion measurement: thread CPU time, or wall time where that is unavailable.
struct OnCpu;

impl Measurement for OnCpu {
    type Intermediate = (Option<u64>, Instant);
    type Value = Duration;

    fn start(&self) -> Self::Intermediate {
        (thread_cpu_nanos(), Instant::now())
    }

    fn end(&self, (cpu, wall): Self::Intermediate) -> Duration {
        match (cpu, thread_cpu_nanos()) {
            (Some(start), Some(end)) => Duration::from_nanos(end.saturating_sub(start)),
            _ => wall.elapsed(),
        }
    }

    fn add(&self, a: &Duration, b: &Duration) -> Duration {
        *a + *b
    }

    fn zero(&self) -> Duration {
        Duration::ZERO
    }

    fn to_f64(&self, value: &Duration) -> f64 {
        value.as_nanos() as f64
    }

    fn formatter(&self) -> &dyn ValueFormatter {
        &NanosFormatter
    }
}

/// Formats nanoseconds and bytes per second as criterion's wall-time formatter does.
struct NanosFormatter;

impl ValueFormatter for NanosFormatter {
    fn scale_values(&self, typical: f64, values: &mut [f64]) -> &'static str {
        let (factor, unit) = match typical {
            t if t < 1e3 => (1.0, "ns"),
            t if t < 1e6 => (1e-3, "µs"),
            t if t < 1e9 => (1e-6, "ms"),
            _ => (1e-9, "s"),
        };
        values.iter_mut().for_each(|v| *v *= factor);
        unit
    }

    fn scale_throughputs(
        &self,
        typical: f64,
        throughput: &Throughput,
        values: &mut [f64],
    ) -> &'static str {
        let per_second = |n: f64| n * 1e9 / typical;
        let (units, unit) = match *throughput {
            Throughput::Bytes(n) | Throughput::BytesDecimal(n) => {
                let rate = per_second(n as f64);
                match rate {
                    r if r < 1024.0 * 1024.0 => (n as f64 / 1024.0, "KiB/s"),
                    r if r < 1024.0 * 1024.0 * 1024.0 => (n as f64 / (1024.0 * 1024.0), "MiB/s"),
                    _ => (n as f64 / (1024.0 * 1024.0 * 1024.0), "GiB/s"),
                }
            }
            Throughput::Elements(n) => (n as f64, "elem/s"),
        };
        values.iter_mut().for_each(|v| *v = units * 1e9 / *v);
        unit
    }

    fn scale_for_machines(&self, _values: &mut [f64]) -> &'static str {
        "ns"
    }
}

fn bench(c: &mut Criterion<OnCpu>) {
    let input = corpus(4 << 20);
    let lines = input.iter().filter(|&&b| b == b'\n').count();

    let mut group = c.benchmark_group("plaintext");
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .sample_size(20)
        .throughput(Throughput::Bytes(input.len() as u64));

    group.bench_function("split_and_parse_4MiB", |b| {
        let mut splitter = LineSplitter::default();
        b.iter(|| {
            splitter.reset();
            let mut sum = 0.0;
            let mut n = 0usize;
            for line in splitter.lines(black_box(&input), true) {
                let sample = line.and_then(|l| l.parse()).expect("corpus is valid");
                sum += sample.value;
                n += sample.path.len();
                if let Timestamp::Seconds(t) = sample.timestamp {
                    sum += t;
                }
            }
            black_box((sum, n))
        })
    });

    // The same lines already split, to see what the field parsing alone costs.
    let split: Vec<&[u8]> = input
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    group.bench_function("parse_line_4MiB", |b| {
        b.iter(|| {
            let mut sum = 0.0;
            for line in &split {
                sum += parse_line(black_box(line)).expect("corpus is valid").value;
            }
            black_box(sum)
        })
    });

    // Encoding the parsed samples back: throughput counted in output bytes.
    let mut samples: Vec<(String, f64, i64)> = Vec::with_capacity(lines);
    for line in LineSplitter::default().lines(&input, true) {
        let s = line.unwrap().parse().unwrap();
        samples.push((s.path.to_owned(), s.value, s.timestamp.unix_seconds(0)));
    }
    let mut out = Vec::with_capacity(input.len() * 2);
    for (path, value, ts) in &samples {
        encode_sample(path, *value, *ts, &mut out).unwrap();
    }
    group.throughput(Throughput::Bytes(out.len() as u64));
    group.bench_function("encode_4MiB", |b| {
        b.iter(|| {
            out.clear();
            for (path, value, ts) in &samples {
                encode_sample(black_box(path), *value, *ts, &mut out).unwrap();
            }
            black_box(out.len())
        })
    });

    // Tagged series normalization (collectd/statsd style, unsorted tags).
    let tagged: Vec<String> = (0..20_000)
        .map(|i| {
            format!(
                "disk.used;host=host{:04};dc=dc{};mount=/var/{};env=prod",
                i % 2500,
                i % 4,
                i % 7
            )
        })
        .collect();
    let tagged_bytes: usize = tagged.iter().map(|s| s.len()).sum();
    group.throughput(Throughput::Bytes(tagged_bytes as u64));
    group.bench_function("normalize_tagged", |b| {
        let mut buf = String::with_capacity(256);
        b.iter(|| {
            let mut n = 0;
            for path in &tagged {
                buf.clear();
                TaggedPath::parse(black_box(path))
                    .unwrap()
                    .write_normalized(&mut buf);
                n += buf.len();
            }
            black_box(n)
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().with_measurement(OnCpu);
    targets = bench
}
criterion_main!(benches);

//! Encoding name segments as a relay does: mostly ASCII host/metric components (the
//! borrowed fast path), plus a unicode corpus for the nameprep + punycode path.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use metric_name::{decode, encode, encode_with_into, join_with_into, Encoding};

/// Components of `servers.dcN.hostNNNN.<group>.<metric>` paths: thousands of distinct
/// host names, a few dozen metric names.
fn relay_segments() -> Vec<String> {
    let groups = ["cpu", "memory", "disk", "net", "load", "nginx", "postgres"];
    let metrics = [
        "user",
        "system",
        "idle",
        "iowait",
        "used_bytes",
        "free",
        "rx_bytes",
        "tx_bytes",
        "requests-per-sec",
        "p99_latency_ms",
    ];
    let mut out = Vec::new();
    for dc in 1..=4 {
        for host in 0..1000 {
            out.push("servers".to_owned());
            out.push(format!("dc{dc}"));
            out.push(format!("host{host:04}"));
            out.push(groups[host % groups.len()].to_owned());
            out.push(metrics[(host * 7 + dc) % metrics.len()].to_owned());
        }
    }
    out
}

fn relay_paths() -> Vec<Vec<String>> {
    relay_segments().chunks(5).map(<[String]>::to_vec).collect()
}

fn unicode_segments() -> Vec<String> {
    let words = [
        "сервер",
        "пример",
        "καλημέρα",
        "東京",
        "서울",
        "bücher",
        "Straße",
        "münchen",
        "🚀",
        "שלום",
        "مرحبا",
        "ＦＵＬＬ",
    ];
    (0..2000)
        .map(|i| format!("{}{}", words[i % words.len()], i))
        .collect()
}

fn bytes(segments: &[String]) -> u64 {
    segments.iter().map(|s| s.len() as u64).sum()
}

fn bench(c: &mut Criterion) {
    let ascii = relay_segments();
    let unicode = unicode_segments();
    let encoded: Vec<String> = unicode
        .iter()
        .map(|s| encode(s).map(|e| e.into_owned()).unwrap_or_default())
        .collect();
    let paths = relay_paths();

    let mut group = c.benchmark_group("metric-name");
    group
        .sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));

    group.throughput(Throughput::Bytes(bytes(&ascii)));
    group.bench_function("encode/ascii_segments", |b| {
        b.iter(|| {
            let mut n = 0;
            for s in &ascii {
                n += encode(black_box(s)).map_or(0, |e| e.len());
            }
            n
        })
    });
    group.bench_function("join_into/ascii_paths", |b| {
        let mut out = String::with_capacity(64);
        b.iter(|| {
            let mut n = 0;
            for p in &paths {
                out.clear();
                if join_with_into(Encoding::Idna, black_box(p), &mut out).is_ok() {
                    n += out.len();
                }
            }
            n
        })
    });
    group.bench_function("encode_into/ascii_segments_punycode", |b| {
        let mut out = String::with_capacity(64);
        b.iter(|| {
            let mut n = 0;
            for s in &ascii {
                out.clear();
                if encode_with_into(Encoding::Punycode, black_box(s), &mut out).is_ok() {
                    n += out.len();
                }
            }
            n
        })
    });

    group.throughput(Throughput::Bytes(bytes(&unicode)));
    group.bench_function("encode/unicode_segments", |b| {
        b.iter(|| {
            let mut n = 0;
            for s in &unicode {
                n += encode(black_box(s)).map_or(0, |e| e.len());
            }
            n
        })
    });
    group.throughput(Throughput::Bytes(bytes(&encoded)));
    group.bench_function("decode/unicode_segments", |b| {
        b.iter(|| {
            let mut n = 0;
            for s in &encoded {
                n += decode(black_box(s)).map_or(0, |e| e.len());
            }
            n
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

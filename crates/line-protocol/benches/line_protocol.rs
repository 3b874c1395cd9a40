//! Parse and write throughput on a relay's traffic: thousands of distinct series, the usual
//! Telegraf shapes and graphite-translated points.

use std::hint::black_box;
use std::time::Duration;

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use line_protocol::{parse_lines, write_line, LineProtocolCodec, LineWriter, WriteOptions};
use tokio_util::codec::Decoder;

/// About 1 MiB of line protocol: 70% Telegraf-style `cpu`, 20% graphite-translated, 10%
/// mixed types.
fn corpus() -> String {
    let mut s = String::with_capacity(1 << 20);
    let mut i: u64 = 0;
    while s.len() < 1 << 20 {
        let host = i % 10_000;
        let dc = i % 8 + 1;
        let ts = 1_700_000_000_000_000_000u64 + i * 10_000_000_000;
        let user = (i % 1000) as f64 / 8.0;
        let system = (i % 317) as f64 / 100.0;
        match i % 10 {
            0..=6 => s.push_str(&format!(
                "cpu,host=server{host:04},region=dc{dc} usage_user={user},usage_system={system} {ts}\n"
            )),
            7 | 8 => s.push_str(&format!(
                "servers.dc{dc}.host{host:04}.cpu.user,source=graphite value={user} {ts}\n"
            )),
            _ => s.push_str(&format!(
                "net,host=server{host:04},interface=eth{dc} bytes_recv={}i,bytes_sent={}u,up=true,state=\"ok\" {ts}\n",
                i * 1500,
                i * 700
            )),
        }
        i += 1;
    }
    s
}

fn bench(c: &mut Criterion) {
    let body = corpus();
    let lines: Vec<_> = parse_lines(&body).map(Result::unwrap).collect();
    let mut written = Vec::with_capacity(body.len() + 4096);
    for l in &lines {
        write_line(&mut written, l, &WriteOptions::default()).unwrap();
    }

    let mut g = c.benchmark_group("line_protocol");
    g.warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20);

    g.throughput(Throughput::Bytes(body.len() as u64));
    g.bench_function("parse", |b| {
        b.iter(|| {
            let mut n = 0usize;
            for l in parse_lines(black_box(&body)) {
                n += l.unwrap().fields.len();
            }
            n
        })
    });

    g.bench_function("codec_decode_and_parse", |b| {
        b.iter(|| {
            let mut codec = LineProtocolCodec::new();
            let mut buf = BytesMut::from(black_box(body.as_str()));
            let mut n = 0usize;
            while let Some(item) = codec.decode_eof(&mut buf).unwrap() {
                n += item.unwrap().parse().unwrap().fields.len();
            }
            n
        })
    });

    g.throughput(Throughput::Bytes(written.len() as u64));
    let mut out = Vec::with_capacity(written.len() + 4096);
    g.bench_function("write_parsed", |b| {
        b.iter(|| {
            out.clear();
            for l in black_box(&lines) {
                write_line(&mut out, l, &WriteOptions::default()).unwrap();
            }
            out.len()
        })
    });

    // The graphite -> influx path: parts in hand, one builder call per point.
    let parts: Vec<(String, String, u32, f64, i64)> = (0..20_000u64)
        .map(|i| {
            (
                format!("server{:04}", i % 10_000),
                format!("dc{}", i % 8 + 1),
                (i % 5) as u32,
                (i % 1000) as f64 / 8.0,
                1_700_000_000_000_000_000 + i as i64 * 10_000_000_000,
            )
        })
        .collect();
    let mut built = Vec::new();
    let build = |out: &mut Vec<u8>| {
        for (host, dc, metric, value, ts) in &parts {
            let field = ["user", "system", "idle", "iowait", "steal"][*metric as usize];
            LineWriter::new(out)
                .measurement("cpu")
                .tag("host", host)
                .tag("region", dc)
                .field_f64(field, *value)
                .timestamp(*ts)
                .finish()
                .unwrap();
        }
    };
    build(&mut built);
    g.throughput(Throughput::Bytes(built.len() as u64));
    g.bench_function("write_builder", |b| {
        b.iter(|| {
            built.clear();
            build(black_box(&mut built));
            built.len()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

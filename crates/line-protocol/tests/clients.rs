//! Bodies as the real clients write them (aioinflux, influxdb-python, influxdb-client,
//! Telegraf), parsed and re-serialised.

use line_protocol::{parse_lines, FieldValue, ParsedLine, Precision, WriteOptions};

fn all(body: &str) -> Vec<ParsedLine<'_>> {
    parse_lines(body)
        .map(|r| r.unwrap_or_else(|e| panic!("{e}")))
        .collect()
}

fn canonical(lines: &[ParsedLine<'_>]) -> String {
    let mut out = Vec::new();
    for l in lines {
        l.write_to(&mut out, &WriteOptions { sort_tags: true })
            .unwrap();
    }
    String::from_utf8(out).unwrap()
}

#[test]
fn aioinflux() {
    // No precision (ns), no final newline, `True`/`False`, and a trailing space after a point
    // without a timestamp.
    let body = "cpu,host=server\\ 01,region=eu cpu_load=0.43,busy=True,procs=12i \n\
                cpu,host=server\\ 02,region=eu cpu_load=0.5,busy=False,note=\"say \\\"hi\\\"\" 1700000000000000000";
    let lines = all(body);
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0].tag("host").unwrap(), "server 01");
    assert_eq!(lines[0].field("busy"), Some(&FieldValue::Bool(true)));
    assert_eq!(lines[0].field("procs"), Some(&FieldValue::I64(12)));
    assert_eq!(lines[0].timestamp, None);
    assert_eq!(
        lines[1].field("note"),
        Some(&FieldValue::String("say \"hi\"".into()))
    );
    assert_eq!(
        canonical(&lines),
        "cpu,host=server\\ 01,region=eu cpu_load=0.43,busy=true,procs=12i\n\
         cpu,host=server\\ 02,region=eu cpu_load=0.5,busy=false,note=\"say \\\"hi\\\"\" 1700000000000000000\n"
    );
}

#[test]
fn influxdb_python() {
    // make_lines: sorted tags, `repr` floats (`1e-05`), newline-terminated, precision=s.
    // It escapes a backslash in a tag as `\\`, which InfluxDB 1.x keeps as two backslashes.
    let body = "cpu_load_short,host=server01,path=C:\\\\temp,region=us-west value=0.64,tiny=1e-05,n=3i 1257894000\n\
                events,type=deploy text=\"line one\\nline two\" 1257894001\n";
    let lines: Vec<_> = parse_lines(body)
        .precision(Precision::Seconds)
        .map(Result::unwrap)
        .collect();
    assert_eq!(lines[0].tag("path").unwrap(), "C:\\\\temp");
    assert_eq!(lines[0].field("tiny"), Some(&FieldValue::F64(1e-5)));
    assert_eq!(
        lines[0].timestamp_nanos(Precision::Seconds).unwrap(),
        Some(1_257_894_000_000_000_000)
    );
    // `\n` in a string stays a backslash and an `n`, as InfluxDB stores it.
    assert_eq!(
        lines[1].field("text"),
        Some(&FieldValue::String("line one\\nline two".into()))
    );
    // The writer escapes every backslash in a string; InfluxDB reads `\\n` back as `\n`.
    assert_eq!(
        canonical(&lines),
        body.replace("1e-05", "0.00001")
            .replace("one\\nline", "one\\\\nline")
    );
}

#[test]
fn influxdb_client_v2() {
    let body = "mem,host=host1 used_percent=23.43234543,available=4096i,active=true 1556896326\n\
                mem,host=host2 used_percent=26.81522361,available=8192i,active=false 1556896326";
    let lines = all(body);
    assert_eq!(lines.len(), 2);
    assert_eq!(
        lines[1].field("used_percent"),
        Some(&FieldValue::F64(26.81522361))
    );
    assert_eq!(canonical(&lines), format!("{body}\n"));
}

#[test]
fn telegraf() {
    let body = "cpu,cpu=cpu-total,host=telegraf-host usage_guest=0,usage_idle=97.02040816326532,usage_iowait=0.25 1700000000000000000\n\
                net,host=telegraf-host,interface=eth0 bytes_recv=12345678i,bytes_sent=23456u,err_in=0i 1700000000000000000\n\
                system,host=telegraf-host uptime_format=\" 5 days, 20:27\",load1=0.5 1700000000000000000\n\
                disk,device=sda1,fstype=ext4,host=telegraf-host,mode=rw,path=/ free=12345i,used_percent=42.5 1700000000000000000\n";
    let lines = all(body);
    assert_eq!(lines.len(), 4);
    assert_eq!(lines[1].field("bytes_sent"), Some(&FieldValue::U64(23456)));
    assert_eq!(
        lines[2].field("uptime_format"),
        Some(&FieldValue::String(" 5 days, 20:27".into()))
    );
    assert_eq!(lines[3].tag("path").unwrap(), "/");
    assert_eq!(canonical(&lines), body);
}

#[test]
fn graphite_translated() {
    // What InfluxDB's graphite templates make of `servers.dc1.host0001.cpu.user 12.5 1700000000`.
    let body = "cpu,dc=dc1,host=host0001 user=12.5 1700000000000000000\n\
                loadavg.10,host=localhost,resource=cpu value=0.25 1700000000000000000\n";
    let lines = all(body);
    assert_eq!(lines[1].measurement, "loadavg.10");
    assert_eq!(canonical(&lines), body);
}

//! `[listeners.line_udp]` against InfluxDB 1.x's own `[[udp]]` input: the same datagrams go
//! to influxd's UDP service (database `ref`) and through fluxgate into the same influxd
//! (database `fg`), with the same precision; both databases must hold the same points. A bad
//! line is counted, and unlike influxd (which drops its whole datagram) the good lines beside
//! it still land.

use std::net::UdpSocket;
use std::time::Duration;

use fluxgate_e2e::{free_port, free_udp_port, loopback, wait_metric, Gateway, InfluxDb};

#[test]
fn line_udp_writes_what_influxdbs_udp_input_writes() {
    let reference = loopback(free_udp_port());
    let influx = InfluxDb::builder()
        .extra_config(&format!(
            "[[udp]]\n  enabled = true\n  bind-address = \"{reference}\"\n  database = \"ref\"\n  \
             precision = \"s\"\n  batch-size = 100\n  batch-timeout = \"100ms\"\n"
        ))
        .start();
    influx.create_database("fg");
    let input = loopback(free_udp_port());
    let http = loopback(free_port());
    let config = format!(
        "shutdown_timeout = \"1s\"\n\n\
         [listeners.http]\naddress = \"{http}\"\n\n\
         [listeners.line_udp]\nudp = \"{input}\"\ndatabase = \"fg\"\nprecision = \"s\"\n\
         batch_size = 100\nbatch_timeout = \"100ms\"\n\n\
         [[outputs.influxdb]]\nname = \"influx\"\nurl = \"{}\"\ndatabase = \"unused\"\n\
         flush_interval = \"100ms\"\n",
        influx.url()
    );
    let gateway = Gateway::start(&config, http);

    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let datagrams = [
        "cpu,host=a,region=eu usage_user=1.5,usage_system=2i 1700000000\n\
         cpu,host=b usage_user=3 1700000001\n",
        "mem,host=a used=12345i,free=1.25e3,ok=true,state=\"fine\" 1700000002",
        "disk,path=/var\\ log,host=a free=10i 1700000003\n\n\
         escaped\\,name,tag\\=k=v\\ x field\\ name=\"quote \\\" inside\" 1700000004\n",
    ];
    for d in datagrams {
        sock.send_to(d.as_bytes(), reference)
            .expect("send to influxd");
        sock.send_to(d.as_bytes(), input).expect("send to fluxgate");
    }
    let want = influx.wait_exact_points("ref", 5, Duration::from_secs(20));
    let got = influx.wait_exact_points("fg", 5, Duration::from_secs(20));
    assert_eq!(got, want);

    // One bad line: fluxgate counts it and writes the good one beside it.
    sock.send_to(b"good value=1 1700000005\nbad line without fields\n", input)
        .expect("send");
    wait_metric(
        &gateway,
        "fluxgate_rejected_total",
        &[("listener", "line_udp"), ("reason", "invalid_line")],
        1.0,
    );
    let got = influx.wait_exact_points("fg", 6, Duration::from_secs(20));
    assert!(got.iter().any(|p| p.measurement == "good"), "{got:#?}");
    assert_eq!(
        gateway.metric("fluxgate_received_total", &[("listener", "line_udp")]),
        Some(6.0)
    );
    assert_eq!(
        gateway
            .metric(
                "fluxgate_udp_receive_drops_total",
                &[("listener", "line_udp")]
            )
            .unwrap_or(0.0),
        0.0
    );
}

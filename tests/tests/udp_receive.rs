//! UDP receive buffers: what the kernel drops when a listener's socket buffer overflows is
//! counted (`fluxgate_udp_receive_drops_total`), and a `recv_buffer_bytes` the kernel cannot
//! grant is reported with the sysctl that limits it.

use std::net::UdpSocket;
use std::time::Duration;

use fluxgate_e2e::{eventually, free_port, free_udp_port, loopback, metric, Gateway};

#[test]
fn datagrams_the_kernel_drops_are_counted_and_a_small_buffer_is_reported() {
    let udp = loopback(free_udp_port());
    let statsd = loopback(free_udp_port());
    let http = loopback(free_port());
    // Nothing listens at the destination: the output's small queue fills, the UDP listener
    // waits for room, and its (tiny) socket buffer overflows.
    let nowhere = loopback(free_port());
    let config = format!(
        "shutdown_timeout = \"1s\"\n\n\
         [listeners.http]\naddress = \"{http}\"\n\n\
         [listeners.plaintext]\nudp = \"{udp}\"\nrecv_buffer_bytes = 1\n\n\
         [listeners.statsd]\nudp = \"{statsd}\"\nrecv_buffer_bytes = 1073741824\n\n\
         [[outputs.graphite]]\nname = \"carbon\"\nprotocol = \"plaintext\"\ncluster = \"forward\"\n\
         destinations = [\"{nowhere}\"]\nqueue_points = 10\nbatch_size = 10\nstall_timeout = \"60s\"\n"
    );
    let gateway = Gateway::start(&config, http);
    let rmem_max = std::fs::read_to_string("/proc/sys/net/core/rmem_max")
        .expect("net.core.rmem_max")
        .trim()
        .parse::<u64>()
        .expect("a number");
    if rmem_max < 1 << 30 {
        eventually(Duration::from_secs(5), || {
            let log = gateway.log();
            if log.contains("net.core.rmem_max") && log.contains("listener=\"statsd\"") {
                Ok(())
            } else {
                Err(format!(
                    "no warning naming net.core.rmem_max in the log:\n{log}"
                ))
            }
        });
    }
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let line = b"app.udp.flood 1 1700000000\n";
    for _ in 0..5000 {
        sock.send_to(line, udp).expect("send_to");
    }
    eventually(Duration::from_secs(10), || {
        let drops = metric(
            &gateway,
            "fluxgate_udp_receive_drops_total",
            &[("listener", "plaintext_udp")],
        );
        if drops > 0.0 {
            Ok(())
        } else {
            Err("no kernel drops counted".to_owned())
        }
    });
}

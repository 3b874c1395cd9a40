//! What the UDP listeners (Graphite plaintext, StatsD, line protocol) share: binding with a
//! receive buffer large enough for bursts, and counting what the kernel dropped.
//!
//! A UDP sender is never pushed back: when the gateway falls behind, datagrams pile up in the
//! socket's receive buffer and, once it is full, the kernel drops them. The buffer is the only
//! slack there is, so it is asked for explicitly (`recv_buffer_bytes`, SO_RCVBUF), and the
//! kernel's drop count for the socket (the `drops` column of `/proc/net/udp`) is exported as
//! `fluxgate_udp_receive_drops_total{listener}`, so a loss is seen, not guessed.

use std::{net::SocketAddr, os::fd::AsRawFd, sync::Arc, time::Duration};

use prometheus::IntCounter;
use tokio::net::UdpSocket;
use tracing::warn;

use super::ListenerCtx;
use crate::warn_limited;

/// The default `recv_buffer_bytes`: room for about 80,000 typical 100-byte lines, a burst of
/// a fraction of a second at high rates.
pub const DEFAULT_RECV_BUFFER: usize = 8 << 20;

/// Binds a UDP socket asking for a receive buffer of `recv_buffer` bytes (0: the system's
/// default). Linux caps the request at `net.core.rmem_max`: when it gives less than asked, a
/// warning says so and names the sysctl.
pub fn bind(listener: &str, addr: SocketAddr, recv_buffer: usize) -> std::io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if recv_buffer > 0 {
        socket.set_recv_buffer_size(recv_buffer)?;
        // Linux reports twice what it granted (the doubling covers its bookkeeping).
        let granted = socket.recv_buffer_size()? / 2;
        if granted < recv_buffer {
            warn!(
                listener,
                requested = recv_buffer,
                granted,
                "the kernel gave a smaller UDP receive buffer than recv_buffer_bytes asks for: \
                 raise net.core.rmem_max (sysctl -w net.core.rmem_max={recv_buffer}) to take bursts without loss"
            );
        }
    }
    socket.bind(&addr.into())?;
    socket.set_nonblocking(true)?;
    UdpSocket::from_std(socket.into())
}

/// How often the kernel's drop count is read.
const DROPS_EVERY: Duration = Duration::from_secs(1);

/// Follows the kernel's count of datagrams dropped on `socket` (full receive buffer) into
/// `fluxgate_udp_receive_drops_total{listener}`, once per [`DROPS_EVERY`], until the listener
/// stops. A task of its own: drops happen exactly while the receive loop is held up (waiting
/// for room in the pipeline), so it must not be the one that counts them.
pub async fn follow_drops(socket: Arc<UdpSocket>, ctx: Arc<ListenerCtx>) {
    let counter: IntCounter = ctx.metrics.udp_receive_drops.with_label_values(&[ctx.name]);
    let Some(inode) = socket_inode(socket.as_raw_fd()) else {
        return;
    };
    // What the socket dropped before (a listener that took over the socket on reload) was
    // counted by its predecessor.
    let mut seen = kernel_drops(inode).unwrap_or(0);
    let mut ticks = tokio::time::interval(DROPS_EVERY);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = ctx.stop_accepting.cancelled() => return,
        }
        let Some(now) = kernel_drops(inode) else {
            continue;
        };
        if now > seen {
            counter.inc_by(now - seen);
            warn_limited!(
                ctx.log_limit,
                listener = ctx.name,
                dropped = now - seen,
                "the kernel dropped datagrams: the UDP receive buffer was full \
                 (raise recv_buffer_bytes and net.core.rmem_max)"
            );
        }
        seen = now;
    }
}

/// The inode of a socket, from `/proc/self/fd/N` (`socket:[12345]`).
fn socket_inode(fd: i32) -> Option<u64> {
    let link = std::fs::read_link(format!("/proc/self/fd/{fd}")).ok()?;
    let link = link.to_str()?;
    link.strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// The `drops` column of the socket with this inode in `/proc/net/udp` or `/proc/net/udp6`.
fn kernel_drops(inode: u64) -> Option<u64> {
    ["/proc/net/udp", "/proc/net/udp6"].iter().find_map(|path| {
        let table = std::fs::read_to_string(path).ok()?;
        drops_in_table(&table, inode)
    })
}

/// Parses one `/proc/net/udp` table: `sl local rem st tx:rx tr:when retr uid timeout inode
/// ref pointer drops`.
fn drops_in_table(table: &str, inode: u64) -> Option<u64> {
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 13 || fields[9].parse::<u64>().ok()? != inode {
            return None;
        }
        fields[12].parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_drops_column_of_the_socket() {
        let table = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n\
          1234: 0100007F:1F90 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 4242 2 0000000000000000 17\n\
          1235: 0100007F:1F91 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 4243 2 0000000000000000 0\n";
        assert_eq!(drops_in_table(table, 4242), Some(17));
        assert_eq!(drops_in_table(table, 4243), Some(0));
        assert_eq!(drops_in_table(table, 1), None);
    }

    #[tokio::test]
    async fn finds_its_own_socket() {
        let s = bind("test", "127.0.0.1:0".parse().unwrap(), 1 << 16).unwrap();
        let inode = socket_inode(s.as_raw_fd()).expect("an inode");
        assert_eq!(kernel_drops(inode), Some(0));
    }
}

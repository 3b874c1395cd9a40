//! Loopback ports, readiness checks, and a TCP listener that records what a sender delivered.

use std::collections::BTreeSet;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::process::POLL;

/// Ports handed out by this process. The kernel may offer a port again as soon as the probe
/// socket is closed, and two fixtures starting in parallel must never be given the same one.
static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// The first candidate port that was not handed out before and that `free` finds free, now
/// handed out. Probing and handing out happen under one lock, and a port handed out is never
/// probed again: a probe binds the port for a moment, and would make the bind of the fixture
/// it was given fail with "address in use".
fn take_port(free: impl Fn(u16) -> bool) -> Option<u16> {
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(PoisonError::into_inner);
    let port = candidates().find(|&port| !handed_out.contains(&port) && free(port))?;
    handed_out.insert(port);
    Some(port)
}

/// The ports the kernel picks from for outgoing connections and `bind(0)`
/// (`net.ipv4.ip_local_port_range`). A port probed free there can be taken by any outgoing
/// connection before the fixture it was meant for binds it, so fixtures get ports below it.
fn ephemeral_range() -> (u16, u16) {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| {
            let mut parts = text.split_whitespace().map(str::parse::<u16>);
            Some((parts.next()?.ok()?, parts.next()?.ok()?))
        })
        .unwrap_or((32768, 60999))
}

/// Candidate ports outside the ephemeral range, starting at a place that differs per process so
/// that test binaries run one after another do not walk the same ports.
fn candidates() -> impl Iterator<Item = u16> {
    let (low, high) = ephemeral_range();
    let (start, end) = if low > 12_000 {
        (10_000u32, u32::from(low))
    } else {
        (u32::from(high) + 1, 65_535)
    };
    let span = end - start;
    let seed = std::process::id().wrapping_mul(2_654_435_761)
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
    let offset = seed % span;
    (0..span).map(move |i| u16::try_from(start + (offset + i) % span).unwrap_or(u16::MAX))
}

/// A TCP port on 127.0.0.1 that nothing listens on right now, that no other fixture of this
/// test process has been given, and that the kernel will not pick for an outgoing connection.
///
/// # Panics
/// When no port is free.
pub fn free_port() -> u16 {
    take_port(|port| TcpListener::bind(("127.0.0.1", port)).is_ok())
        .unwrap_or_else(|| panic!("no free TCP port on 127.0.0.1 below the ephemeral range"))
}

/// A UDP port on 127.0.0.1 that is free right now, and also free for TCP, so that a listener
/// serving both protocols on one port (as carbon and fluxgate do) can be given it.
///
/// # Panics
/// When the kernel cannot hand out a port.
pub fn free_udp_port() -> u16 {
    take_port(|port| {
        UdpSocket::bind(("127.0.0.1", port)).is_ok()
            && TcpListener::bind(("127.0.0.1", port)).is_ok()
    })
    .unwrap_or_else(|| panic!("no free UDP and TCP port on 127.0.0.1 below the ephemeral range"))
}

/// `127.0.0.1:<port>`.
pub fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Polls until a TCP connection to `addr` succeeds; false if `timeout` passes first.
pub fn wait_for_tcp(addr: SocketAddr, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(POLL);
    }
}

/// True when something accepts TCP connections on `addr` right now.
pub fn tcp_is_listening(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}

/// Connects, writes all of `bytes`, and closes the sending side, then waits (up to 10 s) for
/// the peer to close so that the receiver has read everything before this returns.
///
/// Waiting for the peer's close matters: closing a socket with unread data in its receive
/// buffer makes the kernel send a RST, which can discard what was just written.
///
/// # Panics
/// When the connection or the write fails.
pub fn send_tcp(addr: SocketAddr, bytes: &[u8]) {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .unwrap_or_else(|err| panic!("cannot connect to {addr}: {err}"));
    stream
        .write_all(bytes)
        .unwrap_or_else(|err| panic!("cannot write {} bytes to {addr}: {err}", bytes.len()));
    let _ = stream.shutdown(Shutdown::Write);
    // A loaded machine can take seconds to read and hand on a large write; a server that
    // keeps the connection open is given up on after this long.
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut sink = [0_u8; 1024];
    while matches!(stream.read(&mut sink), Ok(n) if n > 0) {}
}

/// Sends one UDP datagram to `addr` from an ephemeral loopback port.
///
/// # Panics
/// When the datagram cannot be sent.
pub fn send_udp(addr: SocketAddr, datagram: &[u8]) {
    let socket = UdpSocket::bind("127.0.0.1:0")
        .unwrap_or_else(|err| panic!("cannot bind a UDP socket on 127.0.0.1: {err}"));
    socket
        .send_to(datagram, addr)
        .unwrap_or_else(|err| panic!("cannot send {} bytes to udp {addr}: {err}", datagram.len()));
}

/// Sends `lines` as Graphite plaintext, a newline after each.
pub fn send_lines<I, S>(addr: SocketAddr, lines: I)
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let mut payload = String::new();
    for line in lines {
        payload.push_str(line.as_ref());
        payload.push('\n');
    }
    send_tcp(addr, payload.as_bytes());
}

/// Per-connection receive buffers, in accept order.
type Connections = Arc<Mutex<Vec<Arc<Mutex<Vec<u8>>>>>>;

/// A TCP server on a free loopback port that accepts every connection and records the bytes
/// each one delivered: the stand-in destination for relays under test (carbon-relay,
/// carbon-c-relay, fluxgate's graphite outputs).
///
/// Connections are kept apart so that framed protocols (pickle) decode per connection.
#[derive(Debug)]
pub struct TcpCapture {
    addr: SocketAddr,
    connections: Connections,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl TcpCapture {
    /// Listens on a free port of 127.0.0.1.
    pub fn start() -> Self {
        Self::bind(loopback(free_port()))
    }

    /// Listens on `addr`, e.g. the address a stopped capture had, to bring a destination back.
    ///
    /// # Panics
    /// When `addr` cannot be bound.
    pub fn bind(addr: SocketAddr) -> Self {
        let listener =
            TcpListener::bind(addr).unwrap_or_else(|err| panic!("cannot listen on {addr}: {err}"));
        listener
            .set_nonblocking(true)
            .unwrap_or_else(|err| panic!("cannot make the listener non-blocking: {err}"));
        let addr = listener.local_addr().expect("listener has an address");
        let connections: Connections = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let acceptor = {
            let connections = Arc::clone(&connections);
            let stop = Arc::clone(&stop);
            thread::spawn(move || accept_loop(&listener, &connections, &stop))
        };
        TcpCapture {
            addr,
            connections,
            stop,
            acceptor: Some(acceptor),
        }
    }

    /// Where senders should connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// How many connections were accepted so far.
    pub fn connection_count(&self) -> usize {
        lock(&self.connections).len()
    }

    /// What each connection delivered so far, in accept order.
    pub fn connections(&self) -> Vec<Vec<u8>> {
        lock(&self.connections)
            .iter()
            .map(|conn| lock(conn).clone())
            .collect()
    }

    /// Everything received, connections concatenated in accept order.
    pub fn bytes(&self) -> Vec<u8> {
        self.connections().concat()
    }

    /// Everything received as text lines (Graphite plaintext), connections in accept order.
    /// A final line without its newline yet is left out: it may still be arriving.
    pub fn lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        for conn in self.connections() {
            let text = String::from_utf8_lossy(&conn).into_owned();
            let complete = text.rfind('\n').map_or("", |end| &text[..end]);
            lines.extend(complete.lines().map(str::to_owned));
        }
        lines
    }

    /// Polls until `ready` holds for the per-connection bytes and returns them.
    ///
    /// # Panics
    /// After `timeout`, describing `what` and what was received.
    pub fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        mut ready: impl FnMut(&[Vec<u8>]) -> bool,
    ) -> Vec<Vec<u8>> {
        let deadline = Instant::now() + timeout;
        loop {
            let connections = self.connections();
            if ready(&connections) {
                return connections;
            }
            if Instant::now() >= deadline {
                let received: usize = connections.iter().map(Vec::len).sum();
                let preview = String::from_utf8_lossy(&connections.concat())
                    .chars()
                    .take(2000)
                    .collect::<String>();
                panic!(
                    "timed out after {timeout:?} waiting for {what} on {}: {} connection(s), \
                     {received} byte(s) received:\n{preview}",
                    self.addr,
                    connections.len()
                );
            }
            thread::sleep(POLL);
        }
    }

    /// Waits until at least `n` complete plaintext lines arrived and returns all of them.
    pub fn wait_for_lines(&self, n: usize, timeout: Duration) -> Vec<String> {
        let what = format!("{n} line(s)");
        self.wait_for(&what, timeout, |connections| {
            connections
                .iter()
                .map(|conn| conn.iter().filter(|&&b| b == b'\n').count())
                .sum::<usize>()
                >= n
        });
        self.lines()
    }

    /// Waits until at least `n` datapoints arrived in complete pickle frames and returns the
    /// frames of every connection, in order.
    pub fn wait_for_pickle_points(
        &self,
        n: usize,
        timeout: Duration,
    ) -> Vec<Vec<crate::pickle::PickledPoint>> {
        let what = format!("{n} pickled datapoint(s)");
        let connections = self.wait_for(&what, timeout, |connections| {
            connections
                .iter()
                .map(|conn| {
                    crate::pickle::decode_pickle_frames(conn)
                        .iter()
                        .map(Vec::len)
                        .sum::<usize>()
                })
                .sum::<usize>()
                >= n
        });
        connections
            .iter()
            .flat_map(|conn| crate::pickle::decode_pickle_frames(conn))
            .collect()
    }
}

impl Drop for TcpCapture {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn accept_loop(listener: &TcpListener, connections: &Connections, stop: &Arc<AtomicBool>) {
    let mut readers = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => {
                let buffer: Arc<Mutex<Vec<u8>>> = Arc::default();
                lock(connections).push(Arc::clone(&buffer));
                let stop = Arc::clone(stop);
                readers.push(thread::spawn(move || read_loop(stream, &buffer, &stop)));
            }
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => thread::sleep(POLL),
            Err(_) => thread::sleep(POLL),
        }
    }
    for reader in readers {
        let _ = reader.join();
    }
}

fn read_loop(mut stream: TcpStream, buffer: &Mutex<Vec<u8>>, stop: &AtomicBool) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_millis(50)));
    let mut chunk = vec![0_u8; 64 * 1024];
    while !stop.load(Ordering::SeqCst) {
        match stream.read(&mut chunk) {
            Ok(0) => return,
            Ok(n) => lock(buffer).extend_from_slice(&chunk[..n]),
            Err(err)
                if matches!(
                    err.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) => {}
            Err(_) => return,
        }
    }
}

/// A sender's connection: connected within 5 s, writes that block for more than 30 s fail
/// (a gateway pushing back longer than that is a test failure, not a hang).
pub fn connect_sender(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .unwrap_or_else(|err| panic!("cannot connect to {addr}: {err}"));
    stream
        .set_write_timeout(Some(Duration::from_secs(30)))
        .expect("set write timeout");
    stream
}

/// Closes our side and waits (at most 10 s) for the gateway to close its side: it has then
/// read everything that was sent.
pub fn finish_sender(mut stream: TcpStream) {
    let _ = stream.shutdown(Shutdown::Write);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut sink = [0_u8; 1024];
    while matches!(stream.read(&mut sink), Ok(n) if n > 0) {}
}

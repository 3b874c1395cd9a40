//! The running gateway: builds outputs and listeners from a config, serves until SIGTERM
//! (then drains within `shutdown_timeout`), and reloads on SIGHUP.
//!
//! Reload restarts only what changed, and never waits inside the signal loop. The new
//! pipeline is published before anything old is retired, so a sender waiting on an output
//! that is being replaced moves its points to the replacement. A changed output that keeps its
//! upstream hands what it has not sent to its successor; a removed one delivers what it
//! queued, for at most `shutdown_timeout`, after which what is left is counted as dropped
//! (`reload`). A changed listener takes over the old one's socket when its address did not
//! change (so nothing is refused in between); the old one stops accepting, and its open
//! Graphite connections keep being served until their senders close them.
//!
//! Shutdown: stop accepting, let connections hand on what they read (waiting for room as
//! they would), close the queues, let the outputs deliver, all within one `shutdown_timeout`.
//! At the deadline every queue is closed (a sender still waiting for room wakes and counts
//! its points), what is undelivered is counted as dropped (`shutdown`), and the exit status
//! says so.

use std::{collections::HashMap, net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use tokio::{
    net::{TcpListener, UdpSocket},
    sync::watch,
    task::JoinSet,
    time::Instant,
};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::{error, info, warn};

use crate::{
    config::{BufferKind, Config, Overflow},
    listener::{self, ListenerCtx},
    metrics::Metrics,
    output::{
        disk::{start_buffered, DiskBuffered, DiskShared},
        registry::{self, OutputSpec},
        Output,
    },
    pipeline::Pipeline,
    Error,
};

/// An output's config section, of any kind, compared on reload.
#[derive(Debug, Clone)]
struct OutputConfig(Arc<dyn OutputSpec>);

impl PartialEq for OutputConfig {
    fn eq(&self, other: &Self) -> bool {
        self.0.same(&*other.0)
    }
}

impl OutputConfig {
    fn name(&self) -> &str {
        self.0.name()
    }
}

/// Every output section of a config, in the order outputs are listed by `check`.
fn output_configs(config: &Config) -> Vec<OutputConfig> {
    registry::sections(config)
        .into_iter()
        .map(OutputConfig)
        .collect()
}

#[derive(Debug)]
struct RunningOutput {
    config: OutputConfig,
    output: Arc<dyn Output>,
    tasks: JoinSet<()>,
}

/// A bound socket, kept so that a restarted listener on the same address can take it over.
#[derive(Debug, Clone)]
enum Socket {
    Tcp(Arc<TcpListener>),
    Udp(Arc<UdpSocket>),
    /// A StatsD listener's sockets, each with the address it was bound for.
    Statsd {
        udp: Option<(String, Arc<UdpSocket>)>,
        tcp: Option<(String, Arc<TcpListener>)>,
    },
}

#[derive(Debug)]
struct RunningListener {
    /// The config section it was started from, compared on reload.
    fingerprint: String,
    address: String,
    socket: Socket,
    /// Stops the accept loop (or the UDP receive loop).
    stop_accepting: CancellationToken,
    /// Stops the connections (at shutdown; an HTTP listener's on reload too).
    cancel: CancellationToken,
    tracker: TaskTracker,
}

/// A gateway in operation.
#[derive(Debug)]
pub struct Gateway {
    config_path: Option<PathBuf>,
    config: Arc<Config>,
    metrics: Metrics,
    outputs: HashMap<String, RunningOutput>,
    /// Outputs replaced by a reload, still delivering what they had (each under a deadline).
    retiring: JoinSet<()>,
    retired: Vec<Arc<dyn Output>>,
    disks: DiskBuffers,
    listeners: HashMap<&'static str, RunningListener>,
    /// Listeners replaced by a reload whose connections are still open: their `cancel` and
    /// tracker (their sockets are let go).
    old_listeners: Vec<(CancellationToken, TaskTracker)>,
    pipeline_tx: watch::Sender<Arc<Pipeline>>,
    pipeline_rx: watch::Receiver<Arc<Pipeline>>,
    /// Addresses actually bound (port 0 resolved), for tests and logs.
    bound: HashMap<&'static str, SocketAddr>,
    /// The NATS listener (a JetStream consumer), with the settings it was started with.
    nats: Option<(listener::nats::NatsListenerConfig, RunningNats)>,
    /// Set when the gateway gives up on undelivered points: no NATS message is acknowledged
    /// after that, so JetStream redelivers what was not delivered.
    hold_acks: Arc<std::sync::atomic::AtomicBool>,
    /// The task injecting fluxgate's own figures (`[telemetry] graphite_prefix`): the
    /// settings it runs with, its stop token and tracker.
    telemetry: Option<(
        crate::telemetry::TelemetryConfig,
        CancellationToken,
        TaskTracker,
    )>,
    /// `[[inputs.*]]`: sources polled on a schedule.
    inputs: crate::input::Inputs,
    /// The aggregation clock ([`crate::aggregate::task`]), stopped with the listeners.
    aggregate_task: (CancellationToken, TaskTracker),
    /// SIGTERM, SIGINT and SIGHUP, taken over before any listener binds.
    signals: Signals,
}

/// The signals [`Gateway::run_until_signalled`] waits for. Registered in [`Gateway::start`]
/// before the listeners bind: a sender that sees a listener up may signal at once, and a
/// SIGHUP then is held until the signal loop runs instead of killing the process.
#[derive(Debug)]
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn register() -> Result<Self, Error> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Self {
            term: signal(SignalKind::terminate()).map_err(Error::Signal)?,
            int: signal(SignalKind::interrupt()).map_err(Error::Signal)?,
            hup: signal(SignalKind::hangup()).map_err(Error::Signal)?,
        })
    }
}

#[derive(Debug)]
struct RunningNats {
    stop_accepting: CancellationToken,
    cancel: CancellationToken,
    tracker: TaskTracker,
}

impl Gateway {
    /// Takes over the signals, builds outputs and binds listeners. Binding errors are fatal
    /// here (at start the operator wants to know), but only logged on reload (the old
    /// listener keeps running).
    pub async fn start(config: Config, config_path: Option<PathBuf>) -> Result<Self, Error> {
        let signals = Signals::register()?;
        let metrics = Metrics::new();
        let config = Arc::new(config);
        let mut outputs = HashMap::new();
        let mut disks = DiskBuffers::new();
        for oc in output_configs(&config) {
            outputs.insert(
                oc.name().to_owned(),
                start_output(&oc, &metrics, &config, &mut disks)?,
            );
        }
        let pipeline = build_pipeline(&config, &outputs, &metrics, None)?;
        let (pipeline_tx, pipeline_rx) = watch::channel(Arc::new(pipeline));
        let inputs = crate::input::Inputs::start(&config.inputs, &pipeline_rx, &metrics).map_err(
            |message| {
                Error::Config(crate::config::ConfigError::Invalid {
                    section: "inputs".into(),
                    message,
                })
            },
        )?;
        let aggregate_task = {
            let stop = CancellationToken::new();
            let tracker = TaskTracker::new();
            let ctx = ListenerCtx::new(
                "aggregate",
                pipeline_rx.clone(),
                &metrics,
                stop.clone(),
                stop.clone(),
                usize::MAX,
            );
            tracker.spawn(crate::aggregate::task::run(ctx, stop.clone()));
            (stop, tracker)
        };
        let mut gw = Self {
            config_path,
            config: config.clone(),
            metrics,
            outputs,
            retiring: JoinSet::new(),
            retired: Vec::new(),
            disks,
            listeners: HashMap::new(),
            old_listeners: Vec::new(),
            pipeline_tx,
            pipeline_rx,
            bound: HashMap::new(),
            nats: None,
            hold_acks: Arc::default(),
            telemetry: None,
            inputs,
            aggregate_task,
            signals,
        };
        gw.sync_listeners(&config, true).await?;
        gw.sync_nats(&config);
        gw.sync_telemetry(&config);
        let mut listeners: Vec<String> = gw
            .bound
            .iter()
            .map(|(name, addr)| format!("{name}={addr}"))
            .collect();
        listeners.sort();
        info!(
            version = env!("CARGO_PKG_VERSION"),
            listeners = %listeners.join(" "),
            outputs = %config.output_names().join(" "),
            "fluxgate started"
        );
        Ok(gw)
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The address a listener (`plaintext_tcp`, `plaintext_udp`, `pickle`, `http`, `statsd`) bound.
    pub fn local_addr(&self, listener: &str) -> Option<SocketAddr> {
        self.bound.get(listener).copied()
    }

    /// Serves until SIGTERM or SIGINT, reloading on SIGHUP; then drains. `Ok(false)` when
    /// the drain ran out of time and points were dropped.
    pub async fn run_until_signalled(mut self) -> Result<bool, Error> {
        // Under systemd (`Type=notify`): ready once every listener is bound.
        notify(&[sd_notify::NotifyState::Ready]);
        loop {
            tokio::select! {
                _ = self.signals.term.recv() => break,
                _ = self.signals.int.recv() => break,
                _ = self.signals.hup.recv() => {
                    // systemd's reload protocol: RELOADING=1 with the time it began.
                    match sd_notify::NotifyState::monotonic_usec_now() {
                        Ok(now) => notify(&[sd_notify::NotifyState::Reloading, now]),
                        Err(_) => notify(&[sd_notify::NotifyState::Reloading]),
                    }
                    self.reload().await;
                    notify(&[sd_notify::NotifyState::Ready]);
                }
                // Reap outputs retired by earlier reloads as they finish.
                Some(_) = self.retiring.join_next(), if !self.retiring.is_empty() => {
                    self.retired.retain(|o| o.outstanding() > 0);
                }
            }
            self.old_listeners
                .retain(|(_, tracker)| !tracker.is_empty());
        }
        info!("shutting down: no longer accepting, draining queues");
        notify(&[sd_notify::NotifyState::Stopping]);
        Ok(self.shutdown().await)
    }

    /// Re-reads the config file and applies what changed; a bad config is logged and the
    /// running one kept.
    pub async fn reload(&mut self) {
        let Some(path) = self.config_path.clone() else {
            warn!("SIGHUP ignored: no config file to reload");
            return;
        };
        info!(path = %path.display(), "reloading configuration");
        match Config::load(&path) {
            Ok(c) => {
                if let Err(e) = self.apply(c).await {
                    error!("reload failed, keeping the previous configuration: {e}");
                }
            }
            Err(e) => error!("reload failed, keeping the previous configuration: {e}"),
        }
    }

    /// Applies a new configuration (see the module docs for what restarts).
    pub async fn apply(&mut self, new: Config) -> Result<(), Error> {
        // Everything that can fail is checked or built before anything is swapped, so a
        // refused config leaves the gateway as it was.
        new.validate()?;
        let new = Arc::new(new);
        let wanted = output_configs(&new);
        let mut fresh = HashMap::new();
        for oc in &wanted {
            let unchanged = self.outputs.get(oc.name()).is_some_and(|r| r.config == *oc);
            if !unchanged {
                fresh.insert(
                    oc.name().to_owned(),
                    start_output(oc, &self.metrics, &new, &mut self.disks)?,
                );
            }
        }
        let mut outputs = HashMap::new();
        let mut leaving = Vec::new();
        for (name, running) in self.outputs.drain() {
            if wanted.iter().any(|oc| oc == &running.config) {
                outputs.insert(name, running);
            } else {
                leaving.push(running);
            }
        }
        outputs.extend(fresh);
        let previous = self.pipeline_rx.borrow().aggregation.clone();
        let pipeline = build_pipeline(&new, &outputs, &self.metrics, previous.as_deref())?;
        // Published first: whoever waits on a leaving output finds its successor.
        self.pipeline_tx.send_replace(Arc::new(pipeline));
        for running in leaving {
            let name = running.output.name().to_owned();
            let successor = outputs
                .get(&name)
                .filter(|s| s.output.upstream_key() == running.output.upstream_key());
            match successor {
                Some(s) => {
                    info!(output = %name, "output changed: handing what it queued to the new one");
                    running.output.hand_over(s.output.clone());
                }
                None => {
                    info!(output = %name, "output changed or removed: delivering what it queued, then stopping");
                    running.output.close();
                }
            }
            self.retire(running, new.shutdown_timeout);
        }
        self.outputs = outputs;
        self.config = new.clone();
        self.sync_listeners(&new, false).await?;
        self.sync_nats(&new);
        self.sync_telemetry(&new);
        if let Err(e) = self
            .inputs
            .apply(&new.inputs, &self.pipeline_rx, &self.metrics)
        {
            error!("inputs: cannot start the new ones, keeping the previous: {e}");
        }
        info!("configuration reloaded");
        Ok(())
    }

    /// Lets a replaced output finish in the background for at most `deadline`.
    fn retire(&mut self, running: RunningOutput, deadline: Duration) {
        let output = running.output.clone();
        self.retired.push(output.clone());
        let mut tasks = running.tasks;
        self.retiring.spawn(async move {
            let finished =
                tokio::time::timeout(deadline, async { while tasks.join_next().await.is_some() {} })
                    .await;
            if finished.is_err() {
                let left = output.outstanding();
                error!(output = output.name(), points = left,
                    "reload: the replaced output did not deliver in time; giving up on what is left");
                output.abandon("reload");
                tasks.abort_all();
                while tasks.join_next().await.is_some() {}
            }
        });
    }

    /// Stops listeners, lets connections hand on what they read, then waits for the outputs
    /// to deliver; everything within `shutdown_timeout`. True when nothing was given up.
    pub async fn shutdown(mut self) -> bool {
        let deadline = Instant::now() + self.config.shutdown_timeout;
        let mut listeners: Vec<(CancellationToken, TaskTracker)> = Vec::new();
        for (_, l) in self.listeners.drain() {
            l.stop_accepting.cancel();
            listeners.push((l.cancel, l.tracker));
        }
        listeners.append(&mut self.old_listeners);
        if let Some((_, n)) = self.nats.take() {
            n.stop_accepting.cancel();
            listeners.push((n.cancel, n.tracker));
        }
        if let Some((_, stop, tracker)) = self.telemetry.take() {
            stop.cancel();
            listeners.push((stop, tracker));
        }
        listeners.push(self.inputs.stop());
        listeners.push(self.aggregate_task.clone());
        for (cancel, tracker) in &listeners {
            cancel.cancel();
            tracker.close();
        }
        let connections_done = tokio::time::timeout_at(deadline, async {
            for (_, tracker) in &listeners {
                tracker.wait().await;
            }
        })
        .await
        .is_ok();
        let outputs: Vec<Arc<dyn Output>> = self
            .outputs
            .values()
            .map(|r| r.output.clone())
            .chain(self.retired.iter().cloned())
            .collect();
        for o in &outputs {
            o.close();
        }
        let mut all = JoinSet::new();
        for (_, r) in self.outputs.iter_mut() {
            let mut tasks = std::mem::take(&mut r.tasks);
            all.spawn(async move { while tasks.join_next().await.is_some() {} });
        }
        let mut retiring = std::mem::take(&mut self.retiring);
        all.spawn(async move { while retiring.join_next().await.is_some() {} });
        let drained =
            tokio::time::timeout_at(deadline, async { while all.join_next().await.is_some() {} })
                .await
                .is_ok();
        if connections_done && drained {
            info!("all queues drained");
            return true;
        }
        // What is given up on now must come again from JetStream.
        self.hold_acks
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let mut lost = false;
        for output in &outputs {
            let left = output.outstanding();
            if output.persists() {
                // Kept in its disk buffer for the next start.
                output.abandon("shutdown");
                continue;
            }
            if left > 0 {
                lost = true;
                error!(
                    output = output.name(),
                    points = left,
                    "shutdown deadline passed with points undelivered"
                );
            }
            output.abandon("shutdown");
        }
        if !connections_done {
            // Senders still waiting for room were woken by the closed queues and count what
            // they held; give them a moment to do so.
            lost = true;
            let _ = tokio::time::timeout(GRACE, async {
                for (_, tracker) in &listeners {
                    tracker.wait().await;
                }
            })
            .await;
            error!("shutdown deadline passed with connections still handing on points");
        }
        all.abort_all();
        !lost
    }

    /// Starts, restarts (settings changed) or stops the NATS listener. A restarted one binds
    /// the same durable consumer: what the old one held and had not acknowledged is
    /// redelivered after `ack_wait`, nothing is lost.
    fn sync_nats(&mut self, config: &Config) {
        let wanted = &config.listeners.nats;
        if let Some((running, _)) = &self.nats {
            if running == wanted {
                return;
            }
        }
        if let Some((_, old)) = self.nats.take() {
            info!(
                listener = "nats",
                "NATS listener settings changed: consuming with the new ones"
            );
            old.stop_accepting.cancel();
            old.tracker.close();
            self.old_listeners.push((old.cancel, old.tracker));
        }
        if !wanted.enabled() {
            return;
        }
        let stop_accepting = CancellationToken::new();
        let cancel = CancellationToken::new();
        let tracker = TaskTracker::new();
        let ctx = ListenerCtx::new(
            "nats",
            self.pipeline_rx.clone(),
            &self.metrics,
            stop_accepting.clone(),
            cancel.clone(),
            usize::MAX,
        );
        tracker.spawn(listener::nats::run(
            wanted.clone(),
            ctx,
            self.hold_acks.clone(),
        ));
        tracker.close();
        info!(listener = "nats", servers = ?wanted.servers.iter().map(|s| crate::config::redact_url(s)).collect::<Vec<_>>(), stream = %wanted.stream, consumer = %wanted.consumer, "consuming from JetStream");
        self.nats = Some((
            wanted.clone(),
            RunningNats {
                stop_accepting,
                cancel,
                tracker,
            },
        ));
    }

    /// Starts, restarts or stops the telemetry task as `[telemetry]` says.
    fn sync_telemetry(&mut self, config: &Config) {
        let wanted = &config.telemetry;
        let runs = |c: &crate::telemetry::TelemetryConfig| {
            (c.graphite_prefix.clone(), c.interval, c.reset_counters)
        };
        if let Some((running, _, _)) = &self.telemetry {
            if runs(running) == runs(wanted) {
                return;
            }
        }
        if let Some((_, stop, tracker)) = self.telemetry.take() {
            stop.cancel();
            tracker.close();
        }
        if wanted.graphite_prefix.is_none() {
            return;
        }
        let stop = CancellationToken::new();
        let tracker = TaskTracker::new();
        let ctx = ListenerCtx::new(
            crate::telemetry::LISTENER,
            self.pipeline_rx.clone(),
            &self.metrics,
            stop.clone(),
            stop.clone(),
            usize::MAX,
        );
        tracker.spawn(crate::telemetry::run(ctx, wanted.clone()));
        self.telemetry = Some((wanted.clone(), stop, tracker));
    }

    async fn sync_listeners(&mut self, config: &Config, initial: bool) -> Result<(), Error> {
        let l = &config.listeners;
        let wanted: [(&'static str, Option<String>); 7] = [
            ("plaintext_tcp", l.plaintext.tcp.clone()),
            ("plaintext_udp", l.plaintext.udp.clone()),
            ("pickle", l.pickle.tcp.clone()),
            ("http", l.http.address.clone()),
            ("statsd", listener::statsd::address_key(&l.statsd)),
            ("line_udp", l.line_udp.udp.clone()),
            ("telemetry", config.telemetry.address.clone()),
        ];
        for (name, addr) in wanted {
            let fingerprint = fingerprint_of(name, config);
            let old = match self.listeners.get(name) {
                Some(running) if running.fingerprint == fingerprint => continue,
                Some(_) => self.listeners.remove(name),
                None => None,
            };
            // The same address keeps its socket: the new listener takes it over, and no
            // connection is refused in between.
            let reuse = old
                .as_ref()
                .filter(|o| name == "statsd" || addr.as_deref() == Some(o.address.as_str()))
                .map(|o| o.socket.clone());
            let started = match &addr {
                Some(addr) => Some(self.start_listener(name, addr, config, reuse).await),
                None => None,
            };
            match started {
                Some(Ok(local)) => {
                    info!(listener = name, address = %local, "listening");
                    self.bound.insert(name, local);
                }
                Some(Err(e)) if initial => return Err(e),
                Some(Err(e)) => {
                    error!(
                        listener = name,
                        "cannot start listener, keeping the old one: {e}"
                    );
                    if let Some(old) = old {
                        self.listeners.insert(name, old);
                    }
                    continue;
                }
                None => {
                    self.bound.remove(name);
                }
            }
            if let Some(old) = old {
                info!(
                    listener = name,
                    "listener settings changed: the new settings apply to new connections"
                );
                old.stop_accepting.cancel();
                if name == "http" {
                    // HTTP clients reconnect as a matter of course: idle keep-alive
                    // connections close, requests in flight finish.
                    old.cancel.cancel();
                }
                old.tracker.close();
                self.old_listeners.push((old.cancel, old.tracker));
            }
        }
        Ok(())
    }

    async fn start_listener(
        &mut self,
        name: &'static str,
        addr: &str,
        config: &Config,
        reuse: Option<Socket>,
    ) -> Result<SocketAddr, Error> {
        let bind_err = |source| Error::Bind {
            listener: name,
            address: addr.to_string(),
            source,
        };
        let stop_accepting = CancellationToken::new();
        let cancel = CancellationToken::new();
        let tracker = TaskTracker::new();
        let max_buffered = match name {
            "plaintext_tcp" | "plaintext_udp" => config.listeners.plaintext.max_buffered_bytes,
            "pickle" => config.listeners.pickle.max_buffered_bytes,
            "statsd" => config.listeners.statsd.max_buffered_bytes,
            _ => config.listeners.http.max_buffered_bytes,
        };
        let ctx = ListenerCtx::new(
            name,
            self.pipeline_rx.clone(),
            &self.metrics,
            stop_accepting.clone(),
            cancel.clone(),
            max_buffered,
        );
        let l = &config.listeners;
        let (socket, local) = match (name, reuse) {
            ("statsd", reuse) => {
                let s = &l.statsd;
                let (old_udp, old_tcp) = match reuse {
                    Some(Socket::Statsd { udp, tcp }) => (udp, tcp),
                    _ => (None, None),
                };
                let shared: listener::statsd::Shared = Arc::new(std::sync::Mutex::new(
                    crate::statsd::Aggregator::new(s.settings()),
                ));
                let mut local = None;
                let udp = match &s.udp {
                    Some(addr) => {
                        let socket = match old_udp {
                            Some((old, socket)) if old == *addr => socket,
                            _ => {
                                let parsed: SocketAddr = addr.parse().map_err(|e| {
                                    bind_err(std::io::Error::new(
                                        std::io::ErrorKind::InvalidInput,
                                        e,
                                    ))
                                })?;
                                Arc::new(
                                    listener::statsd::bind(parsed, s.udp_receive_buffer)
                                        .map_err(bind_err)?,
                                )
                            }
                        };
                        local = Some(socket.local_addr().map_err(bind_err)?);
                        tracker.spawn(listener::udp::follow_drops(socket.clone(), ctx.clone()));
                        tracker.spawn(listener::statsd::udp(
                            socket.clone(),
                            ctx.clone(),
                            shared.clone(),
                            s.max_datagram_bytes,
                        ));
                        Some((addr.clone(), socket))
                    }
                    None => None,
                };
                let tcp = match &s.tcp {
                    Some(addr) => {
                        let listener_socket = match old_tcp {
                            Some((old, socket)) if old == *addr => socket,
                            _ => Arc::new(bind_tcp(addr).map_err(bind_err)?),
                        };
                        let tcp_local = listener_socket.local_addr().map_err(bind_err)?;
                        local.get_or_insert(tcp_local);
                        self.bound.insert("statsd_tcp", tcp_local);
                        let opts = listener::TcpOptions {
                            max_connections: s.max_connections,
                            idle_timeout: s.idle_timeout,
                            tls: None,
                        };
                        let (shared, max_line) = (shared.clone(), s.max_line_bytes);
                        tracker.spawn(listener::serve_tcp(
                            listener_socket.clone(),
                            ctx.clone(),
                            opts,
                            tracker.clone(),
                            move |conn, peer, ctx, idle| {
                                listener::statsd::connection(
                                    conn,
                                    peer,
                                    ctx,
                                    idle,
                                    shared.clone(),
                                    max_line,
                                )
                            },
                        ));
                        Some((addr.clone(), listener_socket))
                    }
                    None => {
                        self.bound.remove("statsd_tcp");
                        None
                    }
                };
                tracker.spawn(listener::statsd::flusher(
                    ctx,
                    shared,
                    s.flush_interval.as_millis() as u64,
                ));
                let local = local.ok_or_else(|| {
                    bind_err(std::io::Error::new(
                        std::io::ErrorKind::InvalidInput,
                        "neither udp nor tcp is set",
                    ))
                })?;
                (Socket::Statsd { udp, tcp }, local)
            }
            ("line_udp", reuse) => {
                let c = &l.line_udp;
                let socket = match reuse {
                    Some(Socket::Udp(s)) => s,
                    _ => {
                        let parsed: SocketAddr = addr.parse().map_err(|e| {
                            bind_err(std::io::Error::new(std::io::ErrorKind::InvalidInput, e))
                        })?;
                        Arc::new(
                            listener::udp::bind(name, parsed, c.recv_buffer_bytes)
                                .map_err(bind_err)?,
                        )
                    }
                };
                let local = socket.local_addr().map_err(bind_err)?;
                tracker.spawn(listener::udp::follow_drops(socket.clone(), ctx.clone()));
                tracker.spawn(listener::line_udp::udp(socket.clone(), ctx, c.clone()));
                (Socket::Udp(socket), local)
            }
            ("plaintext_udp", reuse) => {
                let socket = match reuse {
                    Some(Socket::Udp(s)) => s,
                    _ => {
                        let parsed: SocketAddr = addr.parse().map_err(|e| {
                            bind_err(std::io::Error::new(std::io::ErrorKind::InvalidInput, e))
                        })?;
                        Arc::new(
                            listener::udp::bind(name, parsed, l.plaintext.recv_buffer_bytes)
                                .map_err(bind_err)?,
                        )
                    }
                };
                let local = socket.local_addr().map_err(bind_err)?;
                let (max_dgram, max_line) =
                    (l.plaintext.max_datagram_bytes, l.plaintext.max_line_bytes);
                tracker.spawn(listener::udp::follow_drops(socket.clone(), ctx.clone()));
                tracker.spawn(listener::plaintext::udp(
                    socket.clone(),
                    ctx,
                    max_dgram,
                    max_line,
                ));
                (Socket::Udp(socket), local)
            }
            (_, reuse) => {
                let tcp = match reuse {
                    Some(Socket::Tcp(s)) => s,
                    _ => Arc::new(bind_tcp(addr).map_err(bind_err)?),
                };
                let local = tcp.local_addr().map_err(bind_err)?;
                let t = tracker.clone();
                let tls_err = |message: String| Error::Tls {
                    listener: name,
                    message,
                };
                match name {
                    "plaintext_tcp" => {
                        let max_line = l.plaintext.max_line_bytes;
                        let p = &l.plaintext;
                        let opts = listener::TcpOptions {
                            max_connections: p.max_connections,
                            idle_timeout: p.idle_timeout,
                            tls: acceptor(&p.tls_cert, &p.tls_key, &p.tls_client_ca, &[])
                                .map_err(tls_err)?,
                        };
                        tracker.spawn(listener::serve_tcp(
                            tcp.clone(),
                            ctx,
                            opts,
                            t,
                            move |s, peer, ctx, idle| {
                                listener::plaintext::connection(s, peer, ctx, idle, max_line)
                            },
                        ));
                    }
                    "pickle" => {
                        let p = &l.pickle;
                        let (max_frame, max_line) = (p.max_frame_bytes, p.max_line_bytes);
                        let opts = listener::TcpOptions {
                            max_connections: p.max_connections,
                            idle_timeout: p.idle_timeout,
                            tls: acceptor(&p.tls_cert, &p.tls_key, &p.tls_client_ca, &[])
                                .map_err(tls_err)?,
                        };
                        tracker.spawn(listener::serve_tcp(
                            tcp.clone(),
                            ctx,
                            opts,
                            t,
                            move |s, peer, ctx, idle| {
                                listener::pickle::connection(
                                    s, peer, ctx, idle, max_frame, max_line,
                                )
                            },
                        ));
                    }
                    "telemetry" => {
                        tracker.spawn(listener::http::serve_metrics(
                            tcp.clone(),
                            ctx,
                            l.http.clone(),
                            t,
                        ));
                    }
                    _ => {
                        let h = &l.http;
                        let tls =
                            acceptor(&h.tls_cert, &h.tls_key, &h.tls_client_ca, &[b"http/1.1"])
                                .map_err(tls_err)?;
                        tracker.spawn(listener::http::serve(tcp.clone(), ctx, h.clone(), tls, t));
                    }
                }
                (Socket::Tcp(tcp), local)
            }
        };
        let fingerprint = fingerprint_of(name, config);
        self.listeners.insert(
            name,
            RunningListener {
                fingerprint,
                address: addr.to_owned(),
                socket,
                stop_accepting,
                cancel,
                tracker,
            },
        );
        Ok(local)
    }
}

/// Tells systemd (when it started us with `NOTIFY_SOCKET`) how the gateway is doing;
/// without systemd nothing happens.
fn notify(state: &[sd_notify::NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(state) {
        warn!("cannot notify systemd: {e}");
    }
}

/// After the shutdown deadline, how long senders woken by the closed queues get to count
/// what they held.
const GRACE: Duration = Duration::from_secs(2);

/// The disk buffers opened so far, by output name: a log is opened once per process and kept
/// across reloads (its directory is locked while open).
type DiskBuffers = HashMap<String, Arc<DiskShared>>;

fn start_output(
    oc: &OutputConfig,
    metrics: &Metrics,
    config: &Config,
    disks: &mut DiskBuffers,
) -> Result<RunningOutput, Error> {
    let fail = |message: String| Error::Output {
        output: oc.name().to_owned(),
        message,
    };
    let interval = config.log.rate_limit;
    let mut tasks = JoinSet::new();
    let output = oc.0.build(metrics, interval).map_err(fail)?;
    let settings = oc.0.buffer_settings();
    let output = match settings.kind {
        BufferKind::Memory => {
            output.start(&mut tasks);
            output
        }
        BufferKind::Disk => {
            let shared = match disks.get(oc.name()) {
                Some(s) => s.clone(),
                None => {
                    let s = DiskShared::open(
                        &config.gateway.data_dir,
                        oc.name(),
                        settings.max_bytes,
                        metrics,
                    )
                    .map_err(fail)?;
                    disks.insert(oc.name().to_owned(), s.clone());
                    s
                }
            };
            let buffered = Arc::new(DiskBuffered::new(
                shared,
                output,
                settings.max_bytes,
                settings.overflow != Overflow::Block,
                settings.replay_rate,
                settings.sync_interval,
            ));
            start_buffered(&buffered, &mut tasks);
            buffered
        }
    };
    Ok(RunningOutput {
        config: oc.clone(),
        output,
        tasks,
    })
}

fn build_pipeline(
    config: &Arc<Config>,
    outputs: &HashMap<String, RunningOutput>,
    metrics: &Metrics,
    previous: Option<&crate::aggregate::Aggregation>,
) -> Result<Pipeline, Error> {
    let aggregation = config.aggregation(metrics, previous).map_err(|e| {
        Error::Config(crate::config::ConfigError::Invalid {
            section: "aggregation".into(),
            message: e.to_string(),
        })
    })?;
    let templates = config.graphite.templates().map_err(|e| {
        Error::Config(crate::config::ConfigError::Invalid {
            section: "graphite".into(),
            message: e.to_string(),
        })
    })?;
    let router = config.router().map_err(|e| {
        Error::Config(crate::config::ConfigError::Invalid {
            section: "routes".into(),
            message: e.to_string(),
        })
    })?;
    // Keep the config's order: router indices and `check` follow it.
    let outputs = output_configs(config)
        .iter()
        .filter_map(|oc| outputs.get(oc.name()).map(|r| r.output.clone()))
        .collect();
    Ok(Pipeline {
        outputs,
        router,
        templates: Arc::new(templates),
        config: config.clone(),
        metrics: metrics.clone(),
        aggregation: aggregation.map(Arc::new),
    })
}

/// How many connections the kernel may hold for a TCP listener before it accepts them. The
/// usual 128 makes a burst of reconnecting senders (every relay after a restart of the
/// gateway) wait a SYN retransmit, a second, for a place in the queue.
const LISTEN_BACKLOG: u32 = 4096;

fn bind_tcp(addr: &str) -> std::io::Result<TcpListener> {
    let addr: SocketAddr = addr
        .parse()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{e}")))?;
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// A TLS acceptor for a listener's `tls_cert` / `tls_key` / `tls_client_ca`, if set.
fn acceptor(
    cert: &Option<String>,
    key: &Option<String>,
    client_ca: &Option<String>,
    alpn: &[&[u8]],
) -> Result<Option<tokio_rustls::TlsAcceptor>, String> {
    let config =
        crate::tls::server_config(cert.as_deref(), key.as_deref(), client_ca.as_deref(), alpn)?;
    Ok(config.map(tokio_rustls::TlsAcceptor::from))
}

/// A listener's settings as a comparable value: it restarts on reload only if this changed.
/// The contents of its certificate files count too, so a renewed certificate is picked up by
/// a SIGHUP. Secrets (`users`, `tokens`) are compared by digest.
fn fingerprint_of(name: &str, config: &Config) -> String {
    let l = &config.listeners;
    let files = |c: &Option<String>, k: &Option<String>, ca: &Option<String>| {
        crate::tls::files_fingerprint([c.as_deref(), k.as_deref(), ca.as_deref()])
    };
    match name {
        "plaintext_tcp" => format!(
            "{:?} {}",
            (
                &l.plaintext.tcp,
                l.plaintext.max_line_bytes,
                l.plaintext.max_connections,
                l.plaintext.idle_timeout,
                (
                    &l.plaintext.tls_cert,
                    &l.plaintext.tls_key,
                    &l.plaintext.tls_client_ca
                ),
            ),
            files(
                &l.plaintext.tls_cert,
                &l.plaintext.tls_key,
                &l.plaintext.tls_client_ca
            ),
        ),
        "plaintext_udp" => format!(
            "{:?}",
            (
                &l.plaintext.udp,
                l.plaintext.max_line_bytes,
                l.plaintext.max_datagram_bytes
            )
        ),
        "statsd" => format!("{:?}", l.statsd),
        "line_udp" => format!("{:?}", l.line_udp),
        "telemetry" => format!(
            "{:?} {:?} {}",
            config.telemetry.address,
            l.http,
            crate::tls::digest_strings(
                l.http
                    .users
                    .iter()
                    .chain(&l.http.tokens)
                    .map(|s| Some(s.expose()))
            ),
        ),
        "pickle" => format!(
            "{:?} {}",
            l.pickle,
            files(
                &l.pickle.tls_cert,
                &l.pickle.tls_key,
                &l.pickle.tls_client_ca
            )
        ),
        _ => {
            let secrets = l
                .http
                .users
                .iter()
                .chain(&l.http.tokens)
                .map(|s| Some(s.expose()));
            format!(
                "{:?} {} {}",
                l.http,
                files(&l.http.tls_cert, &l.http.tls_key, &l.http.tls_client_ca),
                crate::tls::digest_strings(secrets),
            )
        }
    }
}

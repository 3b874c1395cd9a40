//! The running gateway: builds outputs and listeners from a config, serves until SIGTERM
//! (then drains within `shutdown_timeout`), and reloads on SIGHUP.
//!
//! Reload restarts only what changed. A changed or removed output stops taking new points
//! and keeps delivering what it already queued (nothing accepted is dropped by a reload);
//! unchanged outputs keep their queues and connections. Listeners whose section changed are
//! rebound; the others keep their connections.

use std::{collections::HashMap, net::SocketAddr, path::PathBuf, sync::Arc};

use tokio::{
    net::{TcpListener, UdpSocket},
    sync::watch,
    task::JoinSet,
};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::{error, info, warn};

use crate::{
    config::{Config, GraphiteOutputConfig, InfluxOutputConfig},
    listener::{self, ListenerCtx},
    metrics::Metrics,
    output::{graphite::GraphiteOutput, influxdb::InfluxOutput},
    pipeline::{Output, Pipeline},
    translate::influx::InfluxToGraphite,
    Error,
};

/// An output's config section, of either kind, compared on reload.
#[derive(Debug, Clone, PartialEq)]
enum OutputConfig {
    Influx(InfluxOutputConfig),
    Graphite(GraphiteOutputConfig),
}

impl OutputConfig {
    fn name(&self) -> &str {
        match self {
            OutputConfig::Influx(c) => &c.name,
            OutputConfig::Graphite(c) => &c.name,
        }
    }
}

/// Every output section of a config, in the order outputs are listed by `check`.
fn output_configs(config: &Config) -> Vec<OutputConfig> {
    let influx = config
        .outputs
        .influxdb
        .iter()
        .cloned()
        .map(OutputConfig::Influx);
    let graphite = config
        .outputs
        .graphite
        .iter()
        .cloned()
        .map(OutputConfig::Graphite);
    influx.chain(graphite).collect()
}

#[derive(Debug)]
struct RunningOutput {
    config: OutputConfig,
    output: Output,
    tasks: JoinSet<()>,
}

#[derive(Debug)]
struct RunningListener {
    /// The config section it was started from, compared on reload.
    fingerprint: String,
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
    /// Outputs replaced by a reload, still delivering what they had queued.
    retiring: JoinSet<()>,
    retired: Vec<Output>,
    listeners: HashMap<&'static str, RunningListener>,
    pipeline_tx: watch::Sender<Arc<Pipeline>>,
    pipeline_rx: watch::Receiver<Arc<Pipeline>>,
    /// Addresses actually bound (port 0 resolved), for tests and logs.
    bound: HashMap<&'static str, SocketAddr>,
}

impl Gateway {
    /// Builds outputs and binds listeners. Binding errors are fatal here (at start the
    /// operator wants to know), but only logged on reload (the old listener keeps running).
    pub async fn start(config: Config, config_path: Option<PathBuf>) -> Result<Self, Error> {
        let metrics = Metrics::new();
        let config = Arc::new(config);
        let mut outputs = HashMap::new();
        for oc in output_configs(&config) {
            outputs.insert(oc.name().to_owned(), start_output(&oc, &metrics, &config)?);
        }
        let pipeline = build_pipeline(&config, &outputs, &metrics)?;
        let (pipeline_tx, pipeline_rx) = watch::channel(Arc::new(pipeline));
        let mut gw = Self {
            config_path,
            config: config.clone(),
            metrics,
            outputs,
            retiring: JoinSet::new(),
            retired: Vec::new(),
            listeners: HashMap::new(),
            pipeline_tx,
            pipeline_rx,
            bound: HashMap::new(),
        };
        gw.sync_listeners(&config, true).await?;
        Ok(gw)
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The address a listener (`plaintext_tcp`, `plaintext_udp`, `pickle`, `http`) bound.
    pub fn local_addr(&self, listener: &str) -> Option<SocketAddr> {
        self.bound.get(listener).copied()
    }

    /// Serves until SIGTERM or SIGINT, reloading on SIGHUP; then drains.
    pub async fn run_until_signalled(mut self) -> Result<(), Error> {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).map_err(Error::Signal)?;
        let mut int = signal(SignalKind::interrupt()).map_err(Error::Signal)?;
        let mut hup = signal(SignalKind::hangup()).map_err(Error::Signal)?;
        loop {
            tokio::select! {
                _ = term.recv() => break,
                _ = int.recv() => break,
                _ = hup.recv() => self.reload().await,
                // Reap outputs retired by earlier reloads as they finish.
                Some(_) = self.retiring.join_next(), if !self.retiring.is_empty() => {
                    self.retired.retain(|o| o.outstanding() > 0);
                }
            }
        }
        info!("shutting down: no longer accepting, draining queues");
        self.shutdown().await;
        Ok(())
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
                fresh.insert(oc.name().to_owned(), start_output(oc, &self.metrics, &new)?);
            }
        }
        let mut outputs = HashMap::new();
        for (name, running) in self.outputs.drain() {
            let keep = wanted.iter().any(|oc| oc == &running.config);
            if keep {
                outputs.insert(name, running);
            } else {
                info!(output = %name, "output changed or removed: delivering what it queued, then stopping");
                running.output.close();
                self.retired.push(running.output.clone());
                let mut tasks = running.tasks;
                self.retiring
                    .spawn(async move { while tasks.join_next().await.is_some() {} });
            }
        }
        outputs.extend(fresh);
        self.outputs = outputs;
        let pipeline = build_pipeline(&new, &self.outputs, &self.metrics)?;
        self.pipeline_tx.send_replace(Arc::new(pipeline));
        self.config = new.clone();
        self.sync_listeners(&new, false).await?;
        info!("configuration reloaded");
        Ok(())
    }

    /// Stops listeners, lets connections flush, then waits up to `shutdown_timeout` for the
    /// outputs to deliver everything queued. What is left then is counted as dropped.
    pub async fn shutdown(mut self) {
        for (_, l) in self.listeners.drain() {
            l.cancel.cancel();
            l.tracker.close();
            l.tracker.wait().await;
        }
        for r in self.outputs.values() {
            r.output.close();
        }
        let deadline = self.config.shutdown_timeout;
        let mut all = JoinSet::new();
        for (_, r) in self.outputs.iter_mut() {
            let mut tasks = std::mem::take(&mut r.tasks);
            all.spawn(async move { while tasks.join_next().await.is_some() {} });
        }
        let mut retiring = std::mem::take(&mut self.retiring);
        all.spawn(async move { while retiring.join_next().await.is_some() {} });
        let drained =
            tokio::time::timeout(deadline, async { while all.join_next().await.is_some() {} })
                .await;
        if drained.is_err() {
            let running = self.outputs.values().map(|r| &r.output);
            for output in running.chain(&self.retired) {
                let left = output.outstanding();
                if left > 0 {
                    error!(
                        output = output.name(),
                        points = left,
                        "shutdown deadline passed with points undelivered"
                    );
                }
                output.abandon();
            }
        } else {
            info!("all queues drained");
        }
    }

    async fn sync_listeners(&mut self, config: &Config, initial: bool) -> Result<(), Error> {
        let l = &config.listeners;
        let wanted: [(&'static str, Option<String>); 4] = [
            ("plaintext_tcp", l.plaintext.tcp.clone()),
            ("plaintext_udp", l.plaintext.udp.clone()),
            ("pickle", l.pickle.tcp.clone()),
            ("http", l.http.address.clone()),
        ];
        for (name, addr) in wanted {
            let fingerprint = fingerprint_of(name, config);
            if let Some(running) = self.listeners.get(name) {
                if running.fingerprint == fingerprint {
                    continue;
                }
                let running = self.listeners.remove(name).expect("present");
                info!(listener = name, "listener settings changed: restarting it");
                running.cancel.cancel();
                running.tracker.close();
                running.tracker.wait().await;
                self.bound.remove(name);
            }
            let Some(addr) = addr else { continue };
            match self.start_listener(name, &addr, config).await {
                Ok(local) => {
                    info!(listener = name, address = %local, "listening");
                    self.bound.insert(name, local);
                }
                Err(e) if initial => return Err(e),
                Err(e) => error!(listener = name, "cannot start listener: {e}"),
            }
        }
        Ok(())
    }

    async fn start_listener(
        &mut self,
        name: &'static str,
        addr: &str,
        config: &Config,
    ) -> Result<SocketAddr, Error> {
        let bind_err = |source| Error::Bind {
            listener: name,
            address: addr.to_string(),
            source,
        };
        let cancel = CancellationToken::new();
        let tracker = TaskTracker::new();
        let ctx = ListenerCtx::new(
            name,
            self.pipeline_rx.clone(),
            &self.metrics,
            cancel.clone(),
        );
        let l = &config.listeners;
        let local = match name {
            "plaintext_udp" => {
                let socket = UdpSocket::bind(addr).await.map_err(bind_err)?;
                let local = socket.local_addr().map_err(bind_err)?;
                let (max_dgram, max_line) =
                    (l.plaintext.max_datagram_bytes, l.plaintext.max_line_bytes);
                tracker.spawn(listener::plaintext::udp(socket, ctx, max_dgram, max_line));
                local
            }
            _ => {
                let tcp = TcpListener::bind(addr).await.map_err(bind_err)?;
                let local = tcp.local_addr().map_err(bind_err)?;
                let t = tracker.clone();
                match name {
                    "plaintext_tcp" => {
                        let max_line = l.plaintext.max_line_bytes;
                        tracker.spawn(listener::serve_tcp(
                            tcp,
                            ctx,
                            l.plaintext.max_connections,
                            move |s, peer, ctx| {
                                t.track_future(listener::plaintext::connection(
                                    s, peer, ctx, max_line,
                                ))
                            },
                        ));
                    }
                    "pickle" => {
                        let max_frame = l.pickle.max_frame_bytes;
                        tracker.spawn(listener::serve_tcp(
                            tcp,
                            ctx,
                            l.pickle.max_connections,
                            move |s, peer, ctx| {
                                t.track_future(listener::pickle::connection(
                                    s, peer, ctx, max_frame,
                                ))
                            },
                        ));
                    }
                    _ => {
                        tracker.spawn(listener::http::serve(tcp, ctx, l.http.clone(), t));
                    }
                }
                local
            }
        };
        let fingerprint = fingerprint_of(name, config);
        self.listeners.insert(
            name,
            RunningListener {
                fingerprint,
                cancel,
                tracker,
            },
        );
        Ok(local)
    }
}

fn start_output(
    oc: &OutputConfig,
    metrics: &Metrics,
    config: &Config,
) -> Result<RunningOutput, Error> {
    let fail = |message: String| Error::Output {
        output: oc.name().to_owned(),
        message,
    };
    let interval = config.log.rate_limit;
    let mut tasks = JoinSet::new();
    let output = match oc {
        OutputConfig::Influx(c) => {
            let o =
                InfluxOutput::new(c.clone(), metrics, interval).map_err(|e| fail(e.to_string()))?;
            o.start(&mut tasks);
            Output::Influx(o)
        }
        OutputConfig::Graphite(c) => {
            let to_graphite =
                InfluxToGraphite::new(&c.to_graphite_config()).map_err(|e| fail(e.to_string()))?;
            let o = GraphiteOutput::new(c.clone(), metrics, interval).map_err(fail)?;
            o.start(&mut tasks);
            Output::Graphite {
                output: o,
                to_graphite: Arc::new(to_graphite),
            }
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
) -> Result<Pipeline, Error> {
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
    })
}

/// A listener's settings as a comparable value: it restarts on reload only if this changed.
fn fingerprint_of(name: &str, config: &Config) -> String {
    let l = &config.listeners;
    match name {
        "plaintext_tcp" => format!(
            "{:?}",
            (
                &l.plaintext.tcp,
                l.plaintext.max_line_bytes,
                l.plaintext.max_connections
            )
        ),
        "plaintext_udp" => format!(
            "{:?}",
            (
                &l.plaintext.udp,
                l.plaintext.max_line_bytes,
                l.plaintext.max_datagram_bytes
            )
        ),
        "pickle" => format!("{:?}", l.pickle),
        _ => format!("{:?}", l.http),
    }
}

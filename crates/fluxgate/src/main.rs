//! The `fluxgate` command.

use std::{
    io::{BufRead, Write},
    path::PathBuf,
    process::ExitCode,
};

use clap::{Parser, Subcommand, ValueEnum};
use fluxgate::{config::LogFormat, Config, Gateway};
use metric_name::Encoding;

#[derive(Debug, Parser)]
#[command(
    name = "fluxgate",
    version,
    about = "Graphite/InfluxDB protocol gateway"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Configuration file (for `run` when no subcommand is given).
    #[arg(long, short, global = true, default_value = "config.toml")]
    config: PathBuf,
    /// Log filter, overriding the config's `[log] level` (e.g. `debug`, `fluxgate=trace`).
    #[arg(long, global = true, env = "FLUXGATE_LOG")]
    log_level: Option<String>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway (the default).
    Run,
    /// Validate the configuration and print what it builds.
    Check,
    /// Read metrics on stdin and print what each becomes and where it would go; sends nothing.
    DryRun {
        #[arg(long, value_enum, default_value = "graphite")]
        input: Input,
        /// One JSON object per input line.
        #[arg(long)]
        json: bool,
    },
    /// Encode metric-name segments (arguments, or one per stdin line).
    EncodeName {
        #[arg(long, value_enum, default_value = "idna")]
        name_encoding: NameEncoding,
        names: Vec<String>,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions { shell: clap_complete::Shell },
    /// Print the manual page (roff), e.g. `fluxgate man > /usr/share/man/man1/fluxgate.1`.
    Man,
    /// Print a commented fluxgate config.toml that does what another relay's config does;
    /// what cannot be carried over is listed (stderr and comments) and makes the exit
    /// status 1 unless `--partial`.
    Import {
        /// Exit 0 even when some statements could not be imported.
        #[arg(long, global = true)]
        partial: bool,
        #[command(subcommand)]
        source: ImportSource,
    },
    /// Inspect or act on the outputs' disk buffers (`buffer = "disk"`).
    Buffer {
        #[command(subcommand)]
        action: BufferAction,
    },
    /// Decode metric-name segments (arguments, or one per stdin line).
    DecodeName {
        #[arg(long, value_enum, default_value = "idna")]
        name_encoding: NameEncoding,
        names: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
enum ImportSource {
    /// A carbon-c-relay configuration file (its `include`s are followed).
    #[command(name = "carbon-c-relay")]
    CarbonCRelay { file: PathBuf },
    /// carbon's carbon.conf, with its relay-rules.conf (RELAY_METHOD = rules) and
    /// aggregation-rules.conf when they apply.
    Carbon {
        carbon_conf: PathBuf,
        relay_rules: Option<PathBuf>,
        aggregation_rules: Option<PathBuf>,
    },
    /// A Telegraf configuration: its Graphite socket/tcp listeners and its influxdb,
    /// influxdb_v2 and graphite outputs.
    Telegraf { file: PathBuf },
}

#[derive(Debug, Subcommand)]
enum BufferAction {
    /// Records and bytes waiting in each disk-buffered output's buffer and dead-letter buffer.
    List,
    /// Moves an output's dead-letter records back into its buffer, to be delivered at the
    /// next start (the gateway must be stopped: it locks its buffers).
    Replay { output: String },
    /// Discards an output's dead-letter records (the gateway must be stopped).
    Drop { output: String },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Input {
    Graphite,
    Line,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum NameEncoding {
    Idna,
    Punycode,
}

impl From<NameEncoding> for Encoding {
    fn from(e: NameEncoding) -> Self {
        match e {
            NameEncoding::Idna => Encoding::Idna,
            NameEncoding::Punycode => Encoding::Punycode,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Run) {
        Command::EncodeName {
            name_encoding,
            names,
        } => names_command(names, |s| {
            metric_name::encode_with(name_encoding.into(), s).map(|c| c.into_owned())
        }),
        Command::DecodeName {
            name_encoding,
            names,
        } => names_command(names, |s| {
            metric_name::decode_with(name_encoding.into(), s).map(|c| c.into_owned())
        }),
        Command::Check => match Config::load(&cli.config) {
            Ok(c) => {
                print!("{}", fluxgate::dry_run::describe(&c));
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        },
        Command::DryRun { input, json } => {
            let config = match Config::load(&cli.config) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            };
            let input = match input {
                Input::Graphite => fluxgate::dry_run::Input::Graphite,
                Input::Line => fluxgate::dry_run::Input::Line,
            };
            let stdin = std::io::stdin().lock();
            let stdout = std::io::stdout().lock();
            match fluxgate::dry_run::run(&config, input, json, stdin, stdout) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Buffer { action } => buffer_command(&cli.config, action),
        Command::Import { partial, source } => import_command(source, partial),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            let mut cmd = Cli::command();
            // Rendered first, so a closed pipe (`| head`) is an ordinary write error.
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut cmd, "fluxgate", &mut script);
            let _ = std::io::stdout().write_all(&script);
            ExitCode::SUCCESS
        }
        Command::Man => {
            use clap::CommandFactory;
            match clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Run => run(cli.config, cli.log_level),
    }
}

fn import_command(source: ImportSource, partial: bool) -> ExitCode {
    use fluxgate::import;
    let result = match &source {
        ImportSource::CarbonCRelay { file } => import::c_relay::import(file),
        ImportSource::Carbon {
            carbon_conf,
            relay_rules,
            aggregation_rules,
        } => import::carbon::import(
            carbon_conf,
            relay_rules.as_deref(),
            aggregation_rules.as_deref(),
        ),
        ImportSource::Telegraf { file } => import::telegraf::import(file),
    };
    match result {
        Ok(imported) => {
            print!("{}", imported.config);
            for p in &imported.problems {
                eprintln!("{p}");
            }
            if imported.problems.is_empty() || partial {
                ExitCode::SUCCESS
            } else {
                eprintln!(
                    "error: {} statement(s) not imported (--partial accepts the config without them)",
                    imported.problems.len()
                );
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

fn buffer_command(path: &std::path::Path, action: BufferAction) -> ExitCode {
    use fluxgate::{config::BufferKind, output::disk};
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let data_dir = &config.gateway.data_dir;
    let buffered: Vec<(String, u64)> = config
        .outputs
        .influxdb
        .iter()
        .filter(|o| o.buffer == BufferKind::Disk)
        .map(|o| (o.name.clone(), o.max_buffer_bytes))
        .chain(
            config
                .outputs
                .graphite
                .iter()
                .filter(|o| o.buffer == BufferKind::Disk)
                .map(|o| (o.name.clone(), o.max_buffer_bytes)),
        )
        .collect();
    let find = |name: &str| buffered.iter().find(|(n, _)| n == name).map(|(_, m)| *m);
    match action {
        BufferAction::List => {
            if buffered.is_empty() {
                println!("no output has buffer = \"disk\"");
            }
            for (name, _) in &buffered {
                print!("{}", disk::describe(data_dir, name));
            }
            ExitCode::SUCCESS
        }
        BufferAction::Replay { output } | BufferAction::Drop { output }
            if find(&output).is_none() =>
        {
            eprintln!(
                "error: no output {output:?} with buffer = \"disk\" in {}",
                path.display()
            );
            ExitCode::from(2)
        }
        BufferAction::Replay { output } => {
            match disk::replay_dead_letters(data_dir, &output, find(&output).unwrap_or(1 << 30)) {
                Ok(n) => {
                    println!("{output}: {n} dead-letter records moved back into the buffer");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        BufferAction::Drop { output } => match disk::drop_dead_letters(data_dir, &output) {
            Ok(n) => {
                println!("{output}: {n} dead-letter records discarded");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
    }
}

/// One output line per input name; a name the reference encoder would raise on prints
/// `error: <reason>` and makes the exit status 1, the others still print.
fn names_command<E: std::fmt::Display>(
    names: Vec<String>,
    f: impl Fn(&str) -> Result<String, E>,
) -> ExitCode {
    let mut out = std::io::stdout().lock();
    let mut failed = false;
    let mut one = |name: &str, out: &mut dyn Write| -> std::io::Result<()> {
        match f(name) {
            Ok(s) => writeln!(out, "{s}"),
            Err(e) => {
                failed = true;
                writeln!(out, "error: {e}")
            }
        }
    };
    let res = if names.is_empty() {
        std::io::stdin().lock().lines().try_for_each(|line| {
            let line = line?;
            one(line.strip_suffix('\r').unwrap_or(&line), &mut out)
        })
    } else {
        names.iter().try_for_each(|n| one(n, &mut out))
    };
    match res {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
        _ if failed => ExitCode::FAILURE,
        _ => ExitCode::SUCCESS,
    }
}

fn run(path: PathBuf, log_level: Option<String>) -> ExitCode {
    let config = match Config::load(&path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    init_logging(
        log_level.as_deref().unwrap_or(&config.log.level),
        config.log.format,
    );
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        let gw = Gateway::start(config, Some(path)).await?;
        gw.run_until_signalled().await
    });
    match result {
        Ok(true) => ExitCode::SUCCESS,
        // Points were given up on at the shutdown deadline (logged and counted).
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(filter: &str, format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .or_else(|| EnvFilter::try_new(filter).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, never into a journal or a file.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

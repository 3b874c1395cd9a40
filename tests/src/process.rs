//! Child processes that always die with their fixture, and logs that outlive a failing test.

use std::ffi::{OsStr, OsString};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// How often waits poll. Short enough that fixtures start in a few tens of milliseconds once the
/// server is up, long enough not to steal CPU from the servers on a 2-core machine.
pub(crate) const POLL: Duration = Duration::from_millis(25);

/// Directories searched besides `PATH`: a non-root `PATH` often lacks the sbin directories, and
/// Debian installs every server the tests need in /usr/bin or /usr/sbin.
const EXTRA_BIN_DIRS: &[&str] = &["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin"];

/// Finds `name` on `PATH` (or in the usual system bin directories).
///
/// A test that needs a server must fail, not skip, when the server is missing, and the failure
/// must tell the reader how to fix it.
///
/// # Panics
/// When the binary is not found, with a message naming the Debian package and the install script.
pub fn require_binary(name: &str, apt_package: &str) -> PathBuf {
    find_binary(name).unwrap_or_else(|| {
        panic!(
            "`{name}` not found: install it with `apt-get install {apt_package}` \
             or run scripts/install-test-deps.sh"
        )
    })
}

/// Looks `name` up like a shell would, plus the system bin directories.
pub(crate) fn find_binary(name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        let path = PathBuf::from(name);
        return is_executable(&path).then_some(path);
    }
    let path_var = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path_var)
        .chain(EXTRA_BIN_DIRS.iter().map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path).is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

/// The last `lines` lines of a log file, or a note saying why there are none.
pub fn tail_file(path: &Path, lines: usize) -> String {
    match fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            let start = all.len().saturating_sub(lines);
            if all.is_empty() {
                format!("({} is empty)", path.display())
            } else {
                all[start..].join("\n")
            }
        }
        Err(err) => format!("(cannot read {}: {err})", path.display()),
    }
}

/// Sends a signal with the `kill` utility, so that the harness needs neither libc nor `unsafe`.
pub(crate) fn send_signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .arg("-s")
        .arg(signal)
        .arg(pid.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    match status {
        Ok(status) if status.success() => {}
        Ok(status) => panic!("`kill -s {signal} {pid}` failed: {status}"),
        Err(err) => panic!("cannot run `kill -s {signal} {pid}`: {err}"),
    }
}

/// A server process: its command line, where its output goes, and the running child if any.
///
/// Stdout and stderr both go to one log file, opened in append mode so that a restarted server
/// adds to the same file and a failure shows the whole history.
#[derive(Debug)]
pub(crate) struct ServerProcess {
    name: String,
    program: PathBuf,
    args: Vec<OsString>,
    envs: Vec<(OsString, OsString)>,
    cwd: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl ServerProcess {
    pub(crate) fn new(name: &str, program: PathBuf, cwd: &Path, log: PathBuf) -> Self {
        ServerProcess {
            name: name.to_owned(),
            program,
            args: Vec::new(),
            envs: Vec::new(),
            cwd: cwd.to_owned(),
            log,
            child: None,
        }
    }

    pub(crate) fn arg(&mut self, arg: impl AsRef<OsStr>) -> &mut Self {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    pub(crate) fn env(&mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> &mut Self {
        self.envs
            .push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn log_path(&self) -> &Path {
        &self.log
    }

    pub(crate) fn log_tail(&self, lines: usize) -> String {
        tail_file(&self.log, lines)
    }

    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The command line, for messages.
    pub(crate) fn command_line(&self) -> String {
        let mut line = self.program.display().to_string();
        for arg in &self.args {
            line.push(' ');
            line.push_str(&arg.to_string_lossy());
        }
        line
    }

    /// Starts the process.
    ///
    /// # Panics
    /// When it is already running or cannot be spawned.
    pub(crate) fn spawn(&mut self) {
        assert!(
            self.child.is_none(),
            "{} is already running (pid {:?})",
            self.name,
            self.pid()
        );
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap_or_else(|err| panic!("cannot open {}: {err}", self.log.display()));
        let _ = writeln!(log, "==== harness: starting {}", self.command_line());
        let stderr = log
            .try_clone()
            .unwrap_or_else(|err| panic!("cannot duplicate log handle: {err}"));
        let mut command = Command::new(&self.program);
        command
            .args(&self.args)
            .current_dir(&self.cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(stderr));
        for (key, value) in &self.envs {
            command.env(key, value);
        }
        let child = command
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start `{}`: {err}", self.command_line()));
        self.child = Some(child);
    }

    /// `Some(status)` once the child has exited (and reaps it), `None` while it runs or when
    /// nothing was started.
    pub(crate) fn try_wait(&mut self) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        match child.try_wait() {
            Ok(Some(status)) => {
                self.child = None;
                Some(status)
            }
            Ok(None) => None,
            Err(err) => panic!("cannot poll {}: {err}", self.name),
        }
    }

    pub(crate) fn is_running(&mut self) -> bool {
        self.child.is_some() && self.try_wait().is_none()
    }

    /// Sends `signal` (a name such as `TERM` or `HUP`) if the child is still ours to signal.
    ///
    /// A reaped child's pid may belong to someone else by now, hence the check first.
    pub(crate) fn signal(&mut self, signal: &str) {
        let pid = match (self.child.as_mut().map(Child::try_wait), self.pid()) {
            (Some(Ok(None)), Some(pid)) => pid,
            _ => panic!("cannot send SIG{signal}: {} is not running", self.name),
        };
        send_signal(pid, signal);
    }

    /// Waits until the child exits and returns its status.
    pub(crate) fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus, String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_wait() {
                return Ok(status);
            }
            if self.child.is_none() {
                return Err(format!("{} was not running", self.name));
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "{} did not exit within {timeout:?}\n{}",
                    self.name,
                    self.describe_log()
                ));
            }
            thread::sleep(POLL);
        }
    }

    /// SIGTERM, then SIGKILL if it has not exited after `grace`.
    pub(crate) fn stop(&mut self, grace: Duration) -> Option<ExitStatus> {
        if !self.is_running() {
            return None;
        }
        if let Some(pid) = self.pid() {
            send_signal(pid, "TERM");
        }
        match self.wait_exit(grace) {
            Ok(status) => Some(status),
            Err(_) => self.kill(),
        }
    }

    /// SIGKILL and reap. Never panics, so that it is safe in `Drop`.
    pub(crate) fn kill(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        let _ = child.kill();
        child.wait().ok()
    }

    /// Polls `ready` until it returns true.
    ///
    /// # Panics
    /// When the process exits first or `timeout` passes, with the end of the server log.
    pub(crate) fn wait_until(
        &mut self,
        what: &str,
        timeout: Duration,
        mut ready: impl FnMut() -> bool,
    ) {
        let deadline = Instant::now() + timeout;
        loop {
            if ready() {
                return;
            }
            if let Some(status) = self.try_wait() {
                panic!(
                    "{} exited ({status}) while waiting for {what}\ncommand: {}\n{}",
                    self.name,
                    self.command_line(),
                    self.describe_log()
                );
            }
            if self.child.is_none() {
                panic!("{} is not running; cannot wait for {what}", self.name);
            }
            if Instant::now() >= deadline {
                panic!(
                    "timed out after {timeout:?} waiting for {what}\ncommand: {}\n{}",
                    self.command_line(),
                    self.describe_log()
                );
            }
            thread::sleep(POLL);
        }
    }

    /// The last lines of the log with a header naming the file, for failure messages.
    pub(crate) fn describe_log(&self) -> String {
        format!(
            "---- last lines of {} ({}) ----\n{}\n---- end of log ----",
            self.name,
            self.log.display(),
            self.log_tail(40)
        )
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs `command` (a client program such as the `influx` CLI) to completion with `stdin` as
/// input and returns its exit status, stdout and stderr.
///
/// # Panics
/// When it cannot be started or does not finish within `timeout` (with what it printed).
pub fn run_command(
    command: Command,
    stdin: &[u8],
    timeout: Duration,
) -> (ExitStatus, String, String) {
    run_with_timeout(command, stdin, timeout)
}

/// Runs `command` to completion with `stdin` as input, killing it after `timeout`.
///
/// Output is read on helper threads so that a chatty child never blocks on a full pipe.
///
/// # Panics
/// When the command cannot be started or does not finish in time (the panic message carries
/// what it printed so far).
pub(crate) fn run_with_timeout(
    mut command: Command,
    stdin: &[u8],
    timeout: Duration,
) -> (ExitStatus, String, String) {
    let description = format!("{command:?}");
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|err| panic!("cannot start {description}: {err}"));
    let input = stdin.to_vec();
    let mut child_stdin = child.stdin.take().expect("stdin is piped");
    let writer = thread::spawn(move || {
        // A child that exits without reading its input is not an error here.
        let _ = child_stdin.write_all(&input);
    });
    let stdout = read_in_background(child.stdout.take().expect("stdout is piped"));
    let stderr = read_in_background(child.stderr.take().expect("stderr is piped"));
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => thread::sleep(Duration::from_millis(10)),
            Err(err) => panic!("cannot poll {description}: {err}"),
        }
    };
    let _ = writer.join();
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    match status {
        Some(status) => (status, stdout, stderr),
        None => panic!(
            "{description} did not finish within {timeout:?}\n--- stdout ---\n{stdout}\n\
             --- stderr ---\n{stderr}"
        ),
    }
}

fn read_in_background(mut source: impl Read + Send + 'static) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = source.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// Writes `contents` to `path`, panicking with the path on failure.
pub(crate) fn write_file(path: &Path, contents: &str) {
    fs::write(path, contents)
        .unwrap_or_else(|err| panic!("cannot write {}: {err}", path.display()));
}

/// Creates a directory and its parents, panicking with the path on failure.
pub(crate) fn create_dir(path: &Path) {
    fs::create_dir_all(path)
        .unwrap_or_else(|err| panic!("cannot create {}: {err}", path.display()));
}

/// A fresh temporary directory named after the fixture, so that leftovers are recognisable.
pub(crate) fn temp_dir(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("fluxgate-e2e-{prefix}-"))
        .tempdir()
        .unwrap_or_else(|err| panic!("cannot create a temporary directory: {err}"))
}

/// When the test is failing, prints the fixture's log tail and keeps its directory for
/// inspection; otherwise the directory is removed with the fixture.
pub(crate) fn keep_on_panic(dir: &mut Option<tempfile::TempDir>, process: &ServerProcess) {
    if !thread::panicking() {
        return;
    }
    if let Some(dir) = dir.take() {
        let path = dir.keep();
        eprintln!(
            "{}\n(test failed: kept {} for inspection)",
            process.describe_log(),
            path.display()
        );
    }
}

/// Opens `path` for reading, for fixtures that hand out their log.
pub(crate) fn read_to_string_lossy(path: &Path) -> io::Result<String> {
    let mut bytes = Vec::new();
    File::open(path)?.read_to_end(&mut bytes)?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

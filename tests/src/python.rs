//! Python interpreters: the project virtualenv with the real client libraries, and Debian's
//! system interpreter with carbon (the reference for hashing and tagged-series encoding).

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::sync::OnceLock;
use std::time::Duration;

use crate::process::{find_binary, run_with_timeout};
use crate::workspace_root;

/// Environment variable that overrides the virtualenv interpreter.
pub const PYTHON_ENV: &str = "FLUXGATE_TEST_PYTHON";

/// Debian's interpreter, the one graphite-carbon's Python package is installed for.
const SYSTEM_PYTHON: &str = "/usr/bin/python3";

/// A Python interpreter to run snippets with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Python {
    interpreter: PathBuf,
}

impl Python {
    /// The virtualenv interpreter with aioinflux, influxdb, influxdb-client and aiographite:
    /// `$FLUXGATE_TEST_PYTHON`, else `<workspace>/.venv/bin/python`.
    ///
    /// # Panics
    /// When it does not exist, saying how to create it.
    pub fn venv() -> Python {
        let wanted = match std::env::var_os(PYTHON_ENV) {
            Some(path) if !path.is_empty() => PathBuf::from(path),
            _ => workspace_root().join(".venv").join("bin").join("python"),
        };
        let interpreter = find_binary(&wanted.to_string_lossy()).unwrap_or_else(|| {
            panic!(
                "Python test interpreter {} not found: run scripts/install-test-deps.sh \
                 (it creates .venv with the pinned client libraries), or set {PYTHON_ENV}",
                wanted.display()
            )
        });
        Python { interpreter }
    }

    /// Debian's `/usr/bin/python3`, checked to import carbon.
    ///
    /// # Panics
    /// When it is missing or carbon does not import, saying which package to install.
    pub fn system() -> Python {
        // Checked once per test process: importing carbon costs a Python start-up.
        static CHECKED: OnceLock<Result<PathBuf, String>> = OnceLock::new();
        let checked = CHECKED.get_or_init(|| {
            let interpreter = find_binary(SYSTEM_PYTHON).ok_or_else(|| {
                format!(
                    "{SYSTEM_PYTHON} not found: install it with `apt-get install graphite-carbon` \
                     or run scripts/install-test-deps.sh"
                )
            })?;
            let python = Python { interpreter };
            let (status, _, stderr) =
                python.run("import carbon.routers, whisper", &[], Duration::from_secs(30));
            if status.success() {
                Ok(python.interpreter)
            } else {
                Err(format!(
                    "carbon does not import in {SYSTEM_PYTHON}: install it with \
                     `apt-get install graphite-carbon` or run scripts/install-test-deps.sh\n{stderr}"
                ))
            }
        });
        match checked {
            Ok(interpreter) => Python {
                interpreter: interpreter.clone(),
            },
            Err(message) => panic!("{message}"),
        }
    }

    /// The interpreter's path.
    pub fn path(&self) -> &Path {
        &self.interpreter
    }

    /// Runs `python -c <code> <args...>` (so `sys.argv[1:]` is `args`) and returns its exit
    /// status, stdout and stderr.
    ///
    /// # Panics
    /// When it cannot start or runs longer than `timeout` (it is killed; the message has its
    /// output).
    pub fn run(
        &self,
        code: &str,
        args: &[&str],
        timeout: Duration,
    ) -> (ExitStatus, String, String) {
        self.run_with_input(code, args, b"", timeout)
    }

    /// [`Python::run`] with `stdin` fed to the process.
    pub fn run_with_input(
        &self,
        code: &str,
        args: &[&str],
        stdin: &[u8],
        timeout: Duration,
    ) -> (ExitStatus, String, String) {
        let mut command = Command::new(&self.interpreter);
        command
            .arg("-c")
            .arg(code)
            .args(args)
            .env("PYTHONUNBUFFERED", "1")
            .env("PYTHONDONTWRITEBYTECODE", "1")
            // aioinflux warns at import that pandas is absent; that is expected here.
            .env("PYTHONWARNINGS", "ignore");
        run_with_timeout(command, stdin, timeout)
    }

    /// [`Python::run`], requiring success; returns stdout.
    ///
    /// # Panics
    /// When the snippet fails, with its stderr and stdout.
    pub fn run_ok(&self, code: &str, args: &[&str], timeout: Duration) -> String {
        let (status, stdout, stderr) = self.run(code, args, timeout);
        assert!(
            status.success(),
            "python snippet failed ({status}) with {}:\n{code}\n--- stderr ---\n{stderr}\n\
             --- stdout ---\n{stdout}",
            self.interpreter.display()
        );
        stdout
    }
}

/// Runs a snippet with the virtualenv interpreter ([`Python::venv`]).
pub fn run_python(code: &str, args: &[&str], timeout: Duration) -> (ExitStatus, String, String) {
    Python::venv().run(code, args, timeout)
}

/// Debian's interpreter with carbon ([`Python::system`]).
pub fn system_python() -> Python {
    Python::system()
}

//! Steps that run beside the others. On a 2-core machine the long CPU-bound installs of a
//! first CI run (the RocketMQ engine, cargo-deny) would add their whole build time to the
//! run; started at the lowest CPU priority beside the foreground steps they take the CPU
//! those leave idle (crate downloads, links, tests waiting on sockets and timers) and
//! nothing from them. Each writes its output to a log file, shown when it fails.

use crate::Result;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread::{self, JoinHandle};
use std::time::Instant;

/// Bytes of a failed background step's log shown in the error.
const LOG_TAIL_BYTES: u64 = 8 * 1024;

/// A step running on its own thread; [`wait`](Background::wait) for its result.
pub(crate) struct Background<T> {
    step: &'static str,
    log: PathBuf,
    started: Instant,
    handle: JoinHandle<Result<T>>,
}

impl<T: Send + 'static> Background<T> {
    /// Starts `work` on a thread; it gets the path of the log its commands append to
    /// (created empty here).
    ///
    /// # Errors
    ///
    /// The log file cannot be created.
    pub(crate) fn start(
        step: &'static str,
        log: PathBuf,
        work: impl FnOnce(&Path) -> Result<T> + Send + 'static,
    ) -> Result<Self> {
        if let Some(dir) = log.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("[{step}] cannot create {}: {e}", dir.display()))?;
        }
        File::create(&log).map_err(|e| format!("[{step}] cannot create {}: {e}", log.display()))?;
        println!(
            "\n==> [{step}] started in the background at the lowest CPU priority (log: {})",
            log.display()
        );
        let path = log.clone();
        Ok(Self {
            step,
            log,
            started: Instant::now(),
            handle: thread::spawn(move || work(&path)),
        })
    }

    /// Waits for the step; its result, with the end of its log in the error when it failed.
    ///
    /// # Errors
    ///
    /// The step failed or its thread panicked.
    pub(crate) fn wait(self) -> Result<T> {
        let Self {
            step,
            log,
            started,
            handle,
        } = self;
        println!("\n==> [{step}] waiting for the background step");
        let waited = Instant::now();
        let result = handle
            .join()
            .unwrap_or_else(|_| Err(format!("[{step}] the background thread panicked")));
        println!(
            "==> [{step}] {} in {:.1}s after its start ({:.1}s waited for)",
            if result.is_ok() { "ok" } else { "FAILED" },
            started.elapsed().as_secs_f64(),
            waited.elapsed().as_secs_f64()
        );
        result.map_err(|e| format!("{e}\n--- end of {} ---\n{}", log.display(), tail(&log)))
    }
}

/// Runs `cmd` at the lowest CPU priority (`nice -n 19`; as is where `nice` is missing)
/// with its stdout and stderr appended to `log`.
///
/// # Errors
///
/// The command cannot start or exits unsuccessfully.
pub(crate) fn run_logged(step: &str, cmd: &Command, log: &Path) -> Result {
    let mut niced = Command::new("nice");
    niced
        .args(["-n", "19"])
        .arg(cmd.get_program())
        .args(cmd.get_args());
    let mut plain = Command::new(cmd.get_program());
    plain.args(cmd.get_args());
    for c in [&mut niced, &mut plain] {
        if let Some(dir) = cmd.get_current_dir() {
            c.current_dir(dir);
        }
        for (key, value) in cmd.get_envs() {
            match value {
                Some(v) => c.env(key, v),
                None => c.env_remove(key),
            };
        }
    }
    let shown = crate::shown(cmd);
    let open = || {
        File::options()
            .append(true)
            .open(log)
            .map_err(|e| format!("[{step}] cannot open {}: {e}", log.display()))
    };
    let spawn = |c: &mut Command| -> Result<std::process::Child> {
        let out = open()?;
        let err = out.try_clone().map_err(|e| format!("[{step}] {e}"))?;
        c.stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("[{step}] could not start `{shown}`: {e}"))
    };
    let has_nice = Command::new("nice")
        .arg("true")
        .status()
        .is_ok_and(|s| s.success());
    let mut child = spawn(if has_nice { &mut niced } else { &mut plain })?;
    let status = child
        .wait()
        .map_err(|e| format!("[{step}] waiting for `{shown}`: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("[{step}] `{shown}` failed with {status}"))
    }
}

/// The last [`LOG_TAIL_BYTES`] of `log`, or why it cannot be read.
fn tail(log: &Path) -> String {
    let read = || -> std::io::Result<String> {
        let mut f = File::open(log)?;
        let len = f.metadata()?.len();
        f.seek(SeekFrom::Start(len.saturating_sub(LOG_TAIL_BYTES)))?;
        let mut bytes = Vec::new();
        f.read_to_end(&mut bytes)?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    };
    read().unwrap_or_else(|e| format!("({} unreadable: {e})", log.display()))
}

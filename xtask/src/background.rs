//! Steps that run beside the others. On a 2-core machine the long CPU-bound installs of a
//! first CI run (the RocketMQ engine, cargo-deny) would add their whole build time to the
//! run; started at the lowest CPU priority beside the foreground steps they take the CPU
//! those leave idle (crate downloads, links, tests waiting on sockets and timers) and
//! nothing from them. Each writes its output to a log file, shown when it fails.
//!
//! A step not waited for (xtask ends early: a foreground step failed) is stopped when its
//! [`Background`] is dropped: the command running is sent SIGTERM and no further command
//! starts, so no orphaned build keeps running and holding cargo's build-directory lock.

use crate::Result;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::Instant;

/// Bytes of a failed background step's log shown in the error.
const LOG_TAIL_BYTES: u64 = 8 * 1024;

/// A step running on its own thread; [`wait`](Background::wait) for its result. Dropped
/// without a wait, it stops the step (see the module docs).
pub(crate) struct Background<T> {
    step: &'static str,
    log: PathBuf,
    started: Instant,
    running: Running,
    handle: Option<JoinHandle<Result<T>>>,
}

/// Where a background step's commands log, and which of them is running.
pub(crate) struct StepLog {
    path: PathBuf,
    running: Running,
}

/// What a step is doing, shared between its thread and its [`Background`].
type Running = Arc<Mutex<Slot>>;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Slot {
    /// Between commands.
    #[default]
    Idle,
    /// Running the command with this process id.
    Command(u32),
    /// Stopped: no command may start any more.
    Stopped,
}

impl<T: Send + 'static> Background<T> {
    /// Starts `work` on a thread; it gets the log its commands append to (created empty
    /// here), to pass to [`run_logged`].
    ///
    /// # Errors
    ///
    /// The log file cannot be created.
    pub(crate) fn start(
        step: &'static str,
        log: PathBuf,
        work: impl FnOnce(&StepLog) -> Result<T> + Send + 'static,
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
        let running = Running::default();
        let step_log = StepLog {
            path: log.clone(),
            running: Arc::clone(&running),
        };
        Ok(Self {
            step,
            log,
            started: Instant::now(),
            running,
            handle: Some(thread::spawn(move || work(&step_log))),
        })
    }

    /// Waits for the step; its result, with the end of its log in the error when it failed.
    ///
    /// # Errors
    ///
    /// The step failed or its thread panicked.
    pub(crate) fn wait(mut self) -> Result<T> {
        let step = self.step;
        println!("\n==> [{step}] waiting for the background step");
        let waited = Instant::now();
        let result = self.join();
        println!(
            "==> [{step}] {} in {:.1}s after its start ({:.1}s waited for)",
            if result.is_ok() { "ok" } else { "FAILED" },
            self.started.elapsed().as_secs_f64(),
            waited.elapsed().as_secs_f64()
        );
        result.map_err(|e| {
            let log = &self.log;
            format!("{e}\n--- end of {} ---\n{}", log.display(), tail(log))
        })
    }

    /// The step's result once its thread ends (an error if it was already taken).
    fn join(&mut self) -> Result<T> {
        let step = self.step;
        match self.handle.take() {
            Some(handle) => handle
                .join()
                .unwrap_or_else(|_| Err(format!("[{step}] the background thread panicked"))),
            None => Err(format!("[{step}] already waited for")),
        }
    }
}

impl<T> Drop for Background<T> {
    fn drop(&mut self) {
        let Some(handle) = self.handle.take() else {
            return;
        };
        let slot = std::mem::replace(
            &mut *self.running.lock().unwrap_or_else(PoisonError::into_inner),
            Slot::Stopped,
        );
        if let Slot::Command(pid) = slot {
            println!(
                "==> [{}] stopping the background step (pid {pid})",
                self.step
            );
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
        let _ = handle.join();
    }
}

/// Runs `cmd` at the lowest CPU priority (`nice -n 19`; as is where `nice` is missing)
/// with its stdout and stderr appended to `log`.
///
/// # Errors
///
/// The command cannot start or exits unsuccessfully.
/// The step was stopped: no command starts after that, and one running is sent SIGTERM.
pub(crate) fn run_logged(step: &str, cmd: &Command, log: &StepLog) -> Result {
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
            .open(&log.path)
            .map_err(|e| format!("[{step}] cannot open {}: {e}", log.path.display()))
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
    let mut child = {
        let mut running = log.running.lock().unwrap_or_else(PoisonError::into_inner);
        if *running == Slot::Stopped {
            return Err(format!("[{step}] stopped before `{shown}`"));
        }
        let child = spawn(if has_nice { &mut niced } else { &mut plain })?;
        *running = Slot::Command(child.id());
        child
    };
    let waited = child.wait();
    {
        let mut running = log.running.lock().unwrap_or_else(PoisonError::into_inner);
        if *running != Slot::Stopped {
            *running = Slot::Idle;
        }
    }
    let status = waited.map_err(|e| format!("[{step}] waiting for `{shown}`: {e}"))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether a process with this id exists (and is not a zombie we reaped).
    fn alive(pid: u32) -> bool {
        Command::new("kill")
            .args(["-0", &pid.to_string()])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    #[test]
    fn a_step_dropped_unwaited_stops_its_command_and_starts_no_other() {
        let dir = std::env::temp_dir().join(format!("xtask-background-{}", std::process::id()));
        let marker = dir.join("second-command-ran");
        let step = Background::start("test", dir.join("step.log"), {
            let marker = marker.clone();
            move |log| {
                // Stopped, the first command fails; the step goes on to its next one.
                let _ = run_logged("test", Command::new("sleep").arg("600"), log);
                run_logged("test", Command::new("touch").arg(&marker), log)
            }
        })
        .expect("start");
        // The first command is running once its pid is recorded.
        let pid = loop {
            if let Slot::Command(pid) = *step.running.lock().unwrap() {
                break pid;
            }
            thread::yield_now();
        };
        assert!(alive(pid), "the step's command runs");
        drop(step);
        assert!(!alive(pid), "the step's command was stopped with it");
        assert!(
            !marker.exists(),
            "no command starts after the step was stopped"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}

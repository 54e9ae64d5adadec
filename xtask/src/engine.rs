//! The RocketMQ engine the gateway's tests run against (`rocketmq-rust` 1.0.0: name server,
//! broker, gRPC proxy; see `docs/rocketmq-engine.md`), and `protoc`, which building it and the
//! gateway's gRPC bindings (`rocketmq-proxy-core`) need.

use crate::background::{Background, run_logged};
use crate::{Result, cargo, run};
use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// The engine release the tests are written against.
const VERSION: &str = "1.0.0";
/// The proxy's crate, built with its cluster mode alone.
const PROXY_CRATE: &str = "rocketmq-proxy";
/// Crates and the binary each installs.
const CRATES: [(&str, &str); 3] = [
    ("rocketmq-namesrv", "rocketmq-namesrv-rust"),
    ("rocketmq-broker", "rocketmq-broker-rust"),
    ("rocketmq-proxy", "rocketmq-proxy-rust"),
];
/// The engine's release optimisation level. Its crates set no profile, so `cargo install`
/// would build at 3: 40–60 min on 2 cores. Measured on fresh CI runs (2026-12-01, 2 cores):
/// at 1, with the proxy's default features, 29m 43s in the foreground of a 69-min run; at 0,
/// with the proxy's cluster mode alone, 23m 29s in the background of a 41.6-min run, which
/// waited 8 min for it. The gateway tests and benchmark run against it unchanged: the engine
/// is a test fixture whose speed the benchmark compares the gateway with, in the same run,
/// not a product.
const OPT_LEVEL: &str = "0";
/// What the engine harness (`tests/src/engine.rs`) reads the binaries' directory from.
pub(crate) const BIN_ENV: &str = "MQ_ROCKETMQ_ENGINE_BIN";

/// `$HOME/.cache/mq-http-rs/engine`: the `cargo install --root` of the engine.
fn root() -> Result<PathBuf> {
    let home = env::var_os("HOME").ok_or("HOME is not set: cannot place the RocketMQ engine")?;
    Ok(Path::new(&home).join(".cache/mq-http-rs/engine"))
}

/// `cargo xtask engine-install`: installs the three engine binaries into `root()/bin` unless
/// all are there and report [`VERSION`]; returns the binaries' directory.
pub(crate) fn install() -> Result<PathBuf> {
    match missing()? {
        (bin, missing) if missing.is_empty() => Ok(bin),
        (bin, missing) => build(&bin, &missing, &mut |step, cmd| run(step, cmd)),
    }
}

/// An engine install that may still be building ([`start_install`]).
pub(crate) enum Install {
    /// Installed already: the binaries' directory.
    Ready(PathBuf),
    /// Building in the background.
    Building(Background<PathBuf>),
}

impl Install {
    /// The binaries' directory, once installed.
    ///
    /// # Errors
    ///
    /// The background install failed.
    pub(crate) fn wait(self) -> Result<PathBuf> {
        match self {
            Self::Ready(bin) => Ok(bin),
            Self::Building(b) => b.wait(),
        }
    }
}

/// [`install`] in the background, at the lowest CPU priority, its output in `log`: `cargo
/// xtask ci` starts it first and waits for it before the tests, so on a fresh machine the
/// engine builds while the workspace is checked and built.
///
/// # Errors
///
/// `protoc` is missing and cannot be installed, or the log cannot be created.
pub(crate) fn start_install(log: PathBuf) -> Result<Install> {
    let (bin, missing) = missing()?;
    if missing.is_empty() {
        return Ok(Install::Ready(bin));
    }
    Background::start("engine-install", log, move |log| {
        build(&bin, &missing, &mut |step, cmd| run_logged(step, cmd, log))
    })
    .map(Install::Building)
}

/// The binaries' directory and the crates whose binary is missing or of another version
/// (none: says so).
fn missing() -> Result<(PathBuf, Vec<&'static str>)> {
    let bin = root()?.join("bin");
    let missing: Vec<&'static str> = CRATES
        .iter()
        .filter(|(_, binary)| !reports_version(&bin.join(binary)))
        .map(|(krate, _)| *krate)
        .collect();
    if missing.is_empty() {
        println!(
            "==> [engine-install] rocketmq-rust {VERSION} (namesrv, broker, proxy) already installed in {}",
            bin.display()
        );
    }
    Ok((bin, missing))
}

/// Builds the `missing` crates into `bin`'s parent with `run_step`, at [`OPT_LEVEL`], in a
/// build directory removed afterwards: the name server and broker in one `cargo install`
/// (their shared dependencies compile once), then the proxy with its cluster mode alone
/// (its default local mode links a whole broker the tests never start).
fn build(
    bin: &Path,
    missing: &[&str],
    run_step: &mut dyn FnMut(&str, &mut Command) -> Result,
) -> Result<PathBuf> {
    ensure_protoc()?;
    let root = bin
        .parent()
        .ok_or("the engine's bin directory has no parent")?;
    let target = root.join("build-target");
    let started = Instant::now();
    let install = |crates: &[&&str], extra: &[&str]| {
        let mut cmd = cargo();
        cmd
            // `--force` replaces a binary of another version or one cargo did not record.
            .args(["install", "--locked", "--force", "--root"])
            .arg(root)
            .args(extra)
            .args(crates.iter().map(|krate| format!("{krate}@{VERSION}")))
            .env("CARGO_TARGET_DIR", &target)
            .env("CARGO_PROFILE_RELEASE_OPT_LEVEL", OPT_LEVEL);
        cmd
    };
    let (proxy, servers): (Vec<&&str>, Vec<&&str>) =
        missing.iter().partition(|k| **k == PROXY_CRATE);
    let mut result = Ok(());
    if !servers.is_empty() {
        result = run_step("engine-install", &mut install(&servers, &[]));
    }
    if result.is_ok() && !proxy.is_empty() {
        result = run_step(
            "engine-install",
            &mut install(
                &proxy,
                &["--no-default-features", "--features", "cluster-mode"],
            ),
        );
    }
    let cleanup = std::fs::remove_dir_all(&target);
    result?;
    if let Err(e) = cleanup {
        println!(
            "==> [engine-install] could not remove the build directory {}: {e}",
            target.display()
        );
    }
    if let Some((_, binary)) = CRATES
        .iter()
        .find(|(_, binary)| !reports_version(&bin.join(binary)))
    {
        return Err(format!(
            "[engine-install] {} does not report version {VERSION} after the install",
            bin.join(binary).display()
        ));
    }
    let secs = started.elapsed().as_secs();
    println!(
        "==> [engine-install] installed {} in {}m {:02}s into {}",
        missing.join(", "),
        secs / 60,
        secs % 60,
        bin.display()
    );
    Ok(bin.to_owned())
}

/// Whether `binary --version` prints `version=VERSION` (the engine's format).
fn reports_version(binary: &Path) -> bool {
    Command::new(binary)
        .arg("--version")
        .output()
        .is_ok_and(|o| {
            o.status.success()
                && String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .any(|l| l.trim() == format!("version={VERSION}"))
        })
}

/// Makes sure `protoc` (or the one `$PROTOC` names, which the protobuf build scripts prefer)
/// runs. Without it, as root on a machine with `apt-get`, installs Debian's
/// `protobuf-compiler` (running `apt-get update` first if the install fails); otherwise
/// fails with what to install.
pub(crate) fn ensure_protoc() -> Result {
    let protoc = env::var_os("PROTOC").unwrap_or_else(|| "protoc".into());
    if let Some(version) = version_of(Path::new(&protoc)) {
        println!("==> [protoc] {version}");
        return Ok(());
    }
    if env::var_os("PROTOC").is_some() {
        return Err(format!(
            "PROTOC is set to {} but that does not run; point it at protoc or unset it",
            Path::new(&protoc).display()
        ));
    }
    let how = "protoc (the Protocol Buffers compiler) is required to build the RocketMQ \
               gateway's gRPC bindings (rocketmq-proxy-core) and the engine; install it \
               (Debian/Ubuntu: `apt-get install -y protobuf-compiler`; macOS: `brew install \
               protobuf`) or set PROTOC to its path";
    apt_install("protoc", &["protobuf-compiler"]).map_err(|e| format!("{how} ({e})"))?;
    let version = version_of(Path::new("protoc")).ok_or_else(|| {
        format!("{how} (protobuf-compiler was installed but protoc does not run)")
    })?;
    println!("==> [protoc] installed {version}");
    Ok(())
}

/// Installs Debian `packages` with `apt-get install -y` (idempotent: installed packages are
/// left as they are), running `apt-get update` first if the install fails (a fresh
/// machine's package lists may be missing or stale). Needs root and apt-get; `what` names
/// the step in the log.
pub(crate) fn apt_install(what: &str, packages: &[&str]) -> Result {
    if version_of(Path::new("apt-get")).is_none() || !is_root() {
        return Err(format!(
            "not installing {} myself: that needs apt-get and root",
            packages.join(" ")
        ));
    }
    let install = || {
        let mut cmd = Command::new("apt-get");
        cmd.args(["install", "-y"])
            .args(packages)
            .env("DEBIAN_FRONTEND", "noninteractive");
        cmd
    };
    let step = format!("{what}: apt-get install");
    if run(&step, &mut install()).is_err() {
        let mut update = Command::new("apt-get");
        update
            .arg("update")
            .env("DEBIAN_FRONTEND", "noninteractive");
        run(&format!("{what}: apt-get update"), &mut update)?;
        run(&step, &mut install())?;
    }
    Ok(())
}

/// The first line `program --version` prints, if it runs and succeeds.
pub(crate) fn version_of(program: &Path) -> Option<String> {
    version_with(program, "--version")
}

/// The first line `program version_arg` prints, if it runs and succeeds (for programs
/// whose version flag is not `--version`, such as `tinyproxy -v`).
pub(crate) fn version_with(program: &Path, version_arg: &str) -> Option<String> {
    let out = Command::new(program).arg(version_arg).output().ok()?;
    out.status.success().then(|| {
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .unwrap_or_default()
            .trim()
            .to_owned()
    })
}

/// Whether this process runs as root (`id -u` prints 0; xtask has no libc dependency).
fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).trim() == "0")
}

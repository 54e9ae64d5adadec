//! The RocketMQ engine the gateway's tests run against (`rocketmq-rust` 1.0.0: name server,
//! broker, gRPC proxy; see `docs/rocketmq-engine.md`), and `protoc`, which building it and the
//! gateway's gRPC bindings (`rocketmq-proxy-core`) need.

use crate::{Result, cargo, run};
use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// The engine release the tests are written against.
const VERSION: &str = "1.0.0";
/// Crates and the binary each installs.
const CRATES: [(&str, &str); 3] = [
    ("rocketmq-namesrv", "rocketmq-namesrv-rust"),
    ("rocketmq-broker", "rocketmq-broker-rust"),
    ("rocketmq-proxy", "rocketmq-proxy-rust"),
];
/// The engine's release optimisation level. Its crates set no profile, so `cargo install`
/// would build at 3; at 1 the first install took 3,190 CPU-seconds here (user + system,
/// measured 2026-12-01), about half of an optimised build's 40–60 min on 2 cores, and the
/// gateway tests and benchmark run against it unchanged: the engine is a test fixture
/// whose speed the benchmark compares the gateway with, in the same run, not a product.
const OPT_LEVEL: &str = "1";
/// What the engine harness (`tests/src/engine.rs`) reads the binaries' directory from.
pub(crate) const BIN_ENV: &str = "MQ_ROCKETMQ_ENGINE_BIN";

/// `$HOME/.cache/mq-http-rs/engine`: the `cargo install --root` of the engine.
fn root() -> Result<PathBuf> {
    let home = env::var_os("HOME").ok_or("HOME is not set: cannot place the RocketMQ engine")?;
    Ok(Path::new(&home).join(".cache/mq-http-rs/engine"))
}

/// `cargo xtask engine-install`: installs the three engine binaries into `root()/bin` unless
/// all are there and report [`VERSION`]; returns the binaries' directory.
///
/// One `cargo install` builds every missing crate with a shared target directory (their
/// dependencies compile once), removed afterwards, at [`OPT_LEVEL`]: about 53 CPU-minutes
/// (≈ 30 min on 2 idle cores) the first time.
pub(crate) fn install() -> Result<PathBuf> {
    let root = root()?;
    let bin = root.join("bin");
    let missing: Vec<&str> = CRATES
        .iter()
        .filter(|(_, binary)| !reports_version(&bin.join(binary)))
        .map(|(krate, _)| *krate)
        .collect();
    if missing.is_empty() {
        println!(
            "==> [engine-install] rocketmq-rust {VERSION} (namesrv, broker, proxy) already installed in {}",
            bin.display()
        );
        return Ok(bin);
    }
    ensure_protoc()?;
    let target = root.join("build-target");
    let started = Instant::now();
    let mut install = cargo();
    install
        // `--force` replaces a binary of another version or one cargo did not record.
        .args(["install", "--locked", "--force", "--root"])
        .arg(&root)
        .args(missing.iter().map(|krate| format!("{krate}@{VERSION}")))
        .env("CARGO_TARGET_DIR", &target)
        .env("CARGO_PROFILE_RELEASE_OPT_LEVEL", OPT_LEVEL);
    let result = run("engine-install", &mut install);
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
    Ok(bin)
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

//! Project automation. Run `cargo xtask help` for the list of commands.
//!
//! Every command prints what it runs and stops at the first failure with a non-zero exit code.

mod background;
mod browser;
mod engine;

use background::{Background, run_logged};

use std::env;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

/// Version of the official Python SDK used by the interoperability tests.
const PYTHON_SDK: &str = "mq-http-sdk==1.0.3";

const HELP: &str = "\
cargo xtask <command>

commands:
  ci                      fmt check, clippy, all tests (incl. Python SDK interop, the
                          RocketMQ engine, the console in headless chromium and the client
                          through a real tinyproxy), docs, packaging, cargo-deny; installs
                          protoc, tinyproxy, the engine, chromium and chromedriver first if
                          missing
  interop-env             create/refresh the Python virtualenv with the official SDK (idempotent)
  package [--verify]      cargo package of every published crate (ci runs it without --verify)
  engine-install          install the RocketMQ engine (rocketmq-rust 1.0.0: namesrv, broker,
                          proxy) into ~/.cache/mq-http-rs/engine (idempotent; the first time
                          ~20 min on 2 cores) and protoc if missing
  tools                   install the Debian programs the build and tests need when missing
                          (protoc, tinyproxy; idempotent; ci does it first)
  fuzz <target> <secs>    run one cargo-fuzz target for <secs> seconds (installs cargo-fuzz)
  fuzz-all <secs>         run every fuzz target for <secs> seconds each
  load [--release] [secs [conns]]
                          the broker load test (mq-broker tests/load.rs) for <secs> seconds
                          (default 60) with <conns> connections (default 1000); prints p99
                          latency and the broker's RSS (figures for RELIABILITY.md)
  bench [--quick] [--only proto|suite|client-cpu|gateway]
                          benchmarks (release) and regenerate the tables in BENCHMARKS.md;
                          --quick: smoke run in the test profile, tables to target/bench-quick;
                          --only: that benchmark and its table alone (repeatable; client-cpu
                          is the suite's client CPU section alone); creates the interop
                          virtualenv (the official Python SDK) for the suite if missing
  help                    this text
";

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("ci") => ci(),
        Some("package") => package(),
        Some("interop-env") => interop_env().map(|_| ()),
        Some("engine-install") => engine::install().map(|_| ()),
        Some("tools") => tools(),
        Some("fuzz") => match (args.get(1), args.get(2)) {
            (Some(target), Some(secs)) => fuzz(target, secs),
            _ => Err("usage: cargo xtask fuzz <target> <seconds>".into()),
        },
        Some("fuzz-all") => match args.get(1) {
            Some(secs) => fuzz_all(secs),
            None => Err("usage: cargo xtask fuzz-all <seconds>".into()),
        },
        Some("load") => load(&args[1..]),
        Some("bench") => bench_args(&args[1..]).and_then(|(quick, only)| bench(quick, &only)),
        Some("help") | None => {
            print!("{HELP}");
            Ok(())
        }
        Some(other) => Err(format!("unknown command {other:?}\n\n{HELP}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

type Result<T = ()> = std::result::Result<T, String>;

fn root() -> PathBuf {
    let manifest = env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into());
    Path::new(&manifest)
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn cargo() -> Command {
    let mut c = Command::new(env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(root());
    if env::var_os("CI").is_some() {
        // A clean CI build gains nothing from incremental state, and it doubles the disk
        // a debug build takes.
        c.env("CARGO_INCREMENTAL", "0");
    }
    c
}

/// `cmd` as a shell line, for the log.
fn shown(cmd: &Command) -> String {
    format!(
        "{} {}",
        cmd.get_program().to_string_lossy(),
        cmd.get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    )
}

fn run(step: &str, cmd: &mut Command) -> Result {
    let shown = shown(cmd);
    println!("\n==> [{step}] {shown}");
    let started = Instant::now();
    let status = cmd
        .status()
        .map_err(|e| format!("[{step}] could not start `{shown}`: {e}"))?;
    println!(
        "==> [{step}] {} in {:.1}s",
        if status.success() { "ok" } else { "FAILED" },
        started.elapsed().as_secs_f64()
    );
    if status.success() {
        Ok(())
    } else {
        Err(format!("[{step}] `{shown}` failed with {status}"))
    }
}

fn has_cargo_subcommand(name: &str) -> bool {
    cargo()
        .args([name, "--version"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

fn ensure_installed(subcommand: &str, krate: &str) -> Result {
    if has_cargo_subcommand(subcommand) {
        return Ok(());
    }
    run(
        &format!("install {krate}"),
        cargo().args(["install", "--locked", krate]),
    )
}

/// `cargo xtask tools`: protoc and tinyproxy, installed from Debian when missing.
fn tools() -> Result {
    engine::ensure_protoc()?;
    ensure_tinyproxy()
}

/// Makes sure `tinyproxy` runs (the real HTTP proxy the client's proxy tests start,
/// `tests/src/proxy.rs`), installing Debian's `tinyproxy` when missing
/// ([`engine::apt_install`]).
fn ensure_tinyproxy() -> Result {
    let program = Path::new("tinyproxy");
    if let Some(version) = engine::version_with(program, "-v") {
        println!("==> [tinyproxy] {version}");
        return Ok(());
    }
    let how = "tinyproxy is required by the client's HTTP proxy tests; install it \
               (Debian/Ubuntu: `apt-get install -y tinyproxy`; macOS: `brew install tinyproxy`)";
    engine::apt_install("tinyproxy", &["tinyproxy"]).map_err(|e| format!("{how} ({e})"))?;
    let version = engine::version_with(program, "-v")
        .ok_or_else(|| format!("{how} (tinyproxy was installed but does not run)"))?;
    println!("==> [tinyproxy] installed {version}");
    Ok(())
}

fn ci() -> Result {
    let started = Instant::now();
    // The workspace build runs protoc (rocketmq-proxy-core's bindings for the gateway); the
    // client's proxy tests run a real tinyproxy.
    tools()?;
    // A fresh machine's longest step, the engine's first build, runs beside fmt, clippy and
    // the test build, at the lowest priority, and is waited for before the tests.
    let logs = root().join("target").join("xtask");
    let engine = engine::start_install(logs.join("engine-install.log"))?;
    run("fmt", cargo().args(["fmt", "--all", "--", "--check"]))?;
    run(
        "clippy",
        cargo().args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]),
    )?;
    let python = interop_env()?;
    run(
        "test build",
        cargo().args(["test", "--workspace", "--all-targets", "--no-run"]),
    )?;
    let engine_bin = engine.wait()?;
    // cargo-deny, needed at the end, builds beside the tests the first time.
    let deny_install = if has_cargo_subcommand("deny") {
        None
    } else {
        let build_dir = logs.join("cargo-deny-build");
        Some(Background::start(
            "install cargo-deny",
            logs.join("cargo-deny-install.log"),
            move |log| {
                let mut install = cargo();
                install
                    .args(["install", "--locked", "cargo-deny", "--target-dir"])
                    .arg(&build_dir);
                let result = run_logged("install cargo-deny", &install, log);
                let _ = std::fs::remove_dir_all(&build_dir);
                result
            },
        )?)
    };
    let (chromium, chromedriver) = browser::ensure_browser()?;
    // The load test opens 1,000 connections at both ends: lift the open-files soft limit.
    run(
        "test",
        cargo_with_raised_nofile()
            // Every failing test binary reported in one run; panic messages, not backtraces,
            // at the end of the log.
            .args(["test", "--workspace", "--all-targets", "--no-fail-fast"])
            .env("RUST_BACKTRACE", "0")
            .env("MQ_INTEROP_PYTHON", &python)
            .env("MQ_REQUIRE_INTEROP", "1")
            .env("MQ_REQUIRE_PROXY", "1")
            .env("MQ_REQUIRE_BROWSER", "1")
            .env(browser::CHROMIUM_ENV, &chromium)
            .env(browser::CHROMEDRIVER_ENV, &chromedriver)
            .env(engine::BIN_ENV, &engine_bin),
    )?;
    run("doctest", cargo().args(["test", "--workspace", "--doc"]))?;
    run(
        "doc",
        cargo()
            .args(["doc", "--workspace", "--no-deps"])
            .env("RUSTDOCFLAGS", "-D warnings"),
    )?;
    // The workspace docs and doctests build mq-client without its optional OpenTelemetry
    // bridge: its examples are compiled here.
    run(
        "doctest otel",
        cargo().args([
            "test",
            "-p",
            "mq-client",
            "--doc",
            "--features",
            "otel,tokio",
        ]),
    )?;
    run(
        "doc otel",
        cargo()
            .args(["doc", "-p", "mq-client", "--no-deps", "--features", "otel"])
            .env("RUSTDOCFLAGS", "-D warnings"),
    )?;
    bench(true, &[])?;
    package()?;
    if let Some(install) = deny_install {
        install.wait()?;
    }
    deny()?;
    println!("\n==> ci passed in {:.0}s", started.elapsed().as_secs_f64());
    Ok(())
}

/// The crates published to crates.io, in dependency order.
const PUBLISHED: &[&str] = &[
    "mq-proto",
    "mq-client",
    "mq-tokio",
    "mq-async-std",
    "mq-broker",
    "mq-cli",
];

/// `cargo package` of every published crate together (cargo resolves their path
/// dependencies through a local registry): metadata complete, every file a crate needs
/// inside it. `--no-verify`: the packaged sources are the workspace's, which the test step
/// has just built and tested; `cargo xtask package --verify` builds each package alone.
fn package() -> Result {
    let verify = env::args().any(|a| a == "--verify");
    let mut cmd = cargo();
    cmd.arg("package");
    for krate in PUBLISHED {
        cmd.args(["-p", krate]);
    }
    if !verify {
        cmd.arg("--no-verify");
    }
    if env::var_os("CI").is_none() {
        // A working tree with uncommitted changes still packages while developing.
        cmd.arg("--allow-dirty");
    }
    run("package", &mut cmd)
}

/// `cargo deny check`. The advisory database is fetched from GitHub; where that is unreachable
/// (an offline machine with only package registries), a previously fetched copy is used, and
/// without one the advisories check is skipped with a loud notice while bans, licenses and
/// sources are still enforced.
fn deny() -> Result {
    if run("deny", cargo().args(["deny", "check"])).is_ok() {
        return Ok(());
    }
    // Distinguish "advisories could not be fetched" from real findings.
    run(
        "deny",
        cargo().args(["deny", "check", "bans", "licenses", "sources"]),
    )?;
    if run(
        "deny",
        // Against a local copy of the database, if there is one (cargo-deny 0.20: a global
        // `--offline`; `check --disable-fetch` is refused as an unknown argument).
        cargo().args(["deny", "--offline", "check", "advisories"]),
    )
    .is_ok()
    {
        return Ok(());
    }
    let probe = cargo()
        .args(["deny", "fetch", "db"])
        .output()
        .map_err(|e| format!("cargo deny fetch: {e}"))?;
    if probe.status.success() {
        return Err("[deny] advisories check failed (see above)".into());
    }
    println!(
        "==> [deny] NOTICE: the RustSec advisory database cannot be fetched on this machine \
         (no network access to GitHub) and no local copy exists; advisories were NOT checked. \
         bans, licenses and sources passed. Run `cargo deny check advisories` where GitHub is \
         reachable."
    );
    Ok(())
}

/// Creates `target/interop-venv` with the official Python SDK and returns its python path.
fn interop_env() -> Result<PathBuf> {
    let venv = root().join("target").join("interop-venv");
    let python = venv.join("bin").join("python");
    let marker = venv.join(".mq-http-sdk-installed");
    if marker.exists() && python.exists() {
        println!("==> [interop-env] {} ready ({PYTHON_SDK})", venv.display());
        return Ok(python);
    }
    let system_python = ["python3", "python"]
        .into_iter()
        .find(|p| {
            Command::new(p)
                .arg("--version")
                .output()
                .map(|o| o.status.success())
                .unwrap_or(false)
        })
        .ok_or("python3 is required for the interoperability tests and the client CPU benchmark")?;
    run(
        "interop-env",
        Command::new(system_python).args(["-m", "venv"]).arg(&venv),
    )?;
    run(
        "interop-env",
        Command::new(&python).args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            PYTHON_SDK,
        ]),
    )?;
    std::fs::write(&marker, PYTHON_SDK)
        .map_err(|e| format!("writing {}: {e}", marker.display()))?;
    Ok(python)
}

fn fuzz_targets() -> Result<Vec<String>> {
    let dir = root().join("fuzz").join("fuzz_targets");
    let mut targets: Vec<String> = std::fs::read_dir(&dir)
        .map_err(|e| format!("reading {}: {e}", dir.display()))?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.strip_suffix(".rs").map(str::to_owned)
        })
        .collect();
    targets.sort();
    Ok(targets)
}

fn fuzz(target: &str, secs: &str) -> Result {
    let secs: u64 = secs
        .parse()
        .map_err(|_| format!("seconds must be a number, got {secs:?}"))?;
    let targets = fuzz_targets()?;
    if !targets.iter().any(|t| t == target) {
        return Err(format!(
            "unknown fuzz target {target:?}; known: {}",
            targets.join(", ")
        ));
    }
    ensure_installed("fuzz", "cargo-fuzz")?;
    // New inputs go to a working corpus under target/ (first directory); the checked-in
    // seeds are read only.
    let seeds = root().join("fuzz").join("corpus").join(target);
    let corpus = root().join("target").join("fuzz-corpus").join(target);
    std::fs::create_dir_all(&corpus).map_err(|e| format!("creating {}: {e}", corpus.display()))?;
    run(
        &format!("fuzz {target}"),
        // cargo-fuzz needs nightly; `$CARGO` points at the stable toolchain's binary, so go
        // through rustup.
        Command::new("rustup")
            .current_dir(root().join("fuzz"))
            .args(["run", "nightly", "cargo", "fuzz", "run", target])
            .arg(&corpus)
            .arg(&seeds)
            .args(["--", &format!("-max_total_time={secs}")]),
    )
}

fn fuzz_all(secs: &str) -> Result {
    for target in fuzz_targets()? {
        fuzz(&target, secs)?;
    }
    Ok(())
}

/// `cargo` run with the open-files soft limit raised to the hard limit (xtask stays
/// dependency-free: the shell does it); arguments are added by the caller.
fn cargo_with_raised_nofile() -> Command {
    let mut cmd = Command::new("sh");
    cmd.current_dir(root())
        .arg("-c")
        .arg("ulimit -n \"$(ulimit -Hn)\" 2>/dev/null || true; exec \"$@\"")
        .arg("sh")
        .arg(env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd
}

/// `cargo xtask load [--release] [secs [conns]]`: the load test of `mq-broker`
/// (`tests/load.rs`) with a longer run and more connections than in CI, the open-files limit
/// raised to the hard limit first (both ends of every connection run on this machine).
fn load(args: &[String]) -> Result {
    let release = args.first().is_some_and(|a| a == "--release");
    let rest = if release { &args[1..] } else { args };
    let number = |i: usize, default: u64, what: &str| -> Result<u64> {
        match rest.get(i) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|_| {
                format!("usage: cargo xtask load [--release] [secs [conns]]; bad {what} {v:?}")
            }),
        }
    };
    let secs = number(0, 60, "seconds")?;
    let conns = number(1, 1_000, "connection count")?;
    if rest.len() > 2 {
        return Err("usage: cargo xtask load [--release] [secs [conns]]".into());
    }
    let mut cmd = cargo_with_raised_nofile();
    cmd.args(["test", "-p", "mq-broker", "--test", "load"]);
    if release {
        cmd.arg("--release");
    }
    cmd.args(["--", "--nocapture"])
        .env("MQ_LOAD_SECS", secs.to_string())
        .env("MQ_LOAD_CONNS", conns.to_string());
    run(&format!("load {secs}s x {conns} connections"), &mut cmd)
}

/// The benchmarks of `cargo xtask bench` and the tables each writes, `TABLE.md` spliced into
/// the `<!-- generated:TABLE -->` region of BENCHMARKS.md. The system suite writes two;
/// `client-cpu` runs its client CPU section (`--only client-cpu`) alone.
const BENCHES: [(&str, &[&str]); 4] = [
    ("proto", &["proto"]),
    ("suite", &["suite", CLIENT_CPU]),
    (CLIENT_CPU, &[CLIENT_CPU]),
    ("gateway", &["gateway"]),
];

/// The suite's client CPU section: its `--only` name and its table.
const CLIENT_CPU: &str = "client-cpu";

/// `[--quick] [--only NAME]...` → (quick, the benchmarks named; empty = all).
fn bench_args(args: &[String]) -> Result<(bool, Vec<String>)> {
    let usage = || {
        format!(
            "usage: cargo xtask bench [--quick] [--only {}]",
            BENCHES.map(|(name, _)| name).join("|")
        )
    };
    let (mut quick, mut only) = (false, Vec::new());
    let mut args = args.iter();
    while let Some(a) = args.next() {
        match a.as_str() {
            "--quick" => quick = true,
            "--only" => match args.next() {
                Some(name) if BENCHES.iter().any(|(b, _)| *b == name.as_str()) => {
                    only.push(name.clone())
                }
                other => return Err(format!("{} (got --only {other:?})", usage())),
            },
            other => return Err(format!("{} (got {other:?})", usage())),
        }
    }
    Ok((quick, only))
}

/// `cargo xtask bench`: the wire-layer benchmarks (criterion, `mq-proto/benches/proto.rs`),
/// the system suite (`mq-cli/benches/suite.rs`) and the gateway against direct gRPC on the
/// RocketMQ engine (`tests/benches/gateway.rs`, installs the engine if missing) in release
/// mode; their Markdown tables and a description of this machine replace the generated
/// regions of BENCHMARKS.md. `only` names the benchmarks to run (empty: all); the others'
/// tables and the machine description are then left as they are. The suite's client CPU
/// section runs the official Python SDK: the interop virtualenv is created first if missing
/// ([`interop_env`], as `cargo xtask ci` does) and passed as `MQ_INTEROP_PYTHON`.
///
/// `--quick` is the smoke run CI uses: the same benchmark programs in the test profile (no
/// separate release build: CI has just built that profile), criterion running each benchmark
/// once, the suite and the gateway benchmark with tiny sizes; the tables go to
/// `target/bench-quick/BENCHMARKS.md` and BENCHMARKS.md is left alone. No timing is asserted.
fn bench(quick: bool, only: &[String]) -> Result {
    let started = Instant::now();
    let runs = |name: &str| only.is_empty() || only.iter().any(|o| o == name);
    let out = root()
        .join("target")
        .join(if quick { "bench-quick" } else { "bench" });
    // Stale fragments must not be spliced in.
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).map_err(|e| format!("creating {}: {e}", out.display()))?;
    let criterion_home = root().join("target").join("criterion");
    let mode = if quick { "test" } else { "bench" };
    // `--workspace` with one bench target: dependencies get the features of the workspace's
    // test build, so the smoke run reuses what CI just built (with `-p` each package's own
    // feature set recompiled much of the dependency tree: 3m 09s of a fresh run for the
    // gateway bench alone). The broker binary is built with `-p`: a `cargo build` has no
    // dev-dependencies, so `--workspace` there unifies to neither set (140 s against 44 s).
    if runs("proto") {
        run(
            "bench: mq-proto",
            cargo()
                .args([mode, "--workspace", "--bench", "proto"])
                .env("MQ_BENCH_OUT", &out)
                .env("CRITERION_HOME", &criterion_home),
        )?;
    }
    if runs("suite") || runs(CLIENT_CPU) {
        // The suite runs the `mq-broker` binary for the idle long-poll memory and the client
        // CPU measurements, and the official Python SDK in the latter.
        let python = interop_env()?;
        let mut broker = cargo();
        broker.args(["build", "-p", "mq-broker", "--bin", "mq-broker"]);
        if !quick {
            broker.arg("--release");
        }
        run("bench: build mq-broker", &mut broker)?;
        // 10,000 idle long polls need that many descriptors in the suite and in the broker:
        // raise the soft limit to the hard one (xtask stays dependency-free: the shell does it).
        let mut suite = Command::new("sh");
        suite
            .current_dir(root())
            .arg("-c")
            .arg("ulimit -n \"$(ulimit -Hn)\" 2>/dev/null || true; exec \"$@\"")
            .arg("sh")
            .arg(env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args([mode, "--workspace", "--bench", "suite"])
            .env("MQ_BENCH_OUT", &out)
            .env("MQ_INTEROP_PYTHON", &python);
        if !runs("suite") {
            suite.args(["--", "--only", CLIENT_CPU]);
        }
        run("bench: suite", &mut suite)?;
    }
    if runs("gateway") {
        let engine_bin = engine::install()?;
        run(
            "bench: gateway",
            cargo()
                .args([mode, "--workspace", "--bench", "gateway"])
                .env("MQ_BENCH_OUT", &out)
                .env(engine::BIN_ENV, &engine_bin),
        )?;
    }
    let template = root().join("BENCHMARKS.md");
    let mut doc = std::fs::read_to_string(&template)
        .map_err(|e| format!("reading {}: {e}", template.display()))?;
    if only.is_empty() {
        doc = splice(&doc, "machine", &machine_description())?;
    }
    let mut tables: Vec<&str> = Vec::new();
    for table in BENCHES
        .iter()
        .filter(|(name, _)| runs(name))
        .flat_map(|(_, tables)| tables.iter().copied())
    {
        if !tables.contains(&table) {
            tables.push(table);
        }
    }
    for name in tables {
        match std::fs::read_to_string(out.join(format!("{name}.md"))) {
            Ok(fragment) => doc = splice(&doc, name, &fragment)?,
            // Criterion writes no estimates when it only tests (quick mode).
            Err(_) if quick => println!("==> [bench] no {name} table in quick mode; kept as is"),
            Err(e) => return Err(format!("[bench] missing {name}.md: {e}")),
        }
    }
    let target = if quick {
        out.join("BENCHMARKS.md")
    } else {
        template
    };
    std::fs::write(&target, doc).map_err(|e| format!("writing {}: {e}", target.display()))?;
    println!(
        "\n==> bench{} done in {:.0}s; tables written to {}",
        if quick { " --quick" } else { "" },
        started.elapsed().as_secs_f64(),
        target.display()
    );
    Ok(())
}

/// Replaces the text between `<!-- generated:NAME -->` and `<!-- /generated:NAME -->`.
fn splice(doc: &str, name: &str, fragment: &str) -> Result<String> {
    let (open, close) = (
        format!("<!-- generated:{name} -->"),
        format!("<!-- /generated:{name} -->"),
    );
    let start = doc
        .find(&open)
        .ok_or_else(|| format!("BENCHMARKS.md has no {open} marker"))?
        + open.len();
    let end = doc[start..]
        .find(&close)
        .ok_or_else(|| format!("BENCHMARKS.md has no {close} marker after {open}"))?
        + start;
    Ok(format!(
        "{}\n{}\n{}",
        &doc[..start],
        fragment.trim(),
        &doc[end..]
    ))
}

/// Cores, CPU model, memory, kernel and toolchain of this machine, as a Markdown list.
fn machine_description() -> String {
    let cores = std::thread::available_parallelism()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".into());
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |name: &str| {
        cpuinfo
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_owned())
    };
    let model = field("model name").unwrap_or_else(|| "unknown".into());
    let mhz = field("cpu MHz")
        .map(|m| format!(", {m} MHz"))
        .unwrap_or_default();
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            let kb: f64 = m
                .lines()
                .find(|l| l.starts_with("MemTotal:"))?
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()?;
            Some(format!("{:.1} GiB", kb / 1024.0 / 1024.0))
        })
        .unwrap_or_else(|| "unknown".into());
    let output = |cmd: &str, args: &[&str]| {
        Command::new(cmd)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_else(|| "unknown".into())
    };
    format!(
        "- CPU: {model}{mhz}; {cores} logical cores available (`nproc`)\n\
         - Memory: {memory}\n\
         - Kernel: {}\n\
         - Toolchain: {}\n\
         - Open files limit (soft/hard): {}/{}",
        output("uname", &["-sr"]),
        output("rustc", &["-V"]),
        output("sh", &["-c", "ulimit -Sn"]),
        output("sh", &["-c", "ulimit -Hn"]),
    )
}

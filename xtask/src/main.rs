//! Project automation. Run `cargo xtask help` for the list of commands.
//!
//! Every command prints what it runs and stops at the first failure with a non-zero exit code.

use std::env;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

/// Version of the official Python SDK used by the interoperability tests.
const PYTHON_SDK: &str = "mq-http-sdk==1.0.3";

const HELP: &str = "\
cargo xtask <command>

commands:
  ci                      fmt check, clippy, all tests (incl. Python SDK interop), docs, cargo-deny
  interop-env             create/refresh the Python virtualenv with the official SDK (idempotent)
  fuzz <target> <secs>    run one cargo-fuzz target for <secs> seconds (installs cargo-fuzz)
  fuzz-all <secs>         run every fuzz target for <secs> seconds each
  help                    this text
";

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("ci") => ci(),
        Some("interop-env") => interop_env().map(|_| ()),
        Some("fuzz") => match (args.get(1), args.get(2)) {
            (Some(target), Some(secs)) => fuzz(target, secs),
            _ => Err("usage: cargo xtask fuzz <target> <seconds>".into()),
        },
        Some("fuzz-all") => match args.get(1) {
            Some(secs) => fuzz_all(secs),
            None => Err("usage: cargo xtask fuzz-all <seconds>".into()),
        },
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
    c
}

fn run(step: &str, cmd: &mut Command) -> Result {
    let shown = format!(
        "{} {}",
        cmd.get_program().to_string_lossy(),
        cmd.get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    );
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

fn ci() -> Result {
    let started = Instant::now();
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
        "test",
        cargo()
            .args(["test", "--workspace", "--all-targets"])
            .env("MQ_INTEROP_PYTHON", &python)
            .env("MQ_REQUIRE_INTEROP", "1"),
    )?;
    run("doctest", cargo().args(["test", "--workspace", "--doc"]))?;
    run(
        "doc",
        cargo()
            .args(["doc", "--workspace", "--no-deps"])
            .env("RUSTDOCFLAGS", "-D warnings"),
    )?;
    ensure_installed("deny", "cargo-deny")?;
    deny()?;
    println!("\n==> ci passed in {:.0}s", started.elapsed().as_secs_f64());
    Ok(())
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
        cargo().args(["deny", "check", "--disable-fetch", "advisories"]),
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
        .ok_or("python3 is required for the interoperability tests")?;
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
    let corpus = root().join("fuzz").join("corpus").join(target);
    run(
        &format!("fuzz {target}"),
        cargo()
            .current_dir(root().join("fuzz"))
            .args(["+nightly", "fuzz", "run", target])
            .arg(&corpus)
            .args(["--", &format!("-max_total_time={secs}")]),
    )
}

fn fuzz_all(secs: &str) -> Result {
    for target in fuzz_targets()? {
        fuzz(&target, secs)?;
    }
    Ok(())
}

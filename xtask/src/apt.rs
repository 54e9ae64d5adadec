//! Programs the build or the tests need from Debian packages (`protoc`, `tinyproxy`): checked
//! first, installed with `apt-get` only when missing (so repeated runs install nothing).

use crate::{Result, run};
use std::env;
use std::ffi::OsString;
use std::path::Path;
use std::process::Command;

/// A program that comes from a Debian package.
pub(crate) struct Tool {
    /// Short name for the log (`==> [name] …`).
    pub(crate) name: &'static str,
    /// The program to run.
    pub(crate) program: &'static str,
    /// The argument that makes it print its version and exit successfully.
    pub(crate) version_arg: &'static str,
    /// An environment variable naming the program to use instead, if the tool honours one.
    pub(crate) override_env: Option<&'static str>,
    /// The Debian package that installs it.
    pub(crate) package: &'static str,
    /// What needs it and how to install it by hand (for the error message).
    pub(crate) how: &'static str,
}

impl Tool {
    /// Makes sure the program (or the one `override_env` names) runs. Without it, as root on
    /// a machine with `apt-get`, installs the package (running `apt-get update` first if the
    /// install fails); otherwise fails with what to install.
    pub(crate) fn ensure(&self) -> Result {
        let name = self.name;
        let chosen: OsString = self
            .override_env
            .and_then(env::var_os)
            .unwrap_or_else(|| self.program.into());
        if let Some(version) = version_of(Path::new(&chosen), self.version_arg) {
            println!("==> [{name}] {version}");
            return Ok(());
        }
        if let Some(var) = self.override_env.filter(|v| env::var_os(v).is_some()) {
            return Err(format!(
                "{var} is set to {} but that does not run; point it at {} or unset it",
                Path::new(&chosen).display(),
                self.program
            ));
        }
        let how = self.how;
        if version_of(Path::new("apt-get"), "--version").is_none() || !is_root() {
            return Err(format!(
                "{how} (not installing it myself: that needs apt-get and root)"
            ));
        }
        let apt_install = || {
            let mut cmd = Command::new("apt-get");
            cmd.args(["install", "-y", self.package])
                .env("DEBIAN_FRONTEND", "noninteractive");
            cmd
        };
        let step = format!("{name}: apt-get install {}", self.package);
        if run(&step, &mut apt_install()).is_err() {
            let mut update = Command::new("apt-get");
            update
                .arg("update")
                .env("DEBIAN_FRONTEND", "noninteractive");
            run(&format!("{name}: apt-get update"), &mut update)?;
            run(&step, &mut apt_install())?;
        }
        let version = version_of(Path::new(self.program), self.version_arg).ok_or_else(|| {
            format!(
                "{how} ({} was installed but {} does not run)",
                self.package, self.program
            )
        })?;
        println!("==> [{name}] installed {version}");
        Ok(())
    }
}

/// `protoc`, for the RocketMQ gateway's gRPC bindings and the engine.
pub(crate) const PROTOC: Tool = Tool {
    name: "protoc",
    program: "protoc",
    version_arg: "--version",
    override_env: Some("PROTOC"),
    package: "protobuf-compiler",
    how: "protoc (the Protocol Buffers compiler) is required to build the RocketMQ \
          gateway's gRPC bindings (rocketmq-proxy-core) and the engine; install it \
          (Debian/Ubuntu: `apt-get install -y protobuf-compiler`; macOS: `brew install \
          protobuf`) or set PROTOC to its path",
};

/// `tinyproxy`, the real HTTP proxy the client's proxy tests start (`tests/src/proxy.rs`).
pub(crate) const TINYPROXY: Tool = Tool {
    name: "tinyproxy",
    program: "tinyproxy",
    version_arg: "-v",
    override_env: None,
    package: "tinyproxy",
    how: "tinyproxy is required by the client's HTTP proxy tests; install it \
          (Debian/Ubuntu: `apt-get install -y tinyproxy`; macOS: `brew install tinyproxy`)",
};

/// The first line `program version_arg` prints, if it runs and succeeds.
fn version_of(program: &Path, version_arg: &str) -> Option<String> {
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

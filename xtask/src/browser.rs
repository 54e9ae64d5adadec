//! The browser the console's tests drive: Debian's `chromium` and `chromium-driver`
//! (headless Chromium and its WebDriver server), installed when missing.

use crate::Result;
use crate::engine::{apt_install, version_of};
use std::path::{Path, PathBuf};

/// Where the tests find the browser (`crates/mq-broker/tests/console.rs` reads them).
pub(crate) const CHROMIUM_ENV: &str = "MQ_CHROMIUM";
/// Where the tests find the WebDriver server.
pub(crate) const CHROMEDRIVER_ENV: &str = "MQ_CHROMEDRIVER";

/// Makes sure `chromium` and `chromedriver` run, installing Debian's `chromium` and
/// `chromium-driver` if not (as root, with apt-get); returns their paths.
pub(crate) fn ensure_browser() -> Result<(PathBuf, PathBuf)> {
    let found = || Some((which("chromium")?, which("chromedriver")?));
    let (chromium, driver) = match found() {
        Some(both) => both,
        None => {
            apt_install("browser", &["chromium", "chromium-driver"]).map_err(|e| {
                format!("the console's browser tests need chromium and chromedriver ({e})")
            })?;
            found()
                .ok_or("chromium-driver was installed but chromium or chromedriver does not run")?
        }
    };
    println!(
        "==> [browser] {} / {}",
        version_of(&chromium).unwrap_or_default(),
        version_of(&driver).unwrap_or_default()
    );
    Ok((chromium, driver))
}

/// The first `name` on `PATH` that runs `--version`.
fn which(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file() && version_of(Path::new(p)).is_some())
}

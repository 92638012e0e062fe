//! `cargo xtask swagger-ui`: Swagger UI works in a real browser on a machine without
//! internet. Starts the Order Processor on its embedded store, opens `/docs` in headless
//! Chromium, tries `POST /orders` and expects a 201 (`xtask/swagger-ui.js`).

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use crate::{
    services::{Service, free_port, target_dir, wait_until_up},
    step,
};

/// The browser driver, pinned; it drives the system's Chromium and downloads no browser.
const PLAYWRIGHT: &str = "playwright-core@1.65.1";

pub fn check(root: &Path) -> Result<(), String> {
    let chromium = chromium()?;
    let target = target_dir(root);
    let modules = node_modules(&target)?;
    step::cargo(
        root,
        "build the order processor",
        &["build", "--bin", "order-processor"],
    )?;
    let work = target.join("xtask-swagger-ui");
    let _ = fs::remove_dir_all(&work);
    fs::create_dir_all(&work).map_err(|err| format!("cannot create {}: {err}", work.display()))?;
    let port = free_port()?;
    let _service = Service::start(
        "order-processor",
        &target.join("debug/order-processor"),
        &[
            ("SERVER_PORT", &port.to_string()),
            ("DATA_DIR", &work.join("data").display().to_string()),
        ],
        &work,
    )?;
    wait_until_up(port, "/health/ready")?;
    step::run(
        "Swagger UI in headless Chromium: try POST /orders",
        Command::new("node")
            .arg(root.join("xtask/swagger-ui.js"))
            .arg(format!("http://127.0.0.1:{port}"))
            .env("NODE_PATH", &modules)
            .env("CHROMIUM", &chromium),
    )
}

/// The browser: `CHROMIUM`, or Debian's `chromium`, installed with apt when it is missing.
fn chromium() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("CHROMIUM") {
        return Ok(PathBuf::from(path));
    }
    let path = PathBuf::from("/usr/bin/chromium");
    if !path.exists() {
        step::apt_install("chromium", &[]).map_err(|err| {
            format!("{err}: install Debian's `chromium` package, or set CHROMIUM")
        })?;
    }
    Ok(path)
}

/// `node_modules` with the pinned driver, installed on first use.
fn node_modules(target: &Path) -> Result<PathBuf, String> {
    let prefix = target.join("xtask-node");
    let stamp = prefix.join("installed");
    if fs::read_to_string(&stamp).is_ok_and(|have| have == PLAYWRIGHT) {
        return Ok(prefix.join("node_modules"));
    }
    fs::create_dir_all(&prefix)
        .map_err(|err| format!("cannot create {}: {err}", prefix.display()))?;
    step::run(
        "node browser driver",
        Command::new("npm")
            .args([
                "install",
                "--no-audit",
                "--no-fund",
                "--no-save",
                "--prefix",
            ])
            .arg(&prefix)
            .arg(PLAYWRIGHT),
    )?;
    fs::write(&stamp, PLAYWRIGHT)
        .map_err(|err| format!("cannot write {}: {err}", stamp.display()))?;
    Ok(prefix.join("node_modules"))
}

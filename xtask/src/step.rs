//! Runs one named step: prints what it checks, runs it, prints how long it took.

use std::{path::Path, process::Command, time::Instant};

/// Runs `command`, failing with the step's name when it exits non-zero.
pub fn run(name: &str, command: &mut Command) -> Result<(), String> {
    timed(name, || {
        let status = command
            .status()
            .map_err(|err| format!("cannot run {:?}: {err}", command.get_program()))?;
        if status.success() {
            Ok(())
        } else {
            Err(status.to_string())
        }
    })
}

/// Runs an in-process check as a named step: its name, then how it ended and how long it took.
pub fn timed(name: &str, check: impl FnOnce() -> Result<(), String>) -> Result<(), String> {
    println!("==> {name}");
    let started = Instant::now();
    let result = check();
    let seconds = started.elapsed().as_secs_f64();
    match result {
        Ok(()) => {
            println!("==> {name}: ok in {seconds:.1} s");
            Ok(())
        }
        Err(err) => Err(format!("{name}: failed after {seconds:.1} s: {err}")),
    }
}

pub fn cargo(root: &Path, name: &str, args: &[&str]) -> Result<(), String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    run(name, Command::new(cargo).args(args).current_dir(root))
}

/// Installs Debian's `package` with apt, after refreshing the package lists; `options` go to
/// `apt-get install` before the package name.
pub fn apt_install(package: &str, options: &[&str]) -> Result<(), String> {
    run(
        "apt-get update",
        Command::new("apt-get").args(["update", "-qq"]),
    )?;
    run(
        &format!("install Debian's {package}"),
        Command::new("apt-get")
            .args(["install", "-y", "-qq"])
            .args(options)
            .arg(package)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}

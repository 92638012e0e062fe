//! Runs one named step: prints what it checks, runs it, prints how long it took.

use std::{path::Path, process::Command, time::Instant};

/// Runs `command`, failing with the step's name when it exits non-zero.
pub fn run(name: &str, command: &mut Command) -> Result<(), String> {
    println!("==> {name}");
    let started = Instant::now();
    let status = command
        .status()
        .map_err(|err| format!("{name}: cannot run {:?}: {err}", command.get_program()))?;
    let seconds = started.elapsed().as_secs_f64();
    if status.success() {
        println!("==> {name}: ok in {seconds:.1} s");
        Ok(())
    } else {
        Err(format!("{name}: failed after {seconds:.1} s ({status})"))
    }
}

pub fn cargo(root: &Path, name: &str, args: &[&str]) -> Result<(), String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    run(name, Command::new(cargo).args(args).current_dir(root))
}

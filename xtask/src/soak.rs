//! `cargo xtask soak [--duration D] [--seed N]`: the fault-injection test of `tests/chaos.rs`
//! (two Order Processors, each behind its own fault proxy, one killed half-way) run for as
//! long as asked, with its own seed, printing what it did and the invariants it checked.

use std::{path::Path, process::Command};

use crate::step;

const USAGE: &str = "usage: cargo xtask soak [--duration 10m] [--seed N]";

pub fn run(root: &Path, args: &[&str]) -> Result<(), String> {
    let mut duration = "10m";
    let mut seed = None;
    let mut rest = args.iter();
    while let Some(flag) = rest.next() {
        let value = rest.next().ok_or(USAGE)?;
        match *flag {
            "--duration" => duration = value,
            "--seed" => {
                value
                    .parse::<u64>()
                    .map_err(|_| format!("--seed takes an unsigned integer, not {value:?}"))?;
                seed = Some(*value);
            }
            _ => return Err(USAGE.to_owned()),
        }
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut command = Command::new(cargo);
    command
        .args(["test", "--test", "chaos", "--", "--nocapture"])
        .env("CHAOS_DURATION", duration)
        .current_dir(root);
    if let Some(seed) = seed {
        command.env("CHAOS_SEED", seed);
    }
    step::run(
        &format!("soak: faults and a killed replica for {duration}"),
        &mut command,
    )
}

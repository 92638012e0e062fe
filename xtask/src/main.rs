//! Project tasks, run as `cargo xtask <task>`. Each step prints what it checks and how long
//! it took; the first failing step stops the run with a non-zero exit code.

mod python;
mod specs;
mod step;

use std::{env, path::PathBuf, process::ExitCode};

const USAGE: &str = "\
usage: cargo xtask <task>

tasks:
  test             everything CI checks: formatting, lints, the test suite, spec validation
  validate-specs   check both OpenAPI specs with openapi-spec-validator
";

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("test") => test(),
        Some("validate-specs") => specs::validate(&root()),
        _ => {
            eprint!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask: {err}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace root: xtask lives one level below it.
fn root() -> PathBuf {
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .map_or(manifest_dir.clone(), PathBuf::from)
}

fn test() -> Result<(), String> {
    let root = root();
    step::cargo(&root, "formatting", &["fmt", "--all", "--check"])?;
    step::cargo(
        &root,
        "lints",
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
    )?;
    specs::validate(&root)?;
    step::cargo(
        &root,
        "test suite",
        &["test", "--workspace", "--all-targets"],
    )?;
    Ok(())
}

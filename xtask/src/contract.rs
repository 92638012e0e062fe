//! `cargo xtask contract`: checks both contracts from every side.
//!
//! - the SDK's copy of the spec: the SDK crate is packaged on its own, so it carries a copy of
//!   `openapi/order-processor.yaml`; without `--check` the copy is refreshed, with it a stale
//!   copy fails; then `cargo package` builds the SDK from its package alone;
//! - spec drift: the document each generated server serves equals its committed spec;
//! - consumer: the SDK against a live Order Processor, over every operation and every
//!   documented error status it can provoke;
//! - provider: schemathesis generates requests from each committed spec and runs all its
//!   checks against the running services (`xtask/schemathesis.toml` says where an expected
//!   status is widened, and why);
//! - breaking changes against the last release.

use std::{fs, path::Path, process::Command};

use crate::{
    breaking, python,
    services::{Service, free_port, target_dir, wait_until_up},
    step,
};

const SPEC: &str = "openapi/order-processor.yaml";
const SDK_SPEC: &str = "sdk/openapi/order-processor.yaml";

/// Examples per operation and the seed: enough to reach every documented status, fixed so
/// that a failure reproduces.
const MAX_EXAMPLES: &str = "100";
const SEED: &str = "20261124";

pub fn run(root: &Path, check: bool) -> Result<(), String> {
    sdk_spec(root, check)?;
    step::cargo(
        root,
        "spec drift: each served document equals its committed spec",
        &["test", "--test", "contracts"],
    )?;
    // Verifying the package builds it from the packaged files alone, which proves the spec
    // copy travels inside the crate.
    step::cargo(
        root,
        "the SDK packages on its own",
        &[
            "package",
            "--quiet",
            "--allow-dirty",
            "-p",
            "order-processor-client",
        ],
    )?;
    step::cargo(
        root,
        "consumer: the SDK against a live Order Processor",
        &["test", "-p", "order-processor-client"],
    )?;
    provider(root)?;
    breaking::check(root)
}

fn sdk_spec(root: &Path, check: bool) -> Result<(), String> {
    step::timed(&format!("the SDK's spec is a copy of {SPEC}"), || {
        let read = |path: &str| {
            fs::read_to_string(root.join(path)).map_err(|err| format!("cannot read {path}: {err}"))
        };
        let spec = read(SPEC)?;
        let copy = read(SDK_SPEC).unwrap_or_default();
        if spec != copy {
            if check {
                return Err(format!(
                    "{SDK_SPEC} is not a copy: run `cargo xtask contract` to refresh it"
                ));
            }
            fs::write(root.join(SDK_SPEC), spec)
                .map_err(|err| format!("cannot write {SDK_SPEC}: {err}"))?;
            println!("refreshed {SDK_SPEC}");
        }
        Ok(())
    })
}

fn provider(root: &Path) -> Result<(), String> {
    let tools = python::venv(root)?;
    step::cargo(root, "build both services", &["build", "--bins"])?;
    let target = target_dir(root);
    let work = target.join("xtask-contract");
    let _ = fs::remove_dir_all(&work);
    fs::create_dir_all(&work).map_err(|err| format!("cannot create {}: {err}", work.display()))?;

    let storage_port = free_port()?;
    let storage_url = format!("http://127.0.0.1:{storage_port}");
    let _storage = Service::start(
        "storage-service",
        &target.join("debug/storage-service"),
        &[
            ("SERVER_PORT", &storage_port.to_string()),
            ("DATA_DIR", &work.join("storage").display().to_string()),
        ],
        &work,
    )?;
    wait_until_up(storage_port, "/health")?;

    let processor_port = free_port()?;
    let _processor = Service::start(
        "order-processor",
        &target.join("debug/order-processor"),
        &[
            ("SERVER_PORT", &processor_port.to_string()),
            ("STORAGE_SERVICE_URL", &storage_url),
        ],
        &work,
    )?;
    wait_until_up(processor_port, "/health/ready")?;

    schemathesis(root, &tools, "openapi/storage-service.yaml", &storage_url)?;
    schemathesis(
        root,
        &tools,
        "openapi/order-processor.yaml",
        &format!("http://127.0.0.1:{processor_port}"),
    )
}

fn schemathesis(root: &Path, tools: &Path, spec: &str, url: &str) -> Result<(), String> {
    step::run(
        &format!("provider: schemathesis, all checks, {spec} against {url}"),
        Command::new(tools.join("schemathesis"))
            .current_dir(root)
            .args([
                "--config-file",
                "xtask/schemathesis.toml",
                "run",
                spec,
                "--url",
                url,
            ])
            .args([
                "--checks",
                "all",
                "--max-examples",
                MAX_EXAMPLES,
                "--seed",
                SEED,
            ])
            .args(["--generation-database", "none", "--no-color"]),
    )
}

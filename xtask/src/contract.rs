//! `cargo xtask contract`: checks both contracts from every side.
//!
//! - the SDK's copy of the spec: the SDK crate is packaged on its own, so it carries a copy of
//!   `openapi/order-processor.yaml`; without `--check` the copy is refreshed, with it a stale
//!   copy fails; then `cargo package` builds the SDK from its package alone;
//! - spec drift: the document each generated server serves equals its committed spec;
//! - consumer: the SDK against a live Order Processor, over every operation and every
//!   documented error status it can provoke;
//! - provider: schemathesis generates requests from each committed spec and runs all its
//!   checks against the running services, which check bearer tokens: it sends a token with
//!   every scope of the service where the spec declares one, and `ignored_auth` checks that
//!   each such operation refuses a request without it (`xtask/schemathesis.toml` says where
//!   an expected status is widened, and why);
//! - breaking changes against the last release.

use std::{fs, path::Path, process::Command, time::Duration};

use crate::{
    breaking, python,
    services::{BUILD_SERVICES, Service, free_port, target_dir, wait_until_up},
    step,
    tokens::{self, Issuer},
};

const SPEC: &str = "openapi/order-processor.yaml";
const SDK_SPEC: &str = "sdk/openapi/order-processor.yaml";

/// Examples per operation and the seed: enough to reach every documented status, fixed so
/// that a failure reproduces.
const MAX_EXAMPLES: &str = "100";
const SEED: &str = "20261124";

/// A service's audience and every scope it knows, which the token schemathesis sends holds:
/// no request the spec allows is refused for want of a right.
struct Access {
    audience: &'static str,
    scope: &'static str,
}

/// `orders:any-user` too: schemathesis makes up the users of the orders it places and reads.
const ORDER_PROCESSOR: Access = Access {
    audience: "order-processor",
    scope: "orders:write orders:read orders:any-user",
};
const STORAGE_SERVICE: Access = Access {
    audience: "storage-service",
    scope: "storage:orders storage:catalogue",
};

impl Access {
    /// The token schemathesis sends to this service.
    fn token(&self, issuer: &Issuer) -> Result<String, String> {
        issuer.token(self.audience, "contract", self.scope, TOKEN_LIFETIME)
    }
}
/// The Order Processor's own token to the Storage Service: what it needs, as deployed.
const STORAGE_SCOPE_OF_THE_ORDER_PROCESSOR: &str = "storage:orders";
/// Longer than the provider checks take (about a minute, a few on a busy machine), and short,
/// so that a token copied from the run's directory soon opens nothing.
const TOKEN_LIFETIME: Duration = Duration::from_secs(30 * 60);
/// The variable `xtask/schemathesis.toml` reads the token of the service under test from.
const TOKEN_VARIABLE: &str = "CONTRACT_BEARER_TOKEN";

pub fn run(root: &Path, check: bool) -> Result<(), String> {
    sdk_spec(root, check)?;
    step::cargo(
        root,
        "spec drift: each served document equals its committed spec",
        &["test", "--test", "contracts"],
    )?;
    step::cargo(
        root,
        "consumer: the SDK against a live Order Processor",
        &["test", "-p", "order-processor-client"],
    )?;
    beyond_the_test_suite(root)
}

/// `contract --check` after `cargo test --workspace`, which has run the spec-drift and consumer
/// tests already: run again with other package selections, they would only build the crates a
/// second time, with other features.
pub fn check_after_the_test_suite(root: &Path) -> Result<(), String> {
    sdk_spec(root, true)?;
    beyond_the_test_suite(root)
}

fn beyond_the_test_suite(root: &Path) -> Result<(), String> {
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
    step::cargo(root, "build both services", &BUILD_SERVICES)?;
    let target = target_dir(root);
    let work = target.join("xtask-contract");
    let _ = fs::remove_dir_all(&work);
    fs::create_dir_all(&work).map_err(|err| format!("cannot create {}: {err}", work.display()))?;

    // Both services check tokens, with one secret and each its own audience.
    let issuer = Issuer::new()?;
    let secret = work.join("auth-hs256-secret");
    issuer.write_secret(&secret)?;
    let secret = secret.display().to_string();
    let storage_token = work.join("storage-service-token");
    tokens::write(
        &storage_token,
        &issuer.token(
            STORAGE_SERVICE.audience,
            ORDER_PROCESSOR.audience,
            STORAGE_SCOPE_OF_THE_ORDER_PROCESSOR,
            TOKEN_LIFETIME,
        )?,
    )?;

    let storage_port = free_port()?;
    let storage_url = format!("http://127.0.0.1:{storage_port}");
    let _storage = Service::start(
        "storage-service",
        &target.join("debug/storage-service"),
        &[
            ("SERVER_PORT", &storage_port.to_string()),
            ("DATA_DIR", &work.join("storage").display().to_string()),
            ("AUTH_HS256_SECRET_FILE", &secret),
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
            ("AUTH_HS256_SECRET_FILE", &secret),
            (
                "STORAGE_SERVICE_TOKEN_FILE",
                &storage_token.display().to_string(),
            ),
        ],
        &work,
    )?;
    wait_until_up(processor_port, "/health/ready")?;

    schemathesis(
        root,
        &tools,
        "openapi/storage-service.yaml",
        &storage_url,
        &STORAGE_SERVICE.token(&issuer)?,
    )?;
    schemathesis(
        root,
        &tools,
        "openapi/order-processor.yaml",
        &format!("http://127.0.0.1:{processor_port}"),
        &ORDER_PROCESSOR.token(&issuer)?,
    )
}

/// Runs schemathesis on `spec` against `url`, with `token` for the operations that need one.
fn schemathesis(
    root: &Path,
    tools: &Path,
    spec: &str,
    url: &str,
    token: &str,
) -> Result<(), String> {
    step::run(
        &format!("provider: schemathesis, all checks, {spec} against {url}"),
        Command::new(tools.join("schemathesis"))
            .current_dir(root)
            // In the environment rather than on the command line, where any process could
            // read it; schemathesis masks it in what it prints.
            .env(TOKEN_VARIABLE, token)
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

//! Project tasks, run as `cargo xtask <task>`. Each step prints what it checks and how long
//! it took; the first failing step stops the run with a non-zero exit code.

mod bench;
mod breaking;
mod codegen;
mod contract;
mod deny;
mod manifests;
mod postgres;
mod python;
mod services;
mod soak;
mod specs;
mod step;
mod swagger_ui;
mod tokens;

use std::{env, path::PathBuf, process::ExitCode};

const USAGE: &str = "\
usage: cargo xtask <task>

tasks:
  test                    everything CI checks: formatting, lints, specs, the test suite
                          (installing Debian's postgresql for it when missing), the contract
                          checks, Swagger UI in a browser, the deployment files
  contract [--check]      the contracts from every side: spec drift, the SDK as consumer,
                          schemathesis on both services, breaking changes; without --check
                          it also refreshes the SDK's copy of the spec
  breaking                the breaking-change check of `contract` alone: each spec against
                          its baseline, every breaking change acknowledged in
                          openapi/CHANGELOG.md
  validate-specs          check both OpenAPI specs with openapi-spec-validator
  deny                    the dependency policy of deny.toml: licenses, bans, sources
  manifests               lint the Dockerfile and validate the Kubernetes manifests
  swagger-ui              try POST /orders from Swagger UI in headless Chromium
  bench [--quick] [--repeat N] [--baseline REV]
                          what an order costs: both services in release mode under wrk,
                          CPU and memory of each process; --baseline REV measures REV's
                          build in the same run (report in target/bench/);
                          --smoke: a few seconds on the debug build, as the suite runs it
  soak [--duration 10m] [--seed N]
                          the fault-injection test (tests/chaos.rs) run longer: two
                          replicas behind fault proxies, one killed half-way
  codegen --print <spec>  print the server and client code generated from a spec,
                          e.g. `cargo xtask codegen --print openapi/order-processor.yaml`
";

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let root = root();
    let result = match args.as_slice() {
        ["test"] => test(),
        ["contract"] => contract::run(&root, false),
        ["contract", "--check"] => contract::run(&root, true),
        ["breaking"] => breaking::check(&root),
        ["validate-specs"] => specs::validate(&root),
        ["deny"] => deny::check(&root),
        ["manifests"] => manifests::check(&root),
        ["swagger-ui"] => swagger_ui::check(&root),
        ["bench", "--smoke"] => bench::smoke(&root),
        ["bench", options @ ..] => bench::run(&root, options),
        ["codegen", "--print", spec] => codegen::print(&root, spec),
        ["soak", rest @ ..] => soak::run(&root, rest),
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
    // The OTLP export is off by default: checked here so that it keeps building.
    step::cargo(
        &root,
        "OTLP export builds",
        &["check", "--features", "otlp"],
    )?;
    deny::check(&root)?;
    specs::validate(&root)?;
    // The tests start PostgreSQL servers of their own from these binaries.
    postgres::ensure_server_binaries()?;
    // The default targets: libraries, binaries, tests, examples (built) and doctests.
    step::cargo(&root, "test suite", &["test", "--workspace"])?;
    // The bench is not a test, but a short run of it keeps it working.
    bench::smoke(&root)?;
    contract::check_after_the_test_suite(&root)?;
    swagger_ui::check(&root)?;
    manifests::check(&root)
}

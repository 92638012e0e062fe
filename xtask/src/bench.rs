//! `cargo xtask bench`: what an order costs. Builds both services in release mode, starts
//! them as separate processes on loopback, drives them with wrk (Debian's package, installed
//! when missing) and reads each process's own CPU time and peak memory from `/proc`.
//!
//! Groups of runs, each at every concurrency:
//! - the Order Processor through the reference Storage Service: `POST /orders` over many
//!   books, `POST /orders` on one book, `GET /orders/{id}`, `GET /orders/user/{userId}`;
//! - the same `POST /orders` over many books through a Storage Service on PostgreSQL;
//! - reference point: `GET /orders/{id}` through a bare forwarder on the same stack
//!   (`xtask/bench/forwarder.rs`), the least a service making that storage call can spend;
//! - reference point: the Storage Service alone, driven with the three calls of one order;
//! - reference point: the Order Processor on its embedded store, `POST /orders`.
//!
//! And the time from exec to the first 200 of each service's readiness probe. With
//! `--baseline REV`, the same runs are made on the services built from REV, interleaved with
//! the current ones, so that before and after are measured side by side on the same machine.
//! Writes `target/bench/report.json` and `target/bench/report.md`.

use std::{
    fmt::Write as _,
    fs,
    path::{Path, PathBuf},
    process::Command,
    thread,
    time::{Duration, Instant},
};

use serde_json::{Value, json};

use crate::{
    postgres,
    services::{self, BUILD_SERVICES, Service, free_port, poll_until_up, target_dir},
    step,
};

/// Books in the catalogue of the "many books" runs.
const BOOKS: usize = 100;
/// Stock of every book: no run can exhaust it, so no order is refused for stock.
const STOCK: u64 = 1_000_000_000;
/// Orders of the user whose orders are read back; the list answers the first page of 20.
const READER_ORDERS: usize = 50;
const READER: &str = "reader";

/// How long and how often to measure.
struct Plan {
    name: &'static str,
    release: bool,
    concurrencies: &'static [usize],
    warm_up: Duration,
    duration: Duration,
    /// Measured runs of each scenario and concurrency; the report keeps the median of each
    /// figure.
    repeat: usize,
    ready_samples: usize,
}

const FULL: Plan = Plan {
    name: "full",
    release: true,
    concurrencies: &[1, 16, 64, 256],
    warm_up: Duration::from_secs(1),
    duration: Duration::from_secs(5),
    repeat: 1,
    ready_samples: 7,
};

const QUICK: Plan = Plan {
    name: "quick",
    warm_up: Duration::from_secs(1),
    duration: Duration::from_secs(2),
    ready_samples: 3,
    ..FULL
};

/// A few seconds on a debug build: the bench still runs and its report still parses.
const SMOKE: Plan = Plan {
    name: "smoke",
    release: false,
    concurrencies: &[4],
    warm_up: Duration::ZERO,
    duration: Duration::from_secs(1),
    ready_samples: 1,
    ..FULL
};

const USAGE: &str = "usage: cargo xtask bench [--quick] [--repeat N] [--baseline REV]";

/// `cargo xtask bench [--quick] [--repeat N] [--baseline REV]`.
pub fn run(root: &Path, args: &[&str]) -> Result<(), String> {
    let mut plan = FULL;
    let mut baseline = None;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match *arg {
            "--quick" => {
                plan = Plan {
                    repeat: plan.repeat,
                    ..QUICK
                }
            }
            "--repeat" => {
                plan.repeat = args
                    .next()
                    .and_then(|n| n.parse().ok())
                    .filter(|n| *n > 0)
                    .ok_or(USAGE)?;
            }
            "--baseline" => baseline = Some(*args.next().ok_or(USAGE)?),
            _ => return Err(USAGE.to_owned()),
        }
    }
    postgres::ensure_server_binaries()?;
    let mut variants = vec![current(root, &plan)?];
    if let Some(rev) = baseline {
        variants.push(self::baseline(root, rev)?);
    }
    let report = measure(&plan, &target_dir(root).join("bench"), &variants)?;
    println!("{}", markdown(&report));
    Ok(())
}

/// The smoke test of the suite: the bench on the debug build for a few seconds, and its
/// report read back.
pub fn smoke(root: &Path) -> Result<(), String> {
    let out = target_dir(root).join("bench/smoke");
    postgres::ensure_server_binaries()?;
    let variants = [current(root, &SMOKE)?];
    measure(&SMOKE, &out, &variants)?;
    step::timed("the bench report parses", || {
        let path = out.join("report.json");
        let text = fs::read_to_string(&path)
            .map_err(|err| format!("cannot read {}: {err}", path.display()))?;
        let report: Value = serde_json::from_str(&text).map_err(|err| err.to_string())?;
        // Four scenarios through the Storage Service, one on PostgreSQL, and the three
        // references, each at the smoke's one concurrency.
        check_report(&report, 8)
    })
}

/// A report with `runs` runs, each of which answered requests without an error and measured
/// every process it drove.
fn check_report(report: &Value, runs: usize) -> Result<(), String> {
    let all = report["runs"].as_array().ok_or("the report has no runs")?;
    if all.len() != runs {
        return Err(format!("{} runs in the report, expected {runs}", all.len()));
    }
    for run in all {
        let name = format!("{} at c = {}", run["scenario"], run["concurrency"]);
        let number = |key: &str| {
            run[key]
                .as_f64()
                .ok_or_else(|| format!("{name}: no {key} in {run}"))
        };
        if number("requests")? <= 0.0 || number("throughput_per_s")? <= 0.0 {
            return Err(format!("{name} answered no request"));
        }
        number("p50_ms")?;
        number("p999_ms")?;
        if number("errors")? != 0.0 {
            return Err(format!("{name} had errors: {run}"));
        }
        let processes = run["processes"].as_array().filter(|p| !p.is_empty());
        for process in processes.ok_or_else(|| format!("{name} measured no process"))? {
            for key in ["cpu_us_per_operation", "peak_rss_mib"] {
                if process[key].as_f64().is_none_or(|value| value <= 0.0) {
                    return Err(format!("{name}: no {key} in {process}"));
                }
            }
        }
    }
    let ready = report["ready"]
        .as_array()
        .ok_or("the report has no ready times")?;
    if ready
        .iter()
        .any(|entry| entry["median_ms"].as_f64().is_none())
    {
        return Err(format!("a ready time is missing: {ready:?}"));
    }
    Ok(())
}

/// A build of both services to measure.
struct Variant {
    name: String,
    commit: String,
    bin: PathBuf,
    /// Whether its Storage Service can keep its data in PostgreSQL.
    postgres: bool,
    /// The bare forwarder of the floor reference, built with this tree only.
    forwarder: Option<PathBuf>,
}

impl Variant {
    fn binary(&self, name: &str) -> PathBuf {
        self.bin.join(name)
    }
}

fn current(root: &Path, plan: &Plan) -> Result<Variant, String> {
    let release = [
        "build",
        "--release",
        "-p",
        "order-processor",
        "--bins",
        "--example",
        "bench-forwarder",
    ];
    let args: &[&str] = if plan.release {
        &release
    } else {
        &BUILD_SERVICES
    };
    step::cargo(root, "build both services", args)?;
    let profile = if plan.release { "release" } else { "debug" };
    Ok(Variant {
        name: "current".to_owned(),
        commit: git(root, &["rev-parse", "--short", "HEAD"])?,
        bin: target_dir(root).join(profile),
        postgres: true,
        forwarder: Some(
            target_dir(root)
                .join(profile)
                .join("examples/bench-forwarder"),
        ),
    })
}

/// The services as they were at `rev`: its tree, exported under `target/bench/baseline`,
/// built in release mode there with its own target directory.
fn baseline(root: &Path, rev: &str) -> Result<Variant, String> {
    let commit = git(root, &["rev-parse", &format!("{rev}^{{commit}}")])?;
    let dir = target_dir(root).join("bench/baseline");
    let src = dir.join("src");
    let stamp = src.join(".bench-rev");
    // Exporting anew would touch every file and rebuild the whole crate: only when the
    // revision changes.
    if fs::read_to_string(&stamp).ok().as_deref() != Some(commit.as_str()) {
        let _ = fs::remove_dir_all(&src);
        fs::create_dir_all(&src)
            .map_err(|err| format!("cannot create {}: {err}", src.display()))?;
        step::run(
            &format!("export {rev} to {}", src.display()),
            Command::new("sh")
                .arg("-c")
                .arg(r#"git -C "$1" archive "$2" | tar -x -C "$3""#)
                .args(["export", &root.display().to_string(), &commit])
                .arg(&src),
        )?;
        fs::write(&stamp, &commit).map_err(|err| format!("cannot write the stamp: {err}"))?;
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    step::run(
        &format!("build both services at {rev}"),
        Command::new(cargo)
            .args(["build", "--release", "-p", "order-processor", "--bins"])
            .env("CARGO_TARGET_DIR", dir.join("target"))
            .current_dir(&src),
    )?;
    Ok(Variant {
        name: format!("before ({rev})"),
        commit: commit[..7].to_owned(),
        bin: dir.join("target/release"),
        postgres: false,
        forwarder: None,
    })
}

fn git(root: &Path, args: &[&str]) -> Result<String, String> {
    let output = Command::new("git")
        .args(args)
        .current_dir(root)
        .output()
        .map_err(|err| format!("cannot run git: {err}"))?;
    if !output.status.success() {
        return Err(format!(
            "git {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// Runs every group on every variant, writes the report files and returns the report.
fn measure(plan: &Plan, out: &Path, variants: &[Variant]) -> Result<Value, String> {
    let wrk = Wrk::find_or_install()?;
    let work = out.join("work");
    let _ = fs::remove_dir_all(&work);
    fs::create_dir_all(&work).map_err(|err| format!("cannot create {}: {err}", work.display()))?;
    let load_before = load_average();
    let started = Instant::now();
    let mut bench = Bench {
        plan,
        wrk,
        work,
        wrk_runs: 0,
        runs: Vec::new(),
    };
    let mut ready = Vec::new();
    step::timed(
        "ready: from exec to the first 200 of the readiness probe",
        || {
            for variant in variants {
                ready.extend(bench.ready_times(variant)?);
            }
            Ok(())
        },
    )?;
    for group in GROUPS {
        for variant in variants {
            let runs = match group {
                Group::ThroughPostgres => variant.postgres,
                Group::Floor => variant.forwarder.is_some(),
                _ => true,
            };
            if !runs {
                continue;
            }
            step::timed(&format!("{} ({})", group.title(), variant.name), || {
                bench.group(group, variant)
            })?;
        }
    }
    let report = json!({
        "mode": plan.name,
        "build": if plan.release { "release" } else { "debug" },
        "cpus": thread::available_parallelism().map_or(0, usize::from),
        "load_average_before": load_before,
        "load_average_after": load_average(),
        "seconds": started.elapsed().as_secs(),
        "load_generator": bench.wrk.version,
        "warm_up_s": plan.warm_up.as_secs_f64(),
        "duration_s": plan.duration.as_secs_f64(),
        "repeat": plan.repeat,
        "variants": variants
            .iter()
            .map(|v| json!({"name": v.name, "commit": v.commit}))
            .collect::<Vec<_>>(),
        "ready": ready,
        "runs": bench.runs,
    });
    let write = |name: &str, text: String| {
        let path = out.join(name);
        fs::write(&path, text).map_err(|err| format!("cannot write {}: {err}", path.display()))
    };
    write(
        "report.json",
        serde_json::to_string_pretty(&report).map_err(|err| err.to_string())?,
    )?;
    write("report.md", markdown(&report))?;
    println!("==> wrote {}/report.json and report.md", out.display());
    Ok(report)
}

/// Every group, in the order they run and are reported.
const GROUPS: [Group; 5] = [
    Group::ThroughStorage,
    Group::ThroughPostgres,
    Group::Floor,
    Group::StorageAlone,
    Group::Embedded,
];

#[derive(Clone, Copy)]
enum Group {
    ThroughStorage,
    /// The same, with the Storage Service on PostgreSQL.
    ThroughPostgres,
    /// `GET /orders/{id}` through the bare forwarder in place of the Order Processor.
    Floor,
    StorageAlone,
    Embedded,
}

impl Group {
    fn title(self) -> &'static str {
        match self {
            Group::ThroughStorage => "Order Processor through the Storage Service",
            Group::ThroughPostgres => "Order Processor through the Storage Service on PostgreSQL",
            Group::Floor => "reference: a bare hyper forwarder in place of the Order Processor",
            Group::StorageAlone => "reference: the Storage Service alone, three calls an order",
            Group::Embedded => "reference: the Order Processor on its embedded store",
        }
    }
}

/// What wrk sends, and what one operation of the report is.
struct Scenario {
    name: &'static str,
    script: &'static str,
    args: Vec<String>,
    /// Requests that make one operation: the three calls of an order for the Storage
    /// Service alone, else one.
    requests_per_operation: f64,
}

const PLACE_ORDERS: &str = include_str!("../bench/place_orders.lua");
const GET_PATHS: &str = include_str!("../bench/get_paths.lua");
const STORAGE_ORDERS: &str = include_str!("../bench/storage_orders.lua");
const REPORT: &str = include_str!("../bench/report.lua");

/// What the report calls the bare forwarder. Its figures take the Order Processor's columns
/// of the tables, in its own group.
const FORWARDER: &str = "forwarder";

/// A started service and what the report calls it.
struct Process {
    name: &'static str,
    port: u16,
    service: Service,
}

struct Bench<'a> {
    plan: &'a Plan,
    wrk: Wrk,
    work: PathBuf,
    /// Numbers the wrk runs, so that order ids made up by a script never repeat.
    wrk_runs: u32,
    runs: Vec<Value>,
}

impl Bench<'_> {
    fn group(&mut self, group: Group, variant: &Variant) -> Result<(), String> {
        let dir = self.data_dir(variant, group)?;
        match group {
            Group::ThroughStorage => {
                let storage = start_storage(variant, &dir)?.0;
                add_books(storage.port)?;
                let url = format!("http://127.0.0.1:{}", storage.port);
                let orders = start_order_processor(variant, &dir, Some(&url))?.0;
                let order_paths = self.reader_orders(orders.port)?;
                let scenarios = [
                    place_orders(BOOKS),
                    place_orders(1),
                    read_orders(order_paths),
                    Scenario {
                        name: "GET /orders/user/{userId}",
                        script: GET_PATHS,
                        args: vec![self.paths_file("user", &[format!("/orders/user/{READER}")])?],
                        requests_per_operation: 1.0,
                    },
                ];
                for scenario in &scenarios {
                    self.scenario(group, variant, scenario, &orders, &[&orders, &storage])?;
                }
            }
            Group::ThroughPostgres => {
                let postgres = postgres::Server::start(&dir.join("postgres"))?;
                let database = postgres.url();
                let storage =
                    start_storage_with(variant, &dir, &[("DATABASE_URL", database.as_str())])?.0;
                add_books(storage.port)?;
                let url = format!("http://127.0.0.1:{}", storage.port);
                let orders = start_order_processor(variant, &dir, Some(&url))?.0;
                self.scenario(
                    group,
                    variant,
                    &place_orders(BOOKS),
                    &orders,
                    &[&orders, &storage],
                )?;
            }
            Group::Floor => {
                let Some(forwarder) = &variant.forwarder else {
                    return Ok(());
                };
                let storage = start_storage(variant, &dir)?.0;
                add_books(storage.port)?;
                let url = format!("http://127.0.0.1:{}", storage.port);
                // The orders to read are placed through the Order Processor, which then
                // stops: only the forwarder and the Storage Service run while measured.
                let order_paths = {
                    let orders = start_order_processor(variant, &dir, Some(&url))?.0;
                    self.reader_orders(orders.port)?
                };
                let env = [("STORAGE_SERVICE_URL", url.as_str())];
                let forwarder = start(FORWARDER, forwarder, &dir, &env, "/health/ready")?.0;
                self.scenario(
                    group,
                    variant,
                    &read_orders(order_paths),
                    &forwarder,
                    &[&forwarder, &storage],
                )?;
            }
            Group::StorageAlone => {
                let storage = start_storage(variant, &dir)?.0;
                add_books(storage.port)?;
                let scenario = Scenario {
                    name: "the three calls of an order",
                    script: STORAGE_ORDERS,
                    args: vec![BOOKS.to_string()],
                    requests_per_operation: 3.0,
                };
                self.scenario(group, variant, &scenario, &storage, &[&storage])?;
            }
            Group::Embedded => {
                // The catalogue is loaded through a Storage Service on the same directory:
                // both keep the same SQLite schema, and the Order Processor has no API to
                // add books.
                {
                    let storage = start_storage(variant, &dir)?.0;
                    add_books(storage.port)?;
                }
                for suffix in ["", "-wal"] {
                    let from = dir.join(format!("storage.db{suffix}"));
                    if from.exists() {
                        fs::rename(&from, dir.join(format!("orders.db{suffix}")))
                            .map_err(|err| format!("cannot move {}: {err}", from.display()))?;
                    }
                }
                let _ = fs::remove_file(dir.join("storage.db-shm"));
                let orders = start_order_processor(variant, &dir, None)?.0;
                self.scenario(group, variant, &place_orders(BOOKS), &orders, &[&orders])?;
            }
        }
        Ok(())
    }

    fn data_dir(&self, variant: &Variant, group: Group) -> Result<PathBuf, String> {
        let slug: String = variant
            .name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        let dir = self.work.join(format!("{slug}-{}", group as u8));
        fs::create_dir_all(&dir)
            .map_err(|err| format!("cannot create {}: {err}", dir.display()))?;
        Ok(dir)
    }

    /// Places the reader's orders through the Order Processor; a file of their paths.
    fn reader_orders(&self, port: u16) -> Result<String, String> {
        let mut paths = Vec::new();
        for n in 0..READER_ORDERS {
            let body = format!(r#"{{"bookId":"bench-{n}","quantity":1,"userId":"{READER}"}}"#);
            let (status, answer) = services::request(port, "POST", "/orders", Some(&body))
                .map_err(|err| format!("cannot place an order: {err}"))?;
            let order: Value = serde_json::from_str(&answer).unwrap_or_default();
            match order["id"].as_str() {
                Some(id) if status == 201 => paths.push(format!("/orders/{id}")),
                _ => return Err(format!("placing an order answered {status}: {answer}")),
            }
        }
        self.paths_file("orders", &paths)
    }

    fn paths_file(&self, name: &str, paths: &[String]) -> Result<String, String> {
        let path = self.work.join(format!("{name}.paths"));
        fs::write(&path, paths.join("\n") + "\n")
            .map_err(|err| format!("cannot write {}: {err}", path.display()))?;
        Ok(path.display().to_string())
    }

    fn scenario(
        &mut self,
        group: Group,
        variant: &Variant,
        scenario: &Scenario,
        target: &Process,
        measured: &[&Process],
    ) -> Result<(), String> {
        let script = self.work.join("scenario.lua");
        fs::write(&script, format!("{}\n{REPORT}", scenario.script))
            .map_err(|err| format!("cannot write {}: {err}", script.display()))?;
        for &concurrency in self.plan.concurrencies {
            if !self.plan.warm_up.is_zero() {
                self.drive(&script, scenario, target, concurrency, self.plan.warm_up)?;
            }
            let mut samples = Vec::new();
            for _ in 0..self.plan.repeat {
                let before: Vec<_> = measured
                    .iter()
                    .map(|process| {
                        reset_peak_rss(process.service.pid());
                        cpu_ticks(process.service.pid())
                    })
                    .collect::<Result<_, _>>()?;
                let figures =
                    self.drive(&script, scenario, target, concurrency, self.plan.duration)?;
                let requests = figures["requests"].as_f64().unwrap_or_default();
                let operations = requests / scenario.requests_per_operation;
                let mut processes = Vec::new();
                for (process, before) in measured.iter().zip(before) {
                    let pid = process.service.pid();
                    let cpu = (cpu_ticks(pid)? - before) as f64 / clock_ticks_per_second();
                    processes.push(json!({
                        "name": process.name,
                        "cpu_us_per_operation": round(cpu * 1e6 / operations.max(1.0)),
                        "peak_rss_mib": round(peak_rss_kib(pid)? as f64 / 1024.0),
                    }));
                }
                let errors: u64 = [
                    "connect_errors",
                    "read_errors",
                    "write_errors",
                    "status_errors",
                    "timeouts",
                ]
                .iter()
                .map(|key| figures[key].as_u64().unwrap_or_default())
                .sum();
                let seconds = figures["duration_us"].as_f64().unwrap_or_default() / 1e6;
                let ms = |key: &str| round(figures[key].as_f64().unwrap_or_default() / 1e3);
                samples.push(json!({
                    "variant": variant.name,
                    "group": group.title(),
                    "scenario": scenario.name,
                    "concurrency": concurrency,
                    "requests": requests,
                    "errors": errors,
                    "throughput_per_s": round(operations / seconds.max(1e-9)),
                    "p50_ms": ms("p50_us"),
                    "p99_ms": ms("p99_us"),
                    "p999_ms": ms("p999_us"),
                    "requests_per_operation": scenario.requests_per_operation,
                    "processes": processes,
                }));
            }
            self.runs.push(median_run(samples));
        }
        Ok(())
    }

    /// One wrk run: its figures, as the report script prints them.
    fn drive(
        &mut self,
        script: &Path,
        scenario: &Scenario,
        target: &Process,
        concurrency: usize,
        duration: Duration,
    ) -> Result<Value, String> {
        self.wrk_runs += 1;
        let threads = concurrency.min(2);
        let output = Command::new(&self.wrk.path)
            .arg(format!("--threads={threads}"))
            .arg(format!("--connections={concurrency}"))
            // wrk takes whole seconds.
            .arg(format!("--duration={}s", duration.as_secs()))
            .arg("--timeout=10s")
            .arg("--script")
            .arg(script)
            .arg(format!("http://127.0.0.1:{}", target.port))
            .arg("--")
            .args(&scenario.args)
            .arg(self.wrk_runs.to_string())
            .output()
            .map_err(|err| format!("cannot run wrk: {err}"))?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        let figures = stdout
            .lines()
            .find_map(|line| line.strip_prefix("BENCH-RESULT "))
            .and_then(|line| serde_json::from_str(line).ok());
        match figures {
            Some(figures) if output.status.success() => Ok(figures),
            _ => Err(format!(
                "wrk failed on {} at c = {concurrency}: {stdout}{}",
                scenario.name,
                String::from_utf8_lossy(&output.stderr)
            )),
        }
    }

    /// The time from exec to the first 200 of the readiness probe: the Storage Service on an
    /// existing database, then the Order Processor using it, started `ready_samples` times.
    fn ready_times(&self, variant: &Variant) -> Result<Vec<Value>, String> {
        let dir = self.data_dir(variant, Group::ThroughStorage)?.join("ready");
        fs::create_dir_all(&dir)
            .map_err(|err| format!("cannot create {}: {err}", dir.display()))?;
        // The first start creates and seeds the database: a pod restarts on a database it
        // already has.
        drop(start_storage(variant, &dir)?);
        let mut storage_ms = Vec::new();
        let mut orders_ms = Vec::new();
        for _ in 0..self.plan.ready_samples {
            let (storage, ready) = start_storage(variant, &dir)?;
            storage_ms.push(ready);
            let url = format!("http://127.0.0.1:{}", storage.port);
            orders_ms.push(start_order_processor(variant, &dir, Some(&url))?.1);
        }
        Ok([
            ("storage-service", storage_ms),
            ("order-processor", orders_ms),
        ]
        .into_iter()
        .map(|(process, samples)| {
            json!({
                "variant": variant.name,
                "process": process,
                "median_ms": median(&samples),
                "samples_ms": samples,
            })
        })
        .collect())
    }
}

/// `GET /orders/{id}` round the orders whose paths are in the file `paths`.
fn read_orders(paths: String) -> Scenario {
    Scenario {
        name: "GET /orders/{id}",
        script: GET_PATHS,
        args: vec![paths],
        requests_per_operation: 1.0,
    }
}

fn place_orders(books: usize) -> Scenario {
    Scenario {
        name: if books == 1 {
            "POST /orders, one book"
        } else {
            "POST /orders, many books"
        },
        script: PLACE_ORDERS,
        args: vec![books.to_string()],
        requests_per_operation: 1.0,
    }
}

/// Starts the Storage Service on `dir`: the process, and how long it took to answer its
/// health check (it has no separate readiness probe) in milliseconds.
fn start_storage(variant: &Variant, dir: &Path) -> Result<(Process, f64), String> {
    start_storage_with(variant, dir, &[])
}

/// The same, with `env` added: `DATABASE_URL` for PostgreSQL.
fn start_storage_with(
    variant: &Variant,
    dir: &Path,
    env: &[(&str, &str)],
) -> Result<(Process, f64), String> {
    start(
        "storage-service",
        &variant.binary("storage-service"),
        dir,
        env,
        "/health",
    )
}

/// Starts the Order Processor on `dir`, on the Storage Service at `storage_url` or on its
/// embedded store.
fn start_order_processor(
    variant: &Variant,
    dir: &Path,
    storage_url: Option<&str>,
) -> Result<(Process, f64), String> {
    let env: Vec<_> = storage_url
        .map(|url| ("STORAGE_SERVICE_URL", url))
        .into_iter()
        .collect();
    start(
        "order-processor",
        &variant.binary("order-processor"),
        dir,
        &env,
        "/health/ready",
    )
}

fn start(
    name: &'static str,
    binary: &Path,
    dir: &Path,
    env: &[(&str, &str)],
    probe: &str,
) -> Result<(Process, f64), String> {
    let port = free_port()?;
    let port_text = port.to_string();
    let data_dir = dir.display().to_string();
    let mut env = env.to_vec();
    // Logging as deployed: the manifests set LOG_FORMAT to json, and RUST_LOG not at all.
    env.extend([
        ("SERVER_PORT", port_text.as_str()),
        ("DATA_DIR", data_dir.as_str()),
        ("LOG_FORMAT", "json"),
    ]);
    let exec = Instant::now();
    let service = Service::start(name, binary, &env, dir)?;
    poll_until_up(port, probe, Duration::from_micros(200))?;
    let ready_ms = round(exec.elapsed().as_secs_f64() * 1e3);
    Ok((
        Process {
            name,
            port,
            service,
        },
        ready_ms,
    ))
}

/// Adds the bench's books to a Storage Service, each with more stock than any run takes.
fn add_books(port: u16) -> Result<(), String> {
    for n in 0..BOOKS {
        let body = format!(
            r#"{{"title":"Bench book {n}","author":"Bench","price":1000,"currency":"EUR","quantity":{STOCK}}}"#
        );
        let (status, answer) =
            services::request(port, "PUT", &format!("/books/bench-{n}"), Some(&body))
                .map_err(|err| format!("cannot add a book: {err}"))?;
        if status != 200 {
            return Err(format!("adding a book answered {status}: {answer}"));
        }
    }
    Ok(())
}

/// wrk, from Debian's package.
struct Wrk {
    path: PathBuf,
    version: String,
}

impl Wrk {
    fn find_or_install() -> Result<Self, String> {
        let path = PathBuf::from("/usr/bin/wrk");
        if !path.exists() {
            step::apt_install("wrk", &[])?;
        }
        // `wrk -v` prints its version and exits non-zero.
        let output = Command::new(&path)
            .arg("-v")
            .output()
            .map_err(|err| format!("cannot run {}: {err}", path.display()))?;
        let version = String::from_utf8_lossy(&output.stdout)
            .lines()
            .next()
            .unwrap_or("wrk")
            .split(" Copyright")
            .next()
            .unwrap_or("wrk")
            .to_owned();
        Ok(Self { path, version })
    }
}

/// The process's own CPU time, user and system, in clock ticks (`/proc/PID/stat`).
fn cpu_ticks(pid: u32) -> Result<u64, String> {
    let path = format!("/proc/{pid}/stat");
    let stat = fs::read_to_string(&path).map_err(|err| format!("cannot read {path}: {err}"))?;
    parse_cpu_ticks(&stat).ok_or_else(|| format!("cannot read the CPU time in {path}"))
}

fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    // The command name, in parentheses, may hold spaces: count fields after its end. The
    // state is field 3, utime field 14, stime field 15.
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

fn clock_ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|output| String::from_utf8_lossy(&output.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// The process's peak resident memory since start or since the last reset, in KiB
/// (`VmHWM` in `/proc/PID/status`).
fn peak_rss_kib(pid: u32) -> Result<u64, String> {
    let path = format!("/proc/{pid}/status");
    let status = fs::read_to_string(&path).map_err(|err| format!("cannot read {path}: {err}"))?;
    parse_peak_rss_kib(&status).ok_or_else(|| format!("no VmHWM in {path}"))
}

fn parse_peak_rss_kib(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// Resets the peak to the current resident memory, so that each run reports its own peak.
/// Where the kernel refuses, the peak stays the process's peak so far.
fn reset_peak_rss(pid: u32) {
    let _ = fs::write(format!("/proc/{pid}/clear_refs"), "5");
}

fn load_average() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|load| {
            load.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

fn round(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => 0.0,
        n if n % 2 == 1 => sorted[n / 2],
        n => round((sorted[n / 2 - 1] + sorted[n / 2]) / 2.0),
    }
}

/// One run made of repeated samples: the median of every figure.
fn median_run(samples: Vec<Value>) -> Value {
    let mut run = samples[0].clone();
    let median_of = |get: &dyn Fn(&Value) -> Option<f64>| {
        let values: Vec<f64> = samples.iter().filter_map(get).collect();
        median(&values)
    };
    for key in [
        "requests",
        "errors",
        "throughput_per_s",
        "p50_ms",
        "p99_ms",
        "p999_ms",
    ] {
        run[key] = json!(median_of(&|sample| sample[key].as_f64()));
    }
    let processes = run["processes"].as_array().cloned().unwrap_or_default();
    for (index, _) in processes.iter().enumerate() {
        for key in ["cpu_us_per_operation", "peak_rss_mib"] {
            run["processes"][index][key] =
                json!(median_of(&|sample| sample["processes"][index][key].as_f64()));
        }
    }
    run["samples"] = json!(samples.len());
    run
}

/// The targets of the service at concurrency 64 through the Storage Service, and peak memory
/// at 256: a figure, its limit, and where in the report it is read.
struct Target {
    what: &'static str,
    limit: f64,
    unit: &'static str,
    value: fn(&Value, &str) -> Option<f64>,
}

const TARGETS: &[Target] = &[
    Target {
        what: "Order Processor CPU per order (c = 64)",
        limit: 250.0,
        unit: "µs",
        value: |report, variant| {
            cpu(
                report,
                variant,
                "POST /orders, many books",
                64,
                "order-processor",
            )
        },
    },
    Target {
        what: "Order Processor CPU per GET /orders/{id} (c = 64)",
        limit: 60.0,
        unit: "µs",
        value: |report, variant| cpu(report, variant, "GET /orders/{id}", 64, "order-processor"),
    },
    Target {
        what: "Storage Service CPU per order, its three calls (c = 64)",
        limit: 500.0,
        unit: "µs",
        value: |report, variant| {
            cpu(
                report,
                variant,
                "POST /orders, many books",
                64,
                "storage-service",
            )
        },
    },
    Target {
        what: "errors at c = 64, through the Storage Service",
        limit: 0.0,
        unit: "",
        value: |report, variant| {
            through_storage(report, variant)
                .filter(|run| run["concurrency"] == 64)
                .filter_map(|run| run["errors"].as_f64())
                .reduce(|sum, errors| sum + errors)
        },
    },
    Target {
        what: "Order Processor peak RSS at c = 256",
        limit: 32.0,
        unit: "MiB",
        value: |report, variant| peak_rss(report, variant, "order-processor"),
    },
    Target {
        what: "Storage Service peak RSS at c = 256",
        limit: 32.0,
        unit: "MiB",
        value: |report, variant| peak_rss(report, variant, "storage-service"),
    },
    Target {
        what: "Order Processor ready after exec (median)",
        limit: 10.0,
        unit: "ms",
        value: |report, variant| ready(report, variant, "order-processor"),
    },
    Target {
        what: "Storage Service ready after exec (median)",
        limit: 10.0,
        unit: "ms",
        value: |report, variant| ready(report, variant, "storage-service"),
    },
];

fn through_storage<'a>(report: &'a Value, variant: &'a str) -> impl Iterator<Item = &'a Value> {
    report["runs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(move |run| {
            run["variant"] == variant && run["group"] == Group::ThroughStorage.title()
        })
}

fn process<'a>(run: &'a Value, name: &str) -> Option<&'a Value> {
    run["processes"]
        .as_array()?
        .iter()
        .find(|process| process["name"] == name)
}

fn cpu(report: &Value, variant: &str, scenario: &str, concurrency: u64, name: &str) -> Option<f64> {
    through_storage(report, variant)
        .find(|run| run["scenario"] == scenario && run["concurrency"] == concurrency)
        .and_then(|run| process(run, name)?["cpu_us_per_operation"].as_f64())
}

/// The bare forwarder's CPU per `GET /orders/{id}` at concurrency 64.
fn floor_cpu(report: &Value, variant: &str) -> Option<f64> {
    report["runs"]
        .as_array()?
        .iter()
        .find(|run| {
            run["variant"] == variant
                && run["group"] == Group::Floor.title()
                && run["concurrency"] == 64
        })
        .and_then(|run| process(run, FORWARDER)?["cpu_us_per_operation"].as_f64())
}

fn peak_rss(report: &Value, variant: &str, name: &str) -> Option<f64> {
    through_storage(report, variant)
        .filter(|run| run["concurrency"] == 256)
        .filter_map(|run| process(run, name)?["peak_rss_mib"].as_f64())
        .reduce(f64::max)
}

fn ready(report: &Value, variant: &str, name: &str) -> Option<f64> {
    report["ready"]
        .as_array()?
        .iter()
        .find(|entry| entry["variant"] == variant && entry["process"] == name)?["median_ms"]
        .as_f64()
}

/// The report as Markdown: the targets, then one table per group.
fn markdown(report: &Value) -> String {
    let variants: Vec<&str> = report["variants"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|variant| variant["name"].as_str())
        .collect();
    let mut md = String::new();
    let _ = writeln!(
        md,
        "`cargo xtask bench` ({} mode, {} build, {}; {} CPUs, load average {} before and {} after; \
         {} s a run after {} s of warm-up, median of {}).\n",
        report["mode"].as_str().unwrap_or_default(),
        report["build"].as_str().unwrap_or_default(),
        report["load_generator"].as_str().unwrap_or_default(),
        report["cpus"],
        report["load_average_before"].as_str().unwrap_or_default(),
        report["load_average_after"].as_str().unwrap_or_default(),
        report["duration_s"],
        report["warm_up_s"],
        report["repeat"],
    );
    let _ = writeln!(md, "| target | limit | {} |", variants.join(" | "));
    let _ = writeln!(md, "|---|---|{}", "---|".repeat(variants.len()));
    for target in TARGETS {
        let cells: Vec<String> = variants
            .iter()
            .map(|variant| match (target.value)(report, variant) {
                Some(value) => {
                    let verdict = if value <= target.limit {
                        "met"
                    } else {
                        "not met"
                    };
                    format!("{value} {} ({verdict})", target.unit)
                }
                None => "–".to_owned(),
            })
            .collect();
        let _ = writeln!(
            md,
            "| {} | {} {} | {} |",
            target.what,
            target.limit,
            target.unit,
            cells.join(" | ")
        );
    }
    for variant in &variants {
        if let Some(floor) = floor_cpu(report, variant) {
            let _ = writeln!(
                md,
                "\nThe floor of the GET target ({variant}): the bare forwarder spends {floor} µs \
                 of its own CPU per `GET /orders/{{id}}` at c = 64, with no routing, validation, \
                 JSON, log line, metrics or limits."
            );
        }
    }
    for group in GROUPS {
        let _ = writeln!(md, "\n**{}**\n", group.title());
        let _ = writeln!(
            md,
            "| scenario | c | build | per s | p50 ms | p99 ms | p99.9 ms | errors \
             | OP CPU µs | OP peak MiB | SS CPU µs | SS peak MiB |"
        );
        let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|---|---|---|");
        let mut runs: Vec<&Value> = report["runs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|run| run["group"] == group.title())
            .collect();
        // Before and after of the same scenario and concurrency on adjacent rows.
        runs.sort_by_key(|run| {
            (
                run["scenario"].as_str().unwrap_or_default().to_owned(),
                run["concurrency"].as_u64(),
            )
        });
        for run in runs {
            let front = if process(run, FORWARDER).is_some() {
                FORWARDER
            } else {
                "order-processor"
            };
            let figures = |name: &str| match process(run, name) {
                Some(process) => format!(
                    "{} | {}",
                    number(&process["cpu_us_per_operation"]),
                    number(&process["peak_rss_mib"])
                ),
                None => "– | –".to_owned(),
            };
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                run["scenario"].as_str().unwrap_or_default(),
                run["concurrency"],
                run["variant"].as_str().unwrap_or_default(),
                number(&run["throughput_per_s"]),
                number(&run["p50_ms"]),
                number(&run["p99_ms"]),
                number(&run["p999_ms"]),
                number(&run["errors"]),
                figures(front),
                figures("storage-service"),
            );
        }
    }
    let _ = writeln!(
        md,
        "\nCPU is each process's own user and system time (`/proc/PID/stat`) per operation: \
         per order for `POST /orders` and for the Storage Service alone (three requests), per \
         request for the GETs. Peak is `VmHWM`, reset before each run. Per s counts operations. \
         In the bare forwarder's group, the OP columns are the forwarder's."
    );
    md
}

/// A figure as Rust prints it: `0` rather than JSON's `0.0`.
fn number(value: &Value) -> String {
    value
        .as_f64()
        .map_or_else(|| "–".to_owned(), |value| value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_are_read_after_a_command_name_with_spaces_and_parentheses() {
        let stat = "4242 (tokio (worker) x) S 1 4242 4242 0 -1 4194560 \
                    500 0 0 0 1234 567 0 0 20 0 3 0 100 1000000 2000 18446744073709551615";
        assert_eq!(parse_cpu_ticks(stat), Some(1234 + 567));
    }

    #[test]
    fn peak_rss_is_read_in_kib() {
        let status = "Name:\torder-processor\nVmPeak:\t  100000 kB\nVmHWM:\t   12345 kB\n";
        assert_eq!(parse_peak_rss_kib(status), Some(12345));
    }

    #[test]
    fn repeated_samples_keep_the_median_of_each_figure() {
        let sample = |cpu: f64, p99: f64| json!({"p99_ms": p99, "processes": [{"name": "order-processor", "cpu_us_per_operation": cpu}]});
        let run = median_run(vec![
            sample(300.0, 9.0),
            sample(100.0, 1.0),
            sample(200.0, 5.0),
        ]);
        assert_eq!(run["p99_ms"], json!(5.0));
        assert_eq!(run["processes"][0]["cpu_us_per_operation"], json!(200.0));
        assert_eq!(run["samples"], json!(3));
    }

    #[test]
    fn a_report_with_errors_fails_the_smoke_check() {
        let report = json!({
            "ready": [{"median_ms": 5.0}],
            "runs": [{
                "scenario": "GET /orders/{id}", "concurrency": 4, "requests": 10.0,
                "throughput_per_s": 10.0, "p50_ms": 1.0, "p999_ms": 2.0, "errors": 1,
                "processes": [{"cpu_us_per_operation": 50.0, "peak_rss_mib": 10.0}],
            }],
        });
        assert!(check_report(&report, 1).unwrap_err().contains("had errors"));
    }
}

//! The Order Processor binary: reads its configuration, then serves until SIGTERM.

use std::process::ExitCode;

use order_processor::{config::Config, http::server::shutdown_signal, startup, telemetry};

fn main() -> ExitCode {
    match runtime() {
        Ok(runtime) => runtime.block_on(serve()),
        Err(err) => {
            eprintln!("order-processor: cannot start the async runtime: {err}");
            ExitCode::FAILURE
        }
    }
}

/// Tokio's runtime: one worker thread unless `TOKIO_WORKER_THREADS` says otherwise. A pod has
/// 200m CPU, a fifth of one core: more workers only hand tasks between threads, which cost a
/// third of the CPU per order on two cores, and each thread adds a malloc arena to the
/// resident memory. The blocking pool runs the embedded store's SQLite calls, which take its
/// one connection in turn: one thread, since a second would only wait on that lock.
fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if std::env::var_os("TOKIO_WORKER_THREADS").is_none() {
        builder.worker_threads(1);
    }
    builder.enable_all().max_blocking_threads(1).build()
}

async fn serve() -> ExitCode {
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(err) => {
            eprintln!("order-processor: {err}");
            return ExitCode::FAILURE;
        }
    };
    telemetry::init(config.log_format);
    match startup::run(config, shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            startup::report(&err);
            ExitCode::FAILURE
        }
    }
}

//! The Order Processor binary: reads its configuration, then serves until SIGTERM.

use std::process::ExitCode;

use order_processor::{
    allocator::Mimalloc, config::Config, http::server::shutdown_signal, metrics, startup, telemetry,
};

/// mimalloc (see `order_processor::allocator`).
#[global_allocator]
static ALLOCATOR: Mimalloc = Mimalloc;

fn main() -> ExitCode {
    metrics::install_in_background();
    match startup::runtime() {
        Ok(runtime) => runtime.block_on(serve()),
        Err(err) => {
            eprintln!("order-processor: cannot start the async runtime: {err}");
            ExitCode::FAILURE
        }
    }
}

async fn serve() -> ExitCode {
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(err) => {
            eprintln!("order-processor: {err}");
            return ExitCode::FAILURE;
        }
    };
    let _telemetry = telemetry::init(config.log_format);
    match startup::run(config, shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            startup::report(&err);
            ExitCode::FAILURE
        }
    }
}

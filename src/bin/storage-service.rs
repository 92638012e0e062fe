//! The reference Storage Service: `openapi/storage-service.yaml` over the embedded SQLite
//! store, for local development and for running the Order Processor against a real remote
//! storage.
//!
//! Environment: `SERVER_PORT` (default 8083), `DATA_DIR` (default `data`; the database is
//! `storage.db` inside it), `LOG_FORMAT` (`text` or `json`). A bad value stops startup with a
//! one-line message that names the variable.

use std::{
    net::{Ipv4Addr, SocketAddr},
    path::PathBuf,
    process::ExitCode,
    sync::Arc,
};

use order_processor::{
    config::{self, ConfigError},
    http::{server, storage_api},
    storage::sqlite::SqliteStore,
    telemetry::{self, ErrorChain, LogFormat},
};

const DEFAULT_PORT: u16 = 8083;
const DATABASE_FILE: &str = "storage.db";

struct Settings {
    port: u16,
    database: PathBuf,
    log_format: LogFormat,
}

impl Settings {
    fn from_env() -> Result<Self, ConfigError> {
        let var = |name| std::env::var(name).ok();
        let port = config::server_port(var("SERVER_PORT").as_deref(), DEFAULT_PORT)?;
        let log_format = config::parse_log_format(var("LOG_FORMAT").as_deref())?;
        Ok(Self {
            port,
            database: config::data_dir(var("DATA_DIR")).join(DATABASE_FILE),
            log_format,
        })
    }
}

fn main() -> ExitCode {
    match runtime() {
        Ok(runtime) => runtime.block_on(serve()),
        Err(err) => {
            eprintln!("storage-service: cannot start the async runtime: {err}");
            ExitCode::FAILURE
        }
    }
}

/// Tokio's runtime: one worker thread unless `TOKIO_WORKER_THREADS` says otherwise, as for
/// the Order Processor (`src/main.rs` says why). The blocking pool runs the SQLite calls,
/// which take the store's one connection in turn: one thread, since a second would only wait
/// on that lock.
fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if std::env::var_os("TOKIO_WORKER_THREADS").is_none() {
        builder.worker_threads(1);
    }
    builder.enable_all().max_blocking_threads(1).build()
}

async fn serve() -> ExitCode {
    let settings = match Settings::from_env() {
        Ok(settings) => settings,
        Err(err) => {
            eprintln!("storage-service: {err}");
            return ExitCode::FAILURE;
        }
    };
    telemetry::init(settings.log_format);
    match run(settings).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = %ErrorChain(err.as_ref()), "the storage service stopped");
            ExitCode::FAILURE
        }
    }
}

async fn run(settings: Settings) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let store = SqliteStore::open(&settings.database)?;
    if store.seed_demo_catalogue().await? {
        tracing::info!(database = %settings.database.display(), "seeded the demo catalogue");
    }
    let server =
        server::Server::bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, settings.port))).await?;
    tracing::info!(
        addr = %server.local_addr(),
        database = %settings.database.display(),
        "storage service listening"
    );
    server
        .run(storage_api::app(Arc::new(store)), server::shutdown_signal())
        .await?;
    tracing::info!("storage service stopped");
    Ok(())
}

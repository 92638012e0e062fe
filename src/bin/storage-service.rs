//! The reference Storage Service: `openapi/storage-service.yaml` over a SQLite file, or over
//! PostgreSQL when several replicas are to share one database.
//!
//! Environment: `SERVER_PORT` (default 8083), `DATABASE_URL` (a `postgres://` URL: use
//! PostgreSQL; unset: SQLite), `DATABASE_POOL_SIZE` (default 16 connections), `DATA_DIR`
//! (default `data`; the SQLite database is `storage.db` inside it), `LOG_FORMAT` (`text` or
//! `json`), `METRICS_TOKEN_FILE` (a file holding the bearer token that `GET /metrics` asks
//! for; unset: open), and the server limits (`SERVER_MAX_CONNECTIONS` and the others of
//! `ServerLimits`). A bad value, or a database that cannot be reached at start, stops startup with a
//! one-line message that names the variable, and exit code 1.

use std::{
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    process::ExitCode,
    sync::Arc,
};

use order_processor::{
    config::{self, ConfigError},
    domain::storage::{Catalogue, OrderStore},
    http::{limits::ServerLimits, server, storage_api},
    metrics::MetricsToken,
    storage::{
        postgres::{PostgresConfig, PostgresStore},
        sqlite::SqliteStore,
    },
    telemetry::{self, ErrorChain, LogFormat},
};

const DEFAULT_PORT: u16 = 8083;
const DATABASE_FILE: &str = "storage.db";

type BoxError = Box<dyn std::error::Error + Send + Sync>;

enum Database {
    Sqlite(PathBuf),
    Postgres(Box<PostgresConfig>),
}

struct Settings {
    host: IpAddr,
    port: u16,
    database: Database,
    log_format: LogFormat,
    limits: ServerLimits,
    metrics_token: Option<MetricsToken>,
}

impl Settings {
    fn from_env() -> Result<Self, ConfigError> {
        let var = |name: &str| std::env::var(name).ok();
        let host = config::server_host(var("SERVER_HOST").as_deref())?;
        let port = config::server_port(var("SERVER_PORT").as_deref(), DEFAULT_PORT)?;
        let log_format = config::parse_log_format(var("LOG_FORMAT").as_deref())?;
        let database = match config::postgres(var)? {
            Some(postgres) => Database::Postgres(Box::new(postgres)),
            None => Database::Sqlite(config::data_dir(var("DATA_DIR")).join(DATABASE_FILE)),
        };
        Ok(Self {
            host,
            port,
            database,
            log_format,
            limits: ServerLimits::from_env()?,
            metrics_token: config::metrics_token(var)?,
        })
    }
}

fn main() -> ExitCode {
    match order_processor::startup::runtime() {
        Ok(runtime) => runtime.block_on(run()),
        Err(err) => {
            eprintln!("storage-service: cannot start the async runtime: {err}");
            ExitCode::FAILURE
        }
    }
}

/// Reads the settings, opens the database they name and serves it.
async fn run() -> ExitCode {
    let settings = match Settings::from_env() {
        Ok(settings) => settings,
        Err(err) => {
            eprintln!("storage-service: {err}");
            return ExitCode::FAILURE;
        }
    };
    let _telemetry = telemetry::init(settings.log_format);
    let addr = SocketAddr::new(settings.host, settings.port);
    let served = match settings.database {
        Database::Sqlite(path) => match SqliteStore::open(&path) {
            Ok(store) => {
                serve(
                    store,
                    addr,
                    settings.limits,
                    settings.metrics_token,
                    format!("SQLite {}", path.display()),
                )
                .await
            }
            Err(err) => Err(err.into()),
        },
        Database::Postgres(postgres) => match PostgresStore::connect(&postgres).await {
            Ok(store) => {
                serve(
                    store,
                    addr,
                    settings.limits,
                    settings.metrics_token,
                    format!("PostgreSQL {postgres}"),
                )
                .await
            }
            Err(err) => {
                // The one line an operator needs: which variable, which server, and why.
                eprintln!(
                    "storage-service: cannot use the database of DATABASE_URL ({postgres}): {}",
                    ErrorChain(&err)
                );
                return ExitCode::FAILURE;
            }
        },
    };
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = %ErrorChain(err.as_ref()), "the storage service stopped");
            ExitCode::FAILURE
        }
    }
}

/// Seeds the demo catalogue into an empty store, then serves until SIGTERM.
async fn serve<S: DemoSeed>(
    store: S,
    addr: SocketAddr,
    limits: ServerLimits,
    metrics_token: Option<MetricsToken>,
    database: String,
) -> Result<(), BoxError> {
    if store.seed_demo_catalogue().await? {
        tracing::info!(%database, "seeded the demo catalogue");
    }
    let server = server::Server::bind(addr)
        .await?
        .with_limits(limits)
        .with_metrics_token(metrics_token);
    tracing::info!(addr = %server.local_addr(), %database, "storage service listening");
    server
        .run(storage_api::app(Arc::new(store)), server::shutdown_signal())
        .await?;
    tracing::info!("storage service stopped");
    Ok(())
}

/// The stores the binary can serve: each loads the demo catalogue its own way.
trait DemoSeed: OrderStore + Catalogue {
    async fn seed_demo_catalogue(&self) -> Result<bool, BoxError>;
}

impl DemoSeed for SqliteStore {
    async fn seed_demo_catalogue(&self) -> Result<bool, BoxError> {
        Ok(SqliteStore::seed_demo_catalogue(self).await?)
    }
}

impl DemoSeed for PostgresStore {
    async fn seed_demo_catalogue(&self) -> Result<bool, BoxError> {
        Ok(PostgresStore::seed_demo_catalogue(self).await?)
    }
}

//! The reference Storage Service: `openapi/storage-service.yaml` over a SQLite file, or over
//! PostgreSQL when several replicas are to share one database.
//!
//! Environment: `SERVER_PORT` (default 8083), `DATABASE_URL` (a `postgres://` URL: use
//! PostgreSQL; unset: SQLite), `DATABASE_POOL_SIZE` (default 16 connections), `DATA_DIR`
//! (default `data`; the SQLite database is `storage.db` inside it), `LOG_FORMAT` (`text` or
//! `json`), `METRICS_TOKEN_FILE` (a file holding the bearer token that `GET /metrics` asks
//! for; unset: open), `AUTH_JWKS_FILE`, `AUTH_HS256_SECRET_FILE`, `AUTH_AUDIENCE` (default
//! `storage-service`) and `AUTH_ISSUER` (the bearer tokens callers must present, as for the
//! Order Processor; neither file set: open), and the server limits (`SERVER_MAX_CONNECTIONS`
//! and the others of `ServerLimits`). A bad value, or a database that cannot be reached at start, stops startup with a
//! one-line message that names the variable, and exit code 1.

use std::{net::SocketAddr, path::PathBuf, process::ExitCode, sync::Arc};

use order_processor::{
    access::Verifier,
    config::{self, ConfigError},
    domain::storage::{Catalogue, OrderStore},
    http::{limits::ServerLimits, server, storage_api},
    metrics::{self, MetricsToken},
    storage::{
        postgres::{PostgresConfig, PostgresStore},
        sqlite::SqliteStore,
    },
    telemetry::{self, ErrorChain, LogFormat},
};

const DEFAULT_PORT: u16 = 8083;
/// The audience of the Storage Service's tokens unless `AUTH_AUDIENCE` says otherwise.
const DEFAULT_AUDIENCE: &str = "storage-service";
const DATABASE_FILE: &str = "storage.db";

type BoxError = Box<dyn std::error::Error + Send + Sync>;

enum Database {
    Sqlite(PathBuf),
    Postgres(Box<PostgresConfig>),
}

struct Settings {
    database: Database,
    log_format: LogFormat,
    server: ServerSettings,
}

/// How the server listens and whom it serves, whichever the database.
struct ServerSettings {
    addr: SocketAddr,
    limits: ServerLimits,
    metrics_token: Option<MetricsToken>,
    access: Option<Arc<Verifier>>,
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
            database,
            log_format,
            server: ServerSettings {
                addr: SocketAddr::new(host, port),
                limits: ServerLimits::from_env()?,
                metrics_token: config::metrics_token(var)?,
                access: Verifier::from_lookup(var, DEFAULT_AUDIENCE)?.map(Arc::new),
            },
        })
    }
}

/// The Order Processor's allocator (see `order_processor::allocator`).
#[global_allocator]
static ALLOCATOR: order_processor::allocator::Mimalloc = order_processor::allocator::Mimalloc;

fn main() -> ExitCode {
    metrics::install_in_background();
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
    let served = match settings.database {
        Database::Sqlite(path) => match SqliteStore::open(&path) {
            Ok(store) => serve(store, settings.server, format!("SQLite {}", path.display())).await,
            Err(err) => Err(err.into()),
        },
        Database::Postgres(postgres) => match PostgresStore::connect(&postgres).await {
            Ok(store) => serve(store, settings.server, format!("PostgreSQL {postgres}")).await,
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
    settings: ServerSettings,
    database: String,
) -> Result<(), BoxError> {
    if store.seed_demo_catalogue().await? {
        tracing::info!(%database, "seeded the demo catalogue");
    }
    let server = server::Server::bind(settings.addr)
        .await?
        .with_limits(settings.limits)
        .with_metrics_token(settings.metrics_token)
        .with_access(settings.access);
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

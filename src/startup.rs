//! Builds the Order Processor from its configuration and runs it.

use std::{io, net::SocketAddr, num::NonZeroU32, sync::Arc};

use poem::{EndpointExt, Response, endpoint::BoxEndpoint};

use crate::{
    access::Verifier,
    config::{Config, StorageConfig},
    domain::{
        orders::OrderService,
        storage::{OrderStore, StorageError},
    },
    generated::order_processor::server::{self as api, Problem as ApiProblem},
    http::{
        limits::ServerLimits,
        orders_api::OrdersApi,
        server::{self, Running, Server},
        user_limit,
    },
    metrics::MetricsToken,
    recovery::{self, RecoveryConfig},
    storage::{http::HttpStorage, sqlite::SqliteStore},
    telemetry::ErrorChain,
    watched,
};

/// Name of the embedded database file inside the data directory.
pub const DATABASE_FILE: &str = "orders.db";

/// Why the service did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("cannot open the storage")]
    Storage(#[source] StorageError),
    #[error("cannot reach the configured Storage Service")]
    Client(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("cannot listen")]
    Bind(#[source] io::Error),
    #[error("the server stopped")]
    Serve(#[source] io::Error),
}

/// How the service treats orders, beyond where it keeps them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Options {
    pub recovery: RecoveryConfig,
    /// Orders one user may place a minute (`ORDERS_PER_USER_PER_MINUTE`); `None`: no limit.
    pub orders_per_user_per_minute: Option<NonZeroU32>,
}

/// A bound server with its application, ready to run.
pub struct Application {
    server: Server,
    app: BoxEndpoint<'static, Response>,
}

impl Application {
    /// The service over `storage`, with the default recovery settings and no per-user limit.
    pub async fn build<S: OrderStore>(storage: S, addr: SocketAddr) -> io::Result<Self> {
        Self::build_with(storage, addr, Options::default()).await
    }

    /// The service over `storage`; its recovery task and the upkeep of its per-user limit
    /// start now and end when the application is dropped or its server stops.
    pub async fn build_with<S: OrderStore>(
        storage: S,
        addr: SocketAddr,
        options: Options,
    ) -> io::Result<Self> {
        let orders = Arc::new(OrderService::new(storage));
        tokio::spawn(recovery::run(Arc::downgrade(&orders), options.recovery));
        let user_limit = options.orders_per_user_per_minute.map(user_limit::spawn);
        let app = server::app::<_, ApiProblem>(
            api::service(OrdersApi::new(orders, user_limit)),
            api::ROUTES,
            api::document_additions,
        )
        .boxed();
        Ok(Self {
            server: Server::bind(addr).await?,
            app,
        })
    }

    /// The service on a fresh in-memory store holding the demo catalogue (`book-1` to
    /// `book-5`), on a free loopback port, until the handle is dropped: for the examples of
    /// its clients, which then run against the real thing.
    pub async fn demo() -> Result<Running, StartupError> {
        let storage =
            SqliteStore::open(std::path::Path::new(":memory:")).map_err(StartupError::Storage)?;
        storage
            .seed_demo_catalogue()
            .await
            .map_err(StartupError::Storage)?;
        let addr = SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, 0));
        let application = Self::build(storage, addr)
            .await
            .map_err(StartupError::Bind)?;
        Ok(application.spawn())
    }

    /// Holds the server to `limits` instead of the defaults.
    #[must_use]
    pub fn with_limits(self, limits: ServerLimits) -> Self {
        Self {
            server: self.server.with_limits(limits),
            ..self
        }
    }

    /// Asks `GET /metrics` for `token` as a bearer token; `None` leaves it open.
    #[must_use]
    pub fn with_metrics_token(self, token: Option<MetricsToken>) -> Self {
        Self {
            server: self.server.with_metrics_token(token),
            ..self
        }
    }

    /// Checks the bearer tokens of protected operations with `access`; `None`, the default,
    /// leaves access open.
    #[must_use]
    pub fn with_access(self, access: Option<Arc<Verifier>>) -> Self {
        Self {
            server: self.server.with_access(access),
            ..self
        }
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> io::Result<()> {
        self.server.run(self.app, shutdown).await
    }

    /// Serves on a Tokio task until the handle is stopped or dropped.
    pub fn spawn(self) -> Running {
        self.server.spawn(self.app)
    }
}

/// Tokio's runtime for either service: one worker thread unless `TOKIO_WORKER_THREADS` says
/// otherwise. A pod has 200m CPU, a fifth of one core: more workers only hand tasks between
/// threads, which cost a third of the CPU per order on two cores, and each thread adds a
/// malloc arena to the resident memory. The blocking pool runs the SQLite calls, which take
/// the store's one connection in turn: one thread, since a second would only wait on that
/// lock.
pub fn runtime() -> io::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if std::env::var_os("TOKIO_WORKER_THREADS").is_none() {
        builder.worker_threads(1);
    }
    builder.enable_all().max_blocking_threads(1).build()
}

/// Runs the service as configured until `shutdown` completes.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartupError> {
    let addr = SocketAddr::new(config.host, config.port);
    let options = Options {
        recovery: config.recovery,
        orders_per_user_per_minute: config.orders_per_user_per_minute,
    };
    let application = match config.storage {
        StorageConfig::Remote { url, client } => {
            tracing::info!(storage = %url, token = config.storage_token.is_some(), "using the Storage Service");
            let storage = HttpStorage::new(&url, client)
                .map_err(|err| StartupError::Client(err.into()))?
                .with_token(config.storage_token.clone());
            if let Some(token) = &config.storage_token {
                tokio::spawn(watched::watch(Arc::downgrade(token), watched::REFRESH_PERIOD));
            }
            Application::build_with(storage, addr, options).await
        }
        StorageConfig::Embedded(dir) => {
            let path = dir.join(DATABASE_FILE);
            tracing::info!(database = %path.display(), "STORAGE_SERVICE_URL is not set: using the embedded store");
            let storage = SqliteStore::open(&path).map_err(StartupError::Storage)?;
            if storage.seed_demo_catalogue().await.map_err(StartupError::Storage)? {
                tracing::info!("seeded the demo catalogue: books book-1 to book-5");
            }
            Application::build_with(storage, addr, options).await
        }
    }
    .map_err(StartupError::Bind)?
    .with_limits(config.server)
    .with_metrics_token(config.metrics_token)
    .with_access(config.access);
    if let Some(per_minute) = options.orders_per_user_per_minute {
        tracing::info!(
            per_minute,
            "each user may place this many orders a minute on this replica"
        );
    }
    tracing::info!(address = %application.local_addr(), "listening; Swagger UI at /docs");
    application
        .run_until(shutdown)
        .await
        .map_err(StartupError::Serve)?;
    tracing::info!("stopped");
    Ok(())
}

/// Logs a startup error with its chain.
pub fn report(err: &StartupError) {
    tracing::error!(error = %ErrorChain(err), "order-processor cannot run");
}

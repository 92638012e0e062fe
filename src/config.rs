//! Configuration from the environment, as the seed names it. A bad value stops startup with
//! a one-line message that names the variable.

use std::{
    net::{IpAddr, Ipv4Addr},
    num::NonZeroU32,
    path::PathBuf,
    sync::Arc,
    time::Duration,
};

use crate::{
    access::Verifier,
    http::limits::ServerLimits,
    metrics::MetricsToken,
    recovery::RecoveryConfig,
    storage::{
        http::{self, HttpStorageConfig, StorageToken},
        postgres::PostgresConfig,
        resilience::RetryPolicy,
    },
    telemetry::LogFormat,
};

/// Where orders are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageConfig {
    /// A Storage Service at this base URL (`STORAGE_SERVICE_URL`), called this way.
    Remote {
        url: String,
        client: HttpStorageConfig,
    },
    /// The embedded SQLite store in this directory (`DATA_DIR`), used when no URL is set.
    Embedded(PathBuf),
}

/// The Order Processor's configuration. Not comparable: it holds the keys read from files.
#[derive(Debug, Clone)]
pub struct Config {
    /// The address to listen on (`SERVER_HOST`): every interface unless set.
    pub host: IpAddr,
    pub port: u16,
    pub storage: StorageConfig,
    pub log_format: LogFormat,
    pub recovery: RecoveryConfig,
    pub server: ServerLimits,
    /// The token `GET /metrics` asks for; `None`: it is open.
    pub metrics_token: Option<MetricsToken>,
    /// Orders one user may place a minute on this replica (`ORDERS_PER_USER_PER_MINUTE`);
    /// `None`: no limit.
    pub orders_per_user_per_minute: Option<NonZeroU32>,
    /// How callers' bearer tokens are checked (`AUTH_*`); `None`: access is open.
    pub access: Option<Arc<Verifier>>,
    /// The bearer token sent to the Storage Service (`STORAGE_SERVICE_TOKEN_FILE`), read only
    /// when `STORAGE_SERVICE_URL` is set.
    pub storage_token: Option<Arc<StorageToken>>,
}

/// A variable with a value that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {variable}={value:?}: {reason}")]
pub struct ConfigError {
    pub variable: &'static str,
    pub value: String,
    pub reason: String,
}

pub const DEFAULT_PORT: u16 = 8082;
/// The audience of the Order Processor's tokens unless `AUTH_AUDIENCE` says otherwise.
pub const DEFAULT_AUDIENCE: &str = "order-processor";
const DEFAULT_DATA_DIR: &str = "data";

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the configuration through `lookup`, so that tests need not touch the process
    /// environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let host = server_host(lookup("SERVER_HOST").as_deref())?;
        let port = server_port(lookup("SERVER_PORT").as_deref(), DEFAULT_PORT)?;
        let server = ServerLimits::from_lookup(&lookup)?;
        let (storage, storage_token) =
            match lookup("STORAGE_SERVICE_URL").filter(|url| !url.is_empty()) {
                Some(url) => (
                    StorageConfig::Remote {
                        url: parse_url("STORAGE_SERVICE_URL", &url)?,
                        client: storage_client(&lookup, &server)?,
                    },
                    storage_token(&lookup)?,
                ),
                None => (StorageConfig::Embedded(data_dir(lookup("DATA_DIR"))), None),
            };
        let log_format = parse_log_format(lookup("LOG_FORMAT").as_deref())?;
        let defaults = RecoveryConfig::default();
        let recovery = RecoveryConfig {
            after: duration("RECOVERY_AFTER", lookup("RECOVERY_AFTER"), defaults.after)?,
            period: duration(
                "RECOVERY_PERIOD",
                lookup("RECOVERY_PERIOD"),
                defaults.period,
            )?,
        };
        Ok(Self {
            host,
            port,
            storage,
            log_format,
            recovery,
            server,
            metrics_token: metrics_token(&lookup)?,
            orders_per_user_per_minute: orders_per_user_per_minute(lookup(
                "ORDERS_PER_USER_PER_MINUTE",
            ))?,
            access: Verifier::from_lookup(&lookup, DEFAULT_AUDIENCE)?.map(Arc::new),
            storage_token,
        })
    }
}

/// `STORAGE_SERVICE_TOKEN_FILE`: the file holding the bearer token sent to the Storage
/// Service, as a Kubernetes Secret mounts it; `None` when unset or empty. A file that cannot
/// be read or holds no token stops startup; messages never show the token.
fn storage_token(
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<Option<Arc<StorageToken>>, ConfigError> {
    lookup(http::TOKEN_VARIABLE)
        .filter(|path| !path.is_empty())
        .map(|path| http::open_token(&path).map(Arc::new))
        .transpose()
}

/// `SERVER_HOST`, an IP address, or every interface when it is unset: a pod listens on all of
/// them, and a test or a laptop can keep a service on the loopback.
pub fn server_host(value: Option<&str>) -> Result<IpAddr, ConfigError> {
    let Some(value) = value else {
        return Ok(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    };
    value.parse::<IpAddr>().map_err(|_| ConfigError {
        variable: "SERVER_HOST",
        value: value.to_owned(),
        reason: "expected an IP address such as 127.0.0.1 or 0.0.0.0".to_owned(),
    })
}

/// `SERVER_PORT`, or `default` when it is unset.
pub fn server_port(value: Option<&str>, default: u16) -> Result<u16, ConfigError> {
    let Some(value) = value else {
        return Ok(default);
    };
    value.parse::<u16>().map_err(|_| ConfigError {
        variable: "SERVER_PORT",
        value: value.to_owned(),
        reason: "expected a port number from 0 to 65535".to_owned(),
    })
}

/// `DATA_DIR`, or `data` when it is unset.
pub fn data_dir(value: Option<String>) -> PathBuf {
    PathBuf::from(value.unwrap_or_else(|| DEFAULT_DATA_DIR.to_owned()))
}

/// `LOG_FORMAT`: `text` (the default) or `json`.
pub fn parse_log_format(value: Option<&str>) -> Result<LogFormat, ConfigError> {
    match value {
        None | Some("text") => Ok(LogFormat::Text),
        Some("json") => Ok(LogFormat::Json),
        Some(other) => Err(ConfigError {
            variable: "LOG_FORMAT",
            value: other.to_owned(),
            reason: "expected `text` or `json`".to_owned(),
        }),
    }
}

/// How the Storage Service is called: `STORAGE_ATTEMPTS`, `STORAGE_ATTEMPT_TIMEOUT`,
/// `STORAGE_BREAKER_FAILURES` and `STORAGE_BREAKER_COOLDOWN`, each with its default, and as
/// many idle connections kept as the server admits requests at once, so that a busy service
/// does not reconnect.
fn storage_client(
    lookup: impl Fn(&str) -> Option<String>,
    server: &ServerLimits,
) -> Result<HttpStorageConfig, ConfigError> {
    let defaults = HttpStorageConfig::default();
    Ok(HttpStorageConfig {
        pool_max_idle_per_host: server.max_requests_in_flight,
        retry: RetryPolicy {
            attempts: count(
                "STORAGE_ATTEMPTS",
                lookup("STORAGE_ATTEMPTS"),
                defaults.retry.attempts,
            )?,
            attempt_timeout: duration(
                "STORAGE_ATTEMPT_TIMEOUT",
                lookup("STORAGE_ATTEMPT_TIMEOUT"),
                defaults.retry.attempt_timeout,
            )?,
            ..defaults.retry
        },
        breaker_threshold: count(
            "STORAGE_BREAKER_FAILURES",
            lookup("STORAGE_BREAKER_FAILURES"),
            defaults.breaker_threshold,
        )?,
        breaker_cooldown: duration(
            "STORAGE_BREAKER_COOLDOWN",
            lookup("STORAGE_BREAKER_COOLDOWN"),
            defaults.breaker_cooldown,
        )?,
        ..defaults
    })
}

/// A count from 1 to 1000, or `default` when unset.
fn count(variable: &'static str, value: Option<String>, default: u32) -> Result<u32, ConfigError> {
    // Bounded to 1000, so it always fits.
    Ok(whole_number(variable, value, 1, 1000)?.map_or(default, |count| count as u32))
}

/// A whole number from `min` to `max`, or `None` when the variable is unset.
pub fn whole_number(
    variable: &'static str,
    value: Option<String>,
    min: u64,
    max: u64,
) -> Result<Option<u64>, ConfigError> {
    let Some(value) = value else {
        return Ok(None);
    };
    match value.parse::<u64>() {
        Ok(number) if (min..=max).contains(&number) => Ok(Some(number)),
        _ => Err(ConfigError {
            variable,
            value,
            reason: format!("expected a whole number from {min} to {max}"),
        }),
    }
}

/// `ORDERS_PER_USER_PER_MINUTE`: a positive whole number, or `None` (no limit) when unset.
pub fn orders_per_user_per_minute(
    value: Option<String>,
) -> Result<Option<NonZeroU32>, ConfigError> {
    let number = whole_number("ORDERS_PER_USER_PER_MINUTE", value, 1, u64::from(u32::MAX))?;
    // `whole_number` bounds it to 1..=u32::MAX.
    Ok(number.and_then(|number| NonZeroU32::new(number as u32)))
}

/// A positive duration such as `30s`, `500ms` or `2m`, or `default` when unset.
pub fn duration(
    variable: &'static str,
    value: Option<String>,
    default: Duration,
) -> Result<Duration, ConfigError> {
    let Some(value) = value else {
        return Ok(default);
    };
    match humantime::parse_duration(&value) {
        Ok(duration) if !duration.is_zero() => Ok(duration),
        _ => Err(ConfigError {
            variable,
            value,
            reason: "expected a positive duration such as 30s, 500ms or 2m".to_owned(),
        }),
    }
}

/// `METRICS_TOKEN_FILE`: the file holding the bearer token that `GET /metrics` asks for, as
/// a Kubernetes Secret mounts it; `None` when the variable is unset or empty, and `/metrics`
/// is open. A file that cannot be read or holds no token stops startup: a restriction that
/// was asked for is never dropped silently. Messages name the file, never its content.
pub fn metrics_token(
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<Option<MetricsToken>, ConfigError> {
    const VARIABLE: &str = "METRICS_TOKEN_FILE";
    let Some(path) = lookup(VARIABLE).filter(|path| !path.is_empty()) else {
        return Ok(None);
    };
    let error = |reason: String| ConfigError {
        variable: VARIABLE,
        value: path.clone(),
        reason,
    };
    let text = std::fs::read_to_string(&path)
        .map_err(|err| error(format!("cannot read the token file: {err}")))?;
    MetricsToken::from_file_text(&text)
        .map(Some)
        .ok_or_else(|| error("the token file is empty".to_owned()))
}

/// `DATABASE_URL` and `DATABASE_POOL_SIZE`: the PostgreSQL database of the reference Storage
/// Service, or `None` when the URL is unset or empty. A message never shows the password.
pub fn postgres(
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<Option<PostgresConfig>, ConfigError> {
    let Some(url) = lookup("DATABASE_URL").filter(|url| !url.is_empty()) else {
        return Ok(None);
    };
    let mut config = PostgresConfig::parse(&url).map_err(|reason| ConfigError {
        variable: "DATABASE_URL",
        value: without_password(&url),
        reason,
    })?;
    // `count` bounds it to 1..=1000 and the default is small: both fit any usize.
    config.pool_size = count(
        "DATABASE_POOL_SIZE",
        lookup("DATABASE_POOL_SIZE"),
        config.pool_size as u32,
    )? as usize;
    Ok(Some(config))
}

/// `scheme://user:password@host...` with the password masked, for messages.
fn without_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((credentials, host)) = rest.rsplit_once('@') else {
        return url.to_owned();
    };
    match credentials.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}

fn parse_url(variable: &'static str, value: &str) -> Result<String, ConfigError> {
    let error = |reason: &str| ConfigError {
        variable,
        value: value.to_owned(),
        reason: reason.to_owned(),
    };
    let url = reqwest::Url::parse(value).map_err(|err| error(&err.to_string()))?;
    // The client is built without TLS: inside the cluster the Storage Service speaks plain
    // HTTP behind its NetworkPolicy, and an https URL could never be reached.
    if url.scheme() != "http" || url.host_str().is_none() {
        return Err(error("expected an http:// URL with a host"));
    }
    Ok(value.trim_end_matches('/').to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_lookup(|name| {
            vars.iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| (*value).to_owned())
        })
    }

    #[test]
    fn defaults_to_port_8082_on_the_embedded_store() {
        let config = config(&[]).unwrap();
        assert_eq!(config.port, 8082);
        assert_eq!(
            config.storage,
            StorageConfig::Embedded(PathBuf::from("data"))
        );
        assert_eq!(config.log_format, LogFormat::Text);
        assert_eq!(config.recovery, RecoveryConfig::default());
    }

    #[test]
    fn recovery_timings_are_read_as_durations() {
        let config = config(&[("RECOVERY_AFTER", "2s"), ("RECOVERY_PERIOD", "250ms")]).unwrap();
        assert_eq!(config.recovery.after, Duration::from_secs(2));
        assert_eq!(config.recovery.period, Duration::from_millis(250));
    }

    #[test]
    fn a_recovery_timing_that_is_not_a_positive_duration_is_refused() {
        for value in ["soon", "0s", "-1s", "30"] {
            let err = config(&[("RECOVERY_PERIOD", value)]).unwrap_err();
            assert_eq!(err.variable, "RECOVERY_PERIOD", "{value}");
        }
    }

    #[test]
    fn a_storage_url_selects_the_remote_storage() {
        let config = config(&[("STORAGE_SERVICE_URL", "http://storage:8083/")]).unwrap();
        assert_eq!(
            config.storage,
            StorageConfig::Remote {
                url: "http://storage:8083".to_owned(),
                client: HttpStorageConfig::default(),
            }
        );
    }

    #[test]
    fn the_storage_client_is_tuned_by_its_variables() {
        let config = config(&[
            ("STORAGE_SERVICE_URL", "http://storage:8083"),
            ("STORAGE_ATTEMPTS", "5"),
            ("STORAGE_ATTEMPT_TIMEOUT", "750ms"),
            ("STORAGE_BREAKER_FAILURES", "20"),
            ("STORAGE_BREAKER_COOLDOWN", "3s"),
        ])
        .unwrap();
        let StorageConfig::Remote { client, .. } = config.storage else {
            panic!("a remote storage");
        };
        assert_eq!(client.retry.attempts, 5);
        assert_eq!(client.retry.attempt_timeout, Duration::from_millis(750));
        assert_eq!(client.breaker_threshold, 20);
        assert_eq!(client.breaker_cooldown, Duration::from_secs(3));
    }

    #[test]
    fn the_storage_client_keeps_as_many_idle_connections_as_requests_are_admitted() {
        let config = config(&[
            ("STORAGE_SERVICE_URL", "http://storage:8083"),
            ("SERVER_MAX_REQUESTS_IN_FLIGHT", "300"),
        ])
        .unwrap();
        let StorageConfig::Remote { client, .. } = config.storage else {
            panic!("a remote storage");
        };
        assert_eq!(client.pool_max_idle_per_host, 300);
    }

    #[test]
    fn a_storage_client_setting_out_of_range_is_refused_with_the_variable_named() {
        for (variable, value) in [
            ("STORAGE_ATTEMPTS", "0"),
            ("STORAGE_ATTEMPTS", "many"),
            ("STORAGE_ATTEMPT_TIMEOUT", "0s"),
            ("STORAGE_BREAKER_FAILURES", "1001"),
            ("STORAGE_BREAKER_COOLDOWN", "later"),
        ] {
            let err = config(&[("STORAGE_SERVICE_URL", "http://storage"), (variable, value)])
                .unwrap_err();
            assert_eq!(err.variable, variable, "{value}");
        }
    }

    #[test]
    fn the_host_is_every_interface_unless_an_address_is_given() {
        assert_eq!(config(&[]).unwrap().host, IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        assert_eq!(
            config(&[("SERVER_HOST", "127.0.0.1")]).unwrap().host,
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        );
        assert_eq!(
            config(&[("SERVER_HOST", "::1")]).unwrap().host,
            "::1".parse::<IpAddr>().unwrap()
        );
        let err = config(&[("SERVER_HOST", "localhost")]).unwrap_err();
        assert_eq!(err.variable, "SERVER_HOST");
    }

    #[test]
    fn a_non_numeric_port_is_refused_with_the_variable_named() {
        let err = config(&[("SERVER_PORT", "eighty")]).unwrap_err();
        assert_eq!(err.variable, "SERVER_PORT");
        assert!(
            err.to_string()
                .starts_with("invalid SERVER_PORT=\"eighty\"")
        );
        assert!(config(&[("SERVER_PORT", "70000")]).is_err());
    }

    #[test]
    fn a_malformed_storage_url_is_refused_with_the_variable_named() {
        for url in ["not a url", "ftp://storage", "https://storage", "http://"] {
            let err = config(&[("STORAGE_SERVICE_URL", url)]).unwrap_err();
            assert_eq!(err.variable, "STORAGE_SERVICE_URL", "{url}");
        }
    }

    fn postgres_config(vars: &[(&str, &str)]) -> Result<Option<PostgresConfig>, ConfigError> {
        postgres(|name| {
            vars.iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| (*value).to_owned())
        })
    }

    #[test]
    fn without_a_database_url_there_is_no_postgres_config() {
        assert!(postgres_config(&[]).unwrap().is_none());
        assert!(postgres_config(&[("DATABASE_URL", "")]).unwrap().is_none());
    }

    #[test]
    fn a_database_url_and_pool_size_are_read() {
        let config = postgres_config(&[
            ("DATABASE_URL", "postgres://shop:pw@db:5432/orders"),
            ("DATABASE_POOL_SIZE", "40"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(config.to_string(), "db:5432/orders");
        assert_eq!(config.pool_size, 40);
    }

    #[test]
    fn a_bad_database_url_or_pool_size_is_refused_naming_the_variable_and_hiding_the_password() {
        let err = postgres_config(&[("DATABASE_URL", "postgres://shop:hunter2@db:port/orders")])
            .unwrap_err();
        assert_eq!(err.variable, "DATABASE_URL");
        assert!(!err.to_string().contains("hunter2"), "{err}");
        assert!(err.to_string().contains("shop:***@db"), "{err}");
        for size in ["0", "many", "1001"] {
            let err = postgres_config(&[
                ("DATABASE_URL", "postgres://db/orders"),
                ("DATABASE_POOL_SIZE", size),
            ])
            .unwrap_err();
            assert_eq!(err.variable, "DATABASE_POOL_SIZE", "{size}");
        }
    }

    /// A file under the system's temp dir holding `text`, removed when dropped.
    struct TokenFile(PathBuf);

    impl TokenFile {
        fn new(text: &str) -> Self {
            let path = std::env::temp_dir().join(format!("metrics-token-{}", uuid::Uuid::new_v4()));
            std::fs::write(&path, text).unwrap();
            Self(path)
        }
    }

    impl Drop for TokenFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    #[test]
    fn without_a_metrics_token_file_metrics_are_open() {
        assert_eq!(config(&[]).unwrap().metrics_token, None);
        assert_eq!(
            config(&[("METRICS_TOKEN_FILE", "")]).unwrap().metrics_token,
            None
        );
    }

    #[test]
    fn the_metrics_token_is_read_from_its_file_without_the_line_end() {
        let file = TokenFile::new("s3cret\n");
        let path = file.0.to_str().unwrap();
        let token = config(&[("METRICS_TOKEN_FILE", path)])
            .unwrap()
            .metrics_token
            .unwrap();
        assert!(token.admits(b"Bearer s3cret"));
    }

    #[test]
    fn a_missing_metrics_token_file_is_refused_with_the_variable_named() {
        let missing = std::env::temp_dir().join(format!("no-such-token-{}", uuid::Uuid::new_v4()));
        let err = config(&[("METRICS_TOKEN_FILE", missing.to_str().unwrap())]).unwrap_err();
        assert_eq!(err.variable, "METRICS_TOKEN_FILE");
        assert!(
            err.reason.starts_with("cannot read the token file"),
            "{err}"
        );
    }

    #[test]
    fn an_empty_metrics_token_file_is_refused_and_no_message_shows_a_token() {
        for text in ["", " \n"] {
            let file = TokenFile::new(text);
            let err = config(&[("METRICS_TOKEN_FILE", file.0.to_str().unwrap())]).unwrap_err();
            assert_eq!(err.variable, "METRICS_TOKEN_FILE");
            assert_eq!(err.reason, "the token file is empty");
        }
        let file = TokenFile::new("s3cret");
        let config = config(&[("METRICS_TOKEN_FILE", file.0.to_str().unwrap())]).unwrap();
        assert!(!format!("{config:?}").contains("s3cret"));
    }

    #[test]
    fn without_orders_per_user_per_minute_there_is_no_limit() {
        assert_eq!(config(&[]).unwrap().orders_per_user_per_minute, None);
        let limited = config(&[("ORDERS_PER_USER_PER_MINUTE", "10")]).unwrap();
        assert_eq!(limited.orders_per_user_per_minute, NonZeroU32::new(10));
    }

    #[test]
    fn orders_per_user_per_minute_that_is_not_a_positive_whole_number_is_refused() {
        for value in ["", "0", "-1", "2.5", "ten", "4294967296"] {
            let err = config(&[("ORDERS_PER_USER_PER_MINUTE", value)]).unwrap_err();
            assert_eq!(err.variable, "ORDERS_PER_USER_PER_MINUTE", "{value}");
            assert!(
                err.to_string()
                    .starts_with("invalid ORDERS_PER_USER_PER_MINUTE="),
                "{err}"
            );
        }
    }

    #[test]
    fn without_key_files_access_is_open_and_with_one_the_audience_defaults_to_the_services() {
        assert!(config(&[]).unwrap().access.is_none());
        let secret = TokenFile::new("a-secret-of-thirty-two-bytes-or-more\n");
        let access = config(&[("AUTH_HS256_SECRET_FILE", secret.0.to_str().unwrap())])
            .unwrap()
            .access
            .unwrap();
        assert_eq!(access.audience(), "order-processor");
        let access = config(&[
            ("AUTH_HS256_SECRET_FILE", secret.0.to_str().unwrap()),
            ("AUTH_AUDIENCE", "orders"),
        ])
        .unwrap()
        .access
        .unwrap();
        assert_eq!(access.audience(), "orders");
        let short = TokenFile::new("short");
        let err = config(&[("AUTH_HS256_SECRET_FILE", short.0.to_str().unwrap())]).unwrap_err();
        assert_eq!(err.variable, "AUTH_HS256_SECRET_FILE");
    }

    #[test]
    fn the_storage_token_is_read_only_for_a_remote_storage_and_refused_when_unusable() {
        let file = TokenFile::new("storage-s3cret\n");
        let path = file.0.to_str().unwrap();
        assert!(
            config(&[("STORAGE_SERVICE_TOKEN_FILE", path)])
                .unwrap()
                .storage_token
                .is_none()
        );
        let remote = [
            ("STORAGE_SERVICE_URL", "http://storage:8083"),
            ("STORAGE_SERVICE_TOKEN_FILE", path),
        ];
        let token = config(&remote).unwrap().storage_token.unwrap();
        assert_eq!(*token.current(), "Bearer storage-s3cret");
        assert!(!format!("{:?}", config(&remote).unwrap()).contains("storage-s3cret"));

        let empty = TokenFile::new("\n");
        let err = config(&[
            ("STORAGE_SERVICE_URL", "http://storage:8083"),
            ("STORAGE_SERVICE_TOKEN_FILE", empty.0.to_str().unwrap()),
        ])
        .unwrap_err();
        assert_eq!(err.variable, "STORAGE_SERVICE_TOKEN_FILE");
    }

    #[test]
    fn an_unknown_log_format_is_refused() {
        assert_eq!(
            config(&[("LOG_FORMAT", "xml")]).unwrap_err().variable,
            "LOG_FORMAT"
        );
    }
}

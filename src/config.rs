//! Configuration from the environment, as the seed names it. A bad value stops startup with
//! a one-line message that names the variable.

use std::path::PathBuf;

use crate::telemetry::LogFormat;

/// Where orders are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageConfig {
    /// A Storage Service at this base URL (`STORAGE_SERVICE_URL`).
    Remote(String),
    /// The embedded SQLite store in this directory (`DATA_DIR`), used when no URL is set.
    Embedded(PathBuf),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub port: u16,
    pub storage: StorageConfig,
    pub log_format: LogFormat,
    pub server: crate::http::limits::ServerLimits,
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
const DEFAULT_DATA_DIR: &str = "data";

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the configuration through `lookup`, so that tests need not touch the process
    /// environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let port = server_port(lookup("SERVER_PORT").as_deref(), DEFAULT_PORT)?;
        let storage = match lookup("STORAGE_SERVICE_URL").filter(|url| !url.is_empty()) {
            Some(url) => StorageConfig::Remote(parse_url("STORAGE_SERVICE_URL", &url)?),
            None => StorageConfig::Embedded(data_dir(lookup("DATA_DIR"))),
        };
        let log_format = parse_log_format(lookup("LOG_FORMAT").as_deref())?;
        Ok(Self {
            port,
            storage,
            log_format,
            server: crate::http::limits::ServerLimits::from_lookup(&lookup)?,
        })
    }
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
    }

    #[test]
    fn a_storage_url_selects_the_remote_storage() {
        let config = config(&[("STORAGE_SERVICE_URL", "http://storage:8083/")]).unwrap();
        assert_eq!(
            config.storage,
            StorageConfig::Remote("http://storage:8083".to_owned())
        );
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

    #[test]
    fn an_unknown_log_format_is_refused() {
        assert_eq!(
            config(&[("LOG_FORMAT", "xml")]).unwrap_err().variable,
            "LOG_FORMAT"
        );
    }
}

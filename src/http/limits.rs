//! The bounds every server of both services holds to, so that neither a hanging storage nor a
//! slow or hostile client can exhaust a replica: open connections, requests in the
//! application, the time a request may take, and the time a client may take to send one.
//!
//! Each bound is read from its own environment variable; the defaults suit a pod of 200m CPU
//! and 256 MiB.

use std::time::Duration;

use crate::config::ConfigError;

/// How long a request may take in the application, from its head being read to its answer,
/// body reading included. Past it the server answers `503` with `Retry-After`. Work done on
/// behalf of a request (storage calls, their retries) must fit inside it.
pub const DEFAULT_REQUEST_DEADLINE: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerLimits {
    /// Open connections (`SERVER_MAX_CONNECTIONS`). A new connection past it takes the place
    /// of the oldest one that has no request in the application, or is closed when there is
    /// none.
    pub max_connections: usize,
    /// Requests in the application at once (`SERVER_MAX_REQUESTS_IN_FLIGHT`); more are
    /// answered `503` at once. The health endpoints are not counted.
    pub max_requests_in_flight: usize,
    /// See [`DEFAULT_REQUEST_DEADLINE`] (`SERVER_REQUEST_DEADLINE`).
    pub request_deadline: Duration,
    /// Time for a request head to arrive, from its first byte, or from the connection's
    /// opening for its first request (`SERVER_HEADER_READ_TIMEOUT`). Past it the
    /// connection is closed.
    pub header_read_timeout: Duration,
    /// Time for a request body to arrive once its head is read
    /// (`SERVER_BODY_READ_TIMEOUT`); past it the answer is `408`.
    pub body_read_timeout: Duration,
    /// How long a connection may stay open between requests (`SERVER_IDLE_TIMEOUT`).
    pub idle_timeout: Duration,
    /// Longest request target, in bytes (`SERVER_MAX_URI_BYTES`); longer is a `414`.
    pub max_uri_bytes: usize,
    /// Largest request head, request line included, in bytes (`SERVER_MAX_HEADER_BYTES`);
    /// larger is a `431`.
    pub max_header_bytes: usize,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            // With every one of them stalled the process stays near 50 MiB (the pressure
            // tests of tests/hardening.rs), and far below the open-file limit a container
            // gets.
            max_connections: 1024,
            // A 200m CPU serves a few hundred orders a second at best, each in milliseconds:
            // 128 waiting requests mean the storage is slow, and answering more at once is
            // better than queueing them behind it. Each holds at most a 64 KiB body.
            max_requests_in_flight: 128,
            request_deadline: DEFAULT_REQUEST_DEADLINE,
            // Callers in the cluster send a head in one packet.
            header_read_timeout: Duration::from_secs(5),
            // Below the deadline, so that a slow sender is told `408`, its own fault, rather
            // than `503`.
            body_read_timeout: Duration::from_secs(3),
            // Above the 90 s for which common HTTP clients (reqwest, the SDK's) keep an idle
            // connection, so that the client, not the server, closes it: a request is then
            // never sent on a connection the server is closing.
            idle_timeout: Duration::from_secs(120),
            max_uri_bytes: 8 * 1024,
            max_header_bytes: 16 * 1024,
        }
    }
}

impl ServerLimits {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads each limit through `lookup`; an unset variable keeps its default.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let defaults = Self::default();
        let count = |variable, default: usize, max: u64| {
            crate::config::whole_number(variable, lookup(variable), 1, max)
                .map(|value| value.map_or(default, |value| value as usize))
        };
        let timeout = |variable: &'static str, default: Duration| {
            let value = lookup(variable);
            let timeout = crate::config::duration(variable, value.clone(), default)?;
            if timeout > MAX_TIMEOUT {
                return Err(ConfigError {
                    variable,
                    value: value.unwrap_or_default(),
                    reason: "expected a duration of at most an hour".to_owned(),
                });
            }
            Ok(timeout)
        };
        Ok(Self {
            max_connections: count("SERVER_MAX_CONNECTIONS", defaults.max_connections, 1 << 20)?,
            max_requests_in_flight: count(
                "SERVER_MAX_REQUESTS_IN_FLIGHT",
                defaults.max_requests_in_flight,
                1 << 20,
            )?,
            request_deadline: timeout("SERVER_REQUEST_DEADLINE", defaults.request_deadline)?,
            header_read_timeout: timeout(
                "SERVER_HEADER_READ_TIMEOUT",
                defaults.header_read_timeout,
            )?,
            body_read_timeout: timeout("SERVER_BODY_READ_TIMEOUT", defaults.body_read_timeout)?,
            idle_timeout: timeout("SERVER_IDLE_TIMEOUT", defaults.idle_timeout)?,
            max_uri_bytes: count(
                "SERVER_MAX_URI_BYTES",
                defaults.max_uri_bytes,
                MAX_HEAD_BYTES,
            )?,
            max_header_bytes: count(
                "SERVER_MAX_HEADER_BYTES",
                defaults.max_header_bytes,
                MAX_HEAD_BYTES,
            )?,
        })
    }

    /// The size at which the HTTP parser itself stops reading a request head and answers a
    /// bodiless `431`. Heads between `max_header_bytes` and this size reach the application,
    /// which answers them with a Problem.
    pub fn parser_header_bytes(&self) -> usize {
        self.max_header_bytes * 2
    }
}

/// An hour: no timeout of a request or a connection is meant to be longer.
const MAX_TIMEOUT: Duration = Duration::from_secs(60 * 60);

/// 32 KiB. The parser keeps up to twice this in memory per connection, and below 64 KiB its
/// only refusal of a long head is a `431` (past it, a long target would be its `414`).
const MAX_HEAD_BYTES: u64 = 32 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(vars: &[(&str, &str)]) -> Result<ServerLimits, ConfigError> {
        ServerLimits::from_lookup(|name| {
            vars.iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| (*value).to_owned())
        })
    }

    #[test]
    fn unset_variables_keep_the_defaults() {
        let limits = limits(&[]).unwrap();
        assert_eq!(limits, ServerLimits::default());
        assert_eq!(limits.request_deadline, DEFAULT_REQUEST_DEADLINE);
        assert_eq!(DEFAULT_REQUEST_DEADLINE, Duration::from_secs(5));
        assert!(limits.body_read_timeout < limits.request_deadline);
    }

    #[test]
    fn each_variable_sets_its_limit() {
        let limits = limits(&[
            ("SERVER_MAX_CONNECTIONS", "10"),
            ("SERVER_MAX_REQUESTS_IN_FLIGHT", "3"),
            ("SERVER_REQUEST_DEADLINE", "1500ms"),
            ("SERVER_HEADER_READ_TIMEOUT", "200ms"),
            ("SERVER_BODY_READ_TIMEOUT", "300ms"),
            ("SERVER_IDLE_TIMEOUT", "400ms"),
            ("SERVER_MAX_URI_BYTES", "1000"),
            ("SERVER_MAX_HEADER_BYTES", "2000"),
        ])
        .unwrap();
        assert_eq!(
            limits,
            ServerLimits {
                max_connections: 10,
                max_requests_in_flight: 3,
                request_deadline: Duration::from_millis(1500),
                header_read_timeout: Duration::from_millis(200),
                body_read_timeout: Duration::from_millis(300),
                idle_timeout: Duration::from_millis(400),
                max_uri_bytes: 1000,
                max_header_bytes: 2000,
            }
        );
    }

    #[test]
    fn a_value_that_is_not_a_positive_number_in_range_is_refused_with_the_variable_named() {
        for (variable, value) in [
            ("SERVER_MAX_CONNECTIONS", "0"),
            ("SERVER_MAX_CONNECTIONS", "many"),
            ("SERVER_MAX_REQUESTS_IN_FLIGHT", "-1"),
            ("SERVER_REQUEST_DEADLINE", "5000"),
            ("SERVER_REQUEST_DEADLINE", "61m"),
            ("SERVER_HEADER_READ_TIMEOUT", ""),
            ("SERVER_BODY_READ_TIMEOUT", "0s"),
            ("SERVER_IDLE_TIMEOUT", "soon"),
            ("SERVER_MAX_URI_BYTES", "32769"),
            ("SERVER_MAX_HEADER_BYTES", "0"),
        ] {
            let err = limits(&[(variable, value)]).unwrap_err();
            assert_eq!(err.variable, variable, "{value}");
            assert!(
                err.to_string()
                    .starts_with(&format!("invalid {variable}={value:?}")),
                "{err}"
            );
        }
    }
}

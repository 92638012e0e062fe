//! Bearer tokens for the services a check starts with access on: a shared HS256 secret made
//! for the run, written where `AUTH_HS256_SECRET_FILE` points, and tokens signed with it.

use std::{fmt, fs, path::Path, time::Duration};

use jsonwebtoken::{EncodingKey, Header, encode, get_current_timestamp};
use serde_json::json;

/// Random bytes of the secret; its file holds them in hex, twice as many characters as the
/// 32 bytes the services ask of a secret at least.
const SECRET_BYTES: usize = 32;

/// Signs the tokens of one run. A new secret each run, so that a token of an earlier run,
/// left in a log or a report, opens nothing.
pub struct Issuer {
    secret: String,
}

/// Never the secret.
impl fmt::Debug for Issuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Issuer")
    }
}

impl Issuer {
    pub fn new() -> Result<Self, String> {
        let mut bytes = [0; SECRET_BYTES];
        getrandom::fill(&mut bytes).map_err(|err| format!("cannot make a secret: {err}"))?;
        Ok(Self {
            secret: bytes.iter().map(|byte| format!("{byte:02x}")).collect(),
        })
    }

    /// Writes the secret to `path`, for `AUTH_HS256_SECRET_FILE`.
    pub fn write_secret(&self, path: &Path) -> Result<(), String> {
        write(path, &self.secret)
    }

    /// A token of `subject` for `audience` with the space-separated `scope`, which expires
    /// after `lifetime`.
    pub fn token(
        &self,
        audience: &str,
        subject: &str,
        scope: &str,
        lifetime: Duration,
    ) -> Result<String, String> {
        let now = get_current_timestamp();
        let claims = json!({
            "sub": subject,
            "aud": audience,
            "scope": scope,
            "iat": now,
            "exp": now + lifetime.as_secs(),
        });
        encode(
            &Header::default(),
            &claims,
            &EncodingKey::from_secret(self.secret.as_bytes()),
        )
        .map_err(|err| format!("cannot sign a token for {audience}: {err}"))
    }
}

/// Writes a secret or a token to `path`, as a Kubernetes Secret mounts it: the value alone.
pub fn write(path: &Path, value: &str) -> Result<(), String> {
    fs::write(path, value).map_err(|err| format!("cannot write {}: {err}", path.display()))
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode};
    use serde_json::Value;

    use super::*;

    #[test]
    fn a_token_verifies_with_the_secret_file_for_its_audience_and_expires_after_its_lifetime() {
        let issuer = Issuer::new().unwrap();
        let path = std::env::temp_dir().join(format!("xtask-secret-{}", std::process::id()));
        issuer.write_secret(&path).unwrap();
        let secret = fs::read(&path).unwrap();
        fs::remove_file(&path).unwrap();
        assert_eq!(secret.len(), 2 * SECRET_BYTES);
        assert!(!format!("{issuer:?}").contains(&issuer.secret));

        let token = issuer
            .token(
                "storage-service",
                "order-processor",
                "storage:orders",
                Duration::from_secs(600),
            )
            .unwrap();
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_audience(&["storage-service"]);
        let claims = decode::<Value>(&token, &DecodingKey::from_secret(&secret), &validation)
            .unwrap()
            .claims;
        assert_eq!(claims["sub"], "order-processor");
        assert_eq!(claims["scope"], "storage:orders");
        assert_eq!(
            claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
            600
        );

        validation.set_audience(&["order-processor"]);
        assert!(decode::<Value>(&token, &DecodingKey::from_secret(&secret), &validation).is_err());
        let other = Issuer::new().unwrap();
        assert_ne!(other.secret, issuer.secret, "each run has its own secret");
    }
}

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

//! Who is calling: bearer tokens (JWT) checked against the public keys of `AUTH_JWKS_FILE`
//! (RS256 and ES256, chosen by the token's `kid`) and the shared secret of
//! `AUTH_HS256_SECRET_FILE` (HS256), for this service's audience (`AUTH_AUDIENCE`) and, when
//! set, its issuer (`AUTH_ISSUER`). Both files are read again while the service runs (see
//! `crate::watched`). With neither file set, access is open.
//!
//! The server's middleware verifies the token of each protected operation and runs the
//! handler with the caller as a task-local, as `crate::trace` carries the request's trace, so
//! that a handler can hold the caller to their own orders.

use std::{collections::HashSet, convert::Infallible, fmt, future::Future, time::Duration};

use jsonwebtoken::{
    Algorithm, DecodingKey, Validation,
    errors::ErrorKind,
    jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse},
};
use serde::Deserialize;

use crate::{
    config::ConfigError,
    periodic,
    watched::{self, Refresh, WatchedFile},
};

/// Clock skew tolerated on `exp` and `nbf`, in seconds.
const LEEWAY_SECONDS: u64 = 30;

/// The shortest HS256 secret: the length of the hash, below which HMAC loses strength.
const MIN_SECRET_BYTES: usize = 32;

/// A caller whose token was verified: the user (`sub`) and what the token allows (`scope`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    subject: String,
    scopes: Vec<String>,
}

impl Principal {
    pub fn new(subject: impl Into<String>, scopes: impl IntoIterator<Item = String>) -> Self {
        Self {
            subject: subject.into(),
            scopes: scopes.into_iter().collect(),
        }
    }

    /// The user the token was issued for.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|held| held == scope)
    }

    /// The scopes of `needed` that the token does not hold.
    pub fn missing<'a>(&self, needed: &[&'a str]) -> Vec<&'a str> {
        needed
            .iter()
            .copied()
            .filter(|scope| !self.has_scope(scope))
            .collect()
    }
}

tokio::task_local! {
    static CALLER: Option<Principal>;
}

/// Runs `work` with `caller` as the caller of the request: `None` when access is open. Not an
/// `async fn`, which would hold `work` beside the scope that holds it too, doubling the
/// future's size.
pub fn within<F: Future>(caller: Option<Principal>, work: F) -> impl Future<Output = F::Output> {
    CALLER.scope(caller, work)
}

/// The verified caller of the request being served; `None` when access is open, the
/// operation needs no token, or no request is being served.
pub fn caller() -> Option<Principal> {
    CALLER.try_with(Clone::clone).ok().flatten()
}

/// Why a request's token was refused. None of them carries anything of the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// No `Authorization: Bearer` header.
    Missing,
    /// Not a JWT, a header or claims that cannot be read, or several `Authorization` headers.
    Malformed,
    Expired,
    /// `nbf` is still ahead.
    NotYetValid,
    /// The signature does not verify with the key.
    BadSignature,
    /// No key of the key set has the token's `kid`, or the token names none and the set has
    /// more than one key.
    UnknownKey,
    /// An algorithm other than HS256, RS256 and ES256, or one without its key source.
    Algorithm,
    Audience,
    Issuer,
    /// `exp`, `sub`, `aud` or (when an issuer is set) `iss` is missing, or `sub` is empty.
    MissingClaim,
}

impl Refused {
    /// The reason, as logs and metrics name it.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Malformed => "malformed",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::BadSignature => "bad_signature",
            Self::UnknownKey => "unknown_key",
            Self::Algorithm => "algorithm",
            Self::Audience => "audience",
            Self::Issuer => "issuer",
            Self::MissingClaim => "missing_claim",
        }
    }

    /// What the caller is told.
    pub fn detail(self) -> &'static str {
        match self {
            Self::Missing => "this operation needs a bearer token: Authorization: Bearer <token>",
            Self::Malformed => "the bearer token is not a JWT this service can read",
            Self::Expired => "the bearer token has expired",
            Self::NotYetValid => "the bearer token is not valid yet (nbf)",
            Self::BadSignature => "the signature of the bearer token does not verify",
            Self::UnknownKey => "the bearer token is signed with a key this service does not know",
            Self::Algorithm => {
                "the bearer token is signed with an algorithm this service does not accept"
            }
            Self::Audience => "the bearer token is for another audience",
            Self::Issuer => "the bearer token is from another issuer",
            Self::MissingClaim => {
                "the bearer token lacks a claim this service needs (exp, sub, aud or iss)"
            }
        }
    }
}

/// The claims a handler reads; the others are checked by jsonwebtoken.
#[derive(Deserialize)]
struct Claims {
    /// Defaults so that a token without one is refused by the check of required claims, as
    /// a missing claim rather than a malformed token.
    #[serde(default)]
    sub: String,
    /// Space-separated (RFC 8693); absent: no scopes.
    #[serde(default)]
    scope: Option<String>,
}

/// Checks bearer tokens for one service.
pub struct Verifier {
    audience: String,
    issuer: Option<String>,
    jwks: Option<WatchedFile<KeySet>>,
    secret: Option<WatchedFile<Secret>>,
    /// The claim checks for each accepted algorithm, built once: a `Validation` holds sets of
    /// strings, which building for every request would allocate.
    validations: [(Algorithm, Validation); 3],
    refresh_period: Duration,
}

impl Verifier {
    /// `AUTH_JWKS_FILE`, `AUTH_HS256_SECRET_FILE`, `AUTH_AUDIENCE` (`default_audience` when
    /// unset) and `AUTH_ISSUER`, read through `lookup`; `None` when neither file is set, and
    /// access is open. Both files are read now: one that cannot be used stops startup.
    pub fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
        default_audience: &str,
    ) -> Result<Option<Self>, ConfigError> {
        let set = |name: &str| lookup(name).filter(|value| !value.is_empty());
        let audience = match set("AUTH_AUDIENCE") {
            Some(audience) => checked_realm("AUTH_AUDIENCE", audience)?,
            None => default_audience.to_owned(),
        };
        let issuer = set("AUTH_ISSUER");
        let jwks = set("AUTH_JWKS_FILE")
            .map(|path| WatchedFile::open("AUTH_JWKS_FILE", path, parse_jwks))
            .transpose()?;
        let secret = set("AUTH_HS256_SECRET_FILE")
            .map(|path| WatchedFile::open("AUTH_HS256_SECRET_FILE", path, parse_secret))
            .transpose()?;
        if jwks.is_none() && secret.is_none() {
            return Ok(None);
        }
        let validations = [Algorithm::HS256, Algorithm::RS256, Algorithm::ES256].map(|algorithm| {
            (
                algorithm,
                validation(algorithm, &audience, issuer.as_deref()),
            )
        });
        Ok(Some(Self {
            audience,
            issuer,
            jwks,
            secret,
            validations,
            refresh_period: watched::REFRESH_PERIOD,
        }))
    }

    /// Reads the key files again every `period` instead of every
    /// [`watched::REFRESH_PERIOD`]: for tests, which cannot wait that long.
    #[must_use]
    pub fn with_refresh_period(self, period: Duration) -> Self {
        Self {
            refresh_period: period,
            ..self
        }
    }

    /// The audience tokens must be for; also the realm of `WWW-Authenticate`.
    pub fn audience(&self) -> &str {
        &self.audience
    }

    /// Logs how tokens are checked, and warns when no key can verify any token.
    pub fn announce(&self) {
        let sources: Vec<&str> = [
            self.jwks.as_ref().map(|file| file.variable()),
            self.secret.as_ref().map(|file| file.variable()),
        ]
        .into_iter()
        .flatten()
        .collect();
        tracing::info!(audience = %self.audience, issuer = self.issuer.as_deref().unwrap_or("any"), keys = %sources.join(", "), "bearer tokens are checked");
        if let Some(jwks) = &self.jwks {
            jwks.current().report();
        }
    }

    /// Reads both key files again every refresh period, for as long as it runs; reports the
    /// keys of a new key set as at start.
    pub async fn watch(&self) -> Infallible {
        periodic::forever(self.refresh_period, || {
            if let Some(jwks) = &self.jwks
                && jwks.refresh() == Refresh::Replaced
            {
                jwks.current().report();
            }
            if let Some(secret) = &self.secret {
                secret.refresh();
            }
        })
        .await
    }

    /// The caller that `token` names, when its signature, lifetime, audience and issuer hold.
    pub fn verify(&self, token: &str) -> Result<Principal, Refused> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| Refused::Malformed)?;
        let (_, validation) = self
            .validations
            .iter()
            .find(|(algorithm, _)| *algorithm == header.alg)
            .ok_or(Refused::Algorithm)?;
        let decode = |key: &DecodingKey| {
            jsonwebtoken::decode::<Claims>(token, key, validation)
                .map(|data| data.claims)
                .map_err(|err| refused_by(err.kind()))
        };
        // Each algorithm is verified only with keys of its own source, so that no token can
        // pass a public key off as an HMAC secret.
        let claims = match header.alg {
            Algorithm::HS256 => {
                let secret = self.secret.as_ref().ok_or(Refused::Algorithm)?.current();
                decode(&secret.0)?
            }
            Algorithm::RS256 | Algorithm::ES256 => {
                let jwks = self.jwks.as_ref().ok_or(Refused::Algorithm)?.current();
                decode(jwks.select(header.kid.as_deref(), header.alg)?)?
            }
            _ => return Err(Refused::Algorithm),
        };
        if claims.sub.is_empty() {
            return Err(Refused::MissingClaim);
        }
        let scopes = claims.scope.unwrap_or_default();
        Ok(Principal::new(
            claims.sub,
            scopes.split_ascii_whitespace().map(str::to_owned),
        ))
    }
}

/// The checks of a token's claims signed with `algorithm`: lifetime, audience, and issuer when
/// one is set.
fn validation(algorithm: Algorithm, audience: &str, issuer: Option<&str>) -> Validation {
    let mut validation = Validation::new(algorithm);
    validation.leeway = LEEWAY_SECONDS;
    validation.validate_nbf = true;
    validation.set_audience(&[audience]);
    let mut required = vec!["exp", "sub", "aud"];
    if let Some(issuer) = issuer {
        validation.set_issuer(&[issuer]);
        required.push("iss");
    }
    validation.set_required_spec_claims(&required);
    validation
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("audience", &self.audience)
            .field("issuer", &self.issuer)
            .field("jwks", &self.jwks)
            .field("secret", &self.secret)
            .finish_non_exhaustive()
    }
}

/// The refusal that jsonwebtoken's error stands for.
fn refused_by(kind: &ErrorKind) -> Refused {
    match kind {
        ErrorKind::ExpiredSignature => Refused::Expired,
        ErrorKind::ImmatureSignature => Refused::NotYetValid,
        ErrorKind::InvalidAudience => Refused::Audience,
        ErrorKind::InvalidIssuer => Refused::Issuer,
        ErrorKind::MissingRequiredClaim(_) => Refused::MissingClaim,
        ErrorKind::InvalidAlgorithm => Refused::Algorithm,
        ErrorKind::InvalidSignature
        | ErrorKind::InvalidEcdsaKey
        | ErrorKind::InvalidRsaKey(_)
        | ErrorKind::InvalidKeyFormat
        | ErrorKind::Signing(_) => Refused::BadSignature,
        _ => Refused::Malformed,
    }
}

/// An audience fit to be the realm of `WWW-Authenticate`: visible ASCII, no quote.
fn checked_realm(variable: &'static str, value: String) -> Result<String, ConfigError> {
    if value
        .bytes()
        .all(|byte| byte.is_ascii_graphic() && byte != b'"' && byte != b'\\')
    {
        Ok(value)
    } else {
        Err(ConfigError {
            variable,
            value,
            reason: "expected visible ASCII characters without quotes or backslashes".to_owned(),
        })
    }
}

/// The HS256 secret of `AUTH_HS256_SECRET_FILE`.
struct Secret(DecodingKey);

/// The file's bytes without the line end that editors add; at least [`MIN_SECRET_BYTES`].
fn parse_secret(content: &[u8]) -> Result<Secret, String> {
    let secret = content.strip_suffix(b"\n").unwrap_or(content);
    let secret = secret.strip_suffix(b"\r").unwrap_or(secret);
    if secret.len() < MIN_SECRET_BYTES {
        return Err(format!(
            "the secret is shorter than {MIN_SECRET_BYTES} bytes"
        ));
    }
    Ok(Secret(DecodingKey::from_secret(secret)))
}

/// The keys of `AUTH_JWKS_FILE` that can verify tokens.
struct KeySet {
    keys: Vec<PublicKey>,
    /// Keys of the file left out, and why: by position, since a message never shows what a
    /// file holds.
    skipped: Vec<String>,
}

struct PublicKey {
    kid: Option<String>,
    algorithm: Algorithm,
    key: DecodingKey,
}

impl KeySet {
    /// The key that verifies a token signed with `algorithm`: the one of its `kid`, or, for a
    /// token without one, the only key of the set.
    fn select(&self, kid: Option<&str>, algorithm: Algorithm) -> Result<&DecodingKey, Refused> {
        let key = match kid {
            Some(kid) => self.keys.iter().find(|key| key.kid.as_deref() == Some(kid)),
            None => match self.keys.as_slice() {
                [only] => Some(only),
                _ => None,
            },
        }
        .ok_or(Refused::UnknownKey)?;
        if key.algorithm == algorithm {
            Ok(&key.key)
        } else {
            Err(Refused::Algorithm)
        }
    }

    /// Logs the keys left out, and warns when none is left.
    fn report(&self) {
        for skipped in &self.skipped {
            tracing::warn!(variable = "AUTH_JWKS_FILE", key = %skipped, "a key of the key set is not used");
        }
        if self.keys.is_empty() {
            tracing::warn!(
                variable = "AUTH_JWKS_FILE",
                "the key set holds no usable key: every token signed with RS256 or ES256 is refused"
            );
        }
    }
}

/// A JWKS (`{"keys": [...]}`). Keys of another kind than RSA (RS256) or EC P-256 (ES256),
/// for another use than signatures, for another algorithm, or repeating an earlier `kid`
/// are left out; an empty set is accepted (every token is then refused), so that a
/// placeholder Secret fails closed.
fn parse_jwks(content: &[u8]) -> Result<KeySet, String> {
    #[derive(Deserialize)]
    struct Document {
        keys: Vec<serde_json::Value>,
    }
    let document: Document = serde_json::from_slice(content).map_err(|err| {
        format!(
            "not a JWKS, a JSON object with a \"keys\" array (line {}, column {})",
            err.line(),
            err.column()
        )
    })?;
    let mut set = KeySet {
        keys: Vec::new(),
        skipped: Vec::new(),
    };
    let mut kids = HashSet::new();
    for (index, value) in document.keys.into_iter().enumerate() {
        let key = serde_json::from_value::<Jwk>(value)
            .map_err(|_| "not a JWK this service reads".to_owned())
            .and_then(|jwk| public_key(&jwk))
            .and_then(|key| match &key.kid {
                Some(kid) if !kids.insert(kid.clone()) => {
                    Err("its kid is the kid of an earlier key".to_owned())
                }
                _ => Ok(key),
            });
        match key {
            Ok(key) => set.keys.push(key),
            Err(why) => set.skipped.push(format!("key #{}: {why}", index + 1)),
        }
    }
    Ok(set)
}

/// The verifying key of a JWK, with the one algorithm it verifies.
fn public_key(jwk: &Jwk) -> Result<PublicKey, String> {
    if matches!(&jwk.common.public_key_use, Some(usage) if *usage != PublicKeyUse::Signature) {
        return Err("its use is not sig".to_owned());
    }
    let (algorithm, declared) = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => (Algorithm::RS256, KeyAlgorithm::RS256),
        AlgorithmParameters::EllipticCurve(params) if params.curve == EllipticCurve::P256 => {
            (Algorithm::ES256, KeyAlgorithm::ES256)
        }
        _ => return Err("only RSA keys (RS256) and EC P-256 keys (ES256) are used".to_owned()),
    };
    if jwk.common.key_algorithm.is_some_and(|alg| alg != declared) {
        return Err(format!("its alg is not {algorithm:?}"));
    }
    let key = DecodingKey::from_jwk(jwk).map_err(|_| "its parameters cannot be read".to_owned())?;
    Ok(PublicKey {
        kid: jwk.common.key_id.clone(),
        algorithm,
        key,
    })
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::{EncodingKey, Header, encode, get_current_timestamp};
    use serde_json::{Value, json};

    use super::*;

    const SECRET: &str = "a-test-secret-of-at-least-32-bytes!";

    /// A file under the system's temp dir, removed when dropped.
    struct File(std::path::PathBuf);

    impl File {
        fn new(content: &str) -> Self {
            let path = std::env::temp_dir().join(format!("access-{}", uuid::Uuid::new_v4()));
            std::fs::write(&path, content).unwrap();
            Self(path)
        }

        fn path(&self) -> String {
            self.0.to_str().unwrap().to_owned()
        }
    }

    impl Drop for File {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    fn verifier(vars: &[(&str, &str)]) -> Result<Option<Verifier>, ConfigError> {
        Verifier::from_lookup(
            |name| {
                vars.iter()
                    .find(|(key, _)| *key == name)
                    .map(|(_, value)| (*value).to_owned())
            },
            "order-processor",
        )
    }

    fn hs256_verifier(file: &File) -> Verifier {
        verifier(&[("AUTH_HS256_SECRET_FILE", &file.path())])
            .unwrap()
            .unwrap()
    }

    fn claims(extra: Value) -> Value {
        let mut claims = json!({
            "sub": "user-1",
            "aud": "order-processor",
            "exp": get_current_timestamp() + 300,
            "scope": "orders:read orders:write",
        });
        for (name, value) in extra.as_object().unwrap() {
            if value.is_null() {
                claims.as_object_mut().unwrap().remove(name);
            } else {
                claims[name] = value.clone();
            }
        }
        claims
    }

    fn hs256(claims: &Value) -> String {
        encode(
            &Header::default(),
            claims,
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap()
    }

    #[test]
    fn without_a_key_source_access_is_open() {
        assert!(verifier(&[]).unwrap().is_none());
        assert!(
            verifier(&[("AUTH_JWKS_FILE", ""), ("AUTH_AUDIENCE", "x")])
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn a_valid_token_names_its_subject_and_scopes() {
        let file = File::new(&format!("{SECRET}\n"));
        let verifier = hs256_verifier(&file);
        let principal = verifier.verify(&hs256(&claims(json!({})))).unwrap();
        assert_eq!(principal.subject(), "user-1");
        assert!(principal.has_scope("orders:read"));
        assert_eq!(
            principal.missing(&["orders:write", "orders:any-user"]),
            ["orders:any-user"]
        );
        let unscoped = verifier
            .verify(&hs256(&claims(json!({"scope": null}))))
            .unwrap();
        assert_eq!(unscoped.missing(&["orders:read"]), ["orders:read"]);
    }

    #[test]
    fn each_broken_claim_is_refused_for_its_reason() {
        let file = File::new(SECRET);
        let verifier = hs256_verifier(&file);
        let now = get_current_timestamp();
        let cases = [
            (json!({"exp": now - 120}), Refused::Expired),
            (json!({"nbf": now + 120}), Refused::NotYetValid),
            (json!({"aud": "storage-service"}), Refused::Audience),
            (json!({"exp": null}), Refused::MissingClaim),
            (json!({"sub": null}), Refused::MissingClaim),
            (json!({"sub": ""}), Refused::MissingClaim),
            (json!({"aud": null}), Refused::MissingClaim),
            (json!({"scope": ["orders:read"]}), Refused::Malformed),
        ];
        for (extra, refused) in cases {
            assert_eq!(
                verifier.verify(&hs256(&claims(extra.clone()))),
                Err(refused),
                "{extra}"
            );
        }
        // Within the leeway, a token just expired or not quite valid yet is accepted.
        let skewed = claims(json!({"exp": now - 10, "nbf": now + 10}));
        assert!(verifier.verify(&hs256(&skewed)).is_ok());
        assert_eq!(verifier.verify("not.a.jwt"), Err(Refused::Malformed));
        assert_eq!(verifier.verify(""), Err(Refused::Malformed));
    }

    #[test]
    fn a_configured_issuer_is_required_and_checked() {
        let file = File::new(SECRET);
        let verifier = verifier(&[
            ("AUTH_HS256_SECRET_FILE", &file.path()),
            ("AUTH_ISSUER", "https://id.example"),
        ])
        .unwrap()
        .unwrap();
        let from = |issuer: Value| verifier.verify(&hs256(&claims(json!({"iss": issuer}))));
        assert!(from(json!("https://id.example")).is_ok());
        assert_eq!(from(json!("https://other.example")), Err(Refused::Issuer));
        assert_eq!(from(Value::Null), Err(Refused::MissingClaim));
    }

    #[test]
    fn a_token_signed_with_another_secret_is_refused() {
        let file = File::new(SECRET);
        let verifier = hs256_verifier(&file);
        let forged = encode(
            &Header::default(),
            &claims(json!({})),
            &EncodingKey::from_secret(b"another-secret-of-at-least-32-bytes"),
        )
        .unwrap();
        assert_eq!(verifier.verify(&forged), Err(Refused::BadSignature));
    }

    #[test]
    fn a_token_of_an_algorithm_without_its_key_source_is_refused() {
        let file = File::new(SECRET);
        let verifier = hs256_verifier(&file);
        let hs512 = encode(
            &Header::new(Algorithm::HS512),
            &claims(json!({})),
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap();
        assert_eq!(verifier.verify(&hs512), Err(Refused::Algorithm));
        // `none` is no algorithm jsonwebtoken knows: such a header cannot be read.
        let none = format!(
            "{}.{}.",
            b64(r#"{"alg":"none","typ":"JWT"}"#),
            b64(&claims(json!({})).to_string())
        );
        assert_eq!(verifier.verify(&none), Err(Refused::Malformed));
        let jwks = File::new(r#"{"keys": []}"#);
        let jwks_only = verifier_of(&jwks);
        assert_eq!(
            jwks_only.verify(&hs256(&claims(json!({})))),
            Err(Refused::Algorithm)
        );
    }

    fn verifier_of(jwks: &File) -> Verifier {
        verifier(&[("AUTH_JWKS_FILE", &jwks.path())])
            .unwrap()
            .unwrap()
    }

    fn b64(text: &str) -> String {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
    }

    #[test]
    fn a_short_secret_or_a_bad_audience_is_refused_with_the_variable_named_and_no_content() {
        let file = File::new("short-secret\n");
        let err = verifier(&[("AUTH_HS256_SECRET_FILE", &file.path())]).unwrap_err();
        assert_eq!(err.variable, "AUTH_HS256_SECRET_FILE");
        assert_eq!(err.reason, "the secret is shorter than 32 bytes");
        assert!(!err.to_string().contains("short-secret"), "{err}");

        let secret = File::new(SECRET);
        let err = verifier(&[
            ("AUTH_HS256_SECRET_FILE", &secret.path()),
            ("AUTH_AUDIENCE", "order \"processor\""),
        ])
        .unwrap_err();
        assert_eq!(err.variable, "AUTH_AUDIENCE");
    }

    #[test]
    fn a_file_that_is_not_a_jwks_is_refused_and_an_empty_one_refuses_every_token() {
        for content in [
            "",
            "{\"kid\": \"secret-looking\"}",
            "[1, 2]",
            "{\"keys\": {}}",
        ] {
            let file = File::new(content);
            let err = verifier(&[("AUTH_JWKS_FILE", &file.path())]).unwrap_err();
            assert_eq!(err.variable, "AUTH_JWKS_FILE", "{content}");
            assert!(err.reason.starts_with("not a JWKS"), "{err}");
            assert!(!err.to_string().contains("secret-looking"), "{err}");
        }
        let empty = File::new(r#"{"keys": []}"#);
        let verifier = verifier_of(&empty);
        let header = b64(r#"{"alg":"ES256","kid":"k1"}"#);
        let forged = format!("{header}.{}.AAAA", b64(&claims(json!({})).to_string()));
        assert_eq!(verifier.verify(&forged), Err(Refused::UnknownKey));
    }

    /// An EC P-256 public key (the generator point) as a JWK with `extra` members.
    fn ec_jwk(extra: Value) -> Value {
        let mut jwk = json!({
            "kty": "EC",
            "crv": "P-256",
            "x": "axfR8uEsQkf4vOblY6RA8ncDfYEt6zOg9KE5RdiYwpY",
            "y": "T-NC4v4af5uO5-tKfA-eFivOM1drMV7Oy7ZAaDe_UfU",
        });
        for (name, value) in extra.as_object().unwrap() {
            jwk[name] = value.clone();
        }
        jwk
    }

    #[test]
    fn keys_of_other_kinds_uses_or_algorithms_and_repeated_kids_are_left_out() {
        let document = json!({"keys": [
            ec_jwk(json!({"kid": "a", "use": "sig", "alg": "ES256"})),
            ec_jwk(json!({"kid": "b", "use": "enc"})),
            ec_jwk(json!({"kid": "c", "alg": "ES384"})),
            ec_jwk(json!({"kid": "a"})),
            {"kty": "oct", "kid": "d", "k": "c2VjcmV0"},
            {"kty": "RSA", "kid": "e", "n": "AQAB", "e": "AQAB", "alg": "RS512"},
            {"kty": "unknown"},
            {"kty": "RSA", "kid": "f", "n": "AQAB", "e": "AQAB"},
        ]});
        let set = parse_jwks(document.to_string().as_bytes()).unwrap();
        let kids: Vec<Option<&str>> = set.keys.iter().map(|key| key.kid.as_deref()).collect();
        assert_eq!(kids, [Some("a"), Some("f")]);
        assert_eq!(
            set.skipped,
            [
                "key #2: its use is not sig",
                "key #3: its alg is not ES256",
                "key #4: its kid is the kid of an earlier key",
                "key #5: only RSA keys (RS256) and EC P-256 keys (ES256) are used",
                "key #6: its alg is not RS256",
                "key #7: not a JWK this service reads",
            ]
        );
        assert!(set.select(Some("a"), Algorithm::ES256).is_ok());
        assert_eq!(
            set.select(Some("a"), Algorithm::RS256).err(),
            Some(Refused::Algorithm)
        );
        assert_eq!(
            set.select(Some("d"), Algorithm::ES256).err(),
            Some(Refused::UnknownKey)
        );
        assert_eq!(
            set.select(None, Algorithm::ES256).err(),
            Some(Refused::UnknownKey),
            "no kid with two keys"
        );
        let one = parse_jwks(json!({"keys": [ec_jwk(json!({}))]}).to_string().as_bytes()).unwrap();
        assert!(
            one.select(None, Algorithm::ES256).is_ok(),
            "no kid with one key"
        );
    }

    #[tokio::test]
    async fn the_caller_is_known_only_within_its_request() {
        assert_eq!(caller(), None);
        let principal = Principal::new("user-1", ["orders:read".to_owned()]);
        let seen = within(Some(principal.clone()), async { caller() }).await;
        assert_eq!(seen, Some(principal));
        assert_eq!(within(None, async { caller() }).await, None);
    }
}

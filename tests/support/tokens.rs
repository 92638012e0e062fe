//! Bearer tokens for tests: claims a test adjusts, signed with the shared secret the test
//! writes or with the test keys of `tests/fixtures/auth` (public keys in its JWKS files).

use std::path::PathBuf;

use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode, get_current_timestamp};
use serde_json::{Value, json};

/// The HS256 secret the tests write to `AUTH_HS256_SECRET_FILE`.
pub const SECRET: &str = "a-shared-secret-for-tests-only-0123456789";

/// A file of `tests/fixtures/auth`.
pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/auth")
        .join(name)
}

/// Claims of `sub` for `aud` with `scope`, valid for five minutes.
pub fn claims(sub: &str, aud: &str, scope: &str) -> Value {
    json!({
        "sub": sub,
        "aud": aud,
        "scope": scope,
        "iat": get_current_timestamp(),
        "exp": get_current_timestamp() + 300,
    })
}

/// `claims` with each member of `changes` set, or removed where it is null.
pub fn with(mut claims: Value, changes: Value) -> Value {
    for (name, value) in changes.as_object().expect("changes are an object") {
        match value {
            Value::Null => {
                claims.as_object_mut().expect("claims").remove(name);
            }
            value => claims[name] = value.clone(),
        }
    }
    claims
}

/// `claims` signed with HS256 and `secret`.
pub fn hs256_with(secret: &str, claims: &Value) -> String {
    encode(
        &Header::default(),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("sign with HS256")
}

/// `claims` signed with HS256 and [`SECRET`].
pub fn hs256(claims: &Value) -> String {
    hs256_with(SECRET, claims)
}

/// `claims` signed with RS256 by the RSA key `key` of the fixtures, with `kid` in the header.
pub fn rs256(key: &str, kid: Option<&str>, claims: &Value) -> String {
    let header = Header {
        kid: kid.map(str::to_owned),
        ..Header::new(Algorithm::RS256)
    };
    encode(&header, claims, &EncodingKey::from_rsa_der(&der(key))).expect("sign with RS256")
}

/// `claims` signed with ES256 by the P-256 key `key` of the fixtures, with `kid` in the header.
pub fn es256(key: &str, kid: Option<&str>, claims: &Value) -> String {
    let header = Header {
        kid: kid.map(str::to_owned),
        ..Header::new(Algorithm::ES256)
    };
    encode(&header, claims, &EncodingKey::from_ec_der(&der(key))).expect("sign with ES256")
}

/// A token that claims no algorithm and carries no signature.
pub fn unsigned(claims: &Value) -> String {
    let part =
        |value: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value.to_string());
    format!(
        "{}.{}.",
        part(&json!({"alg": "none", "typ": "JWT"})),
        part(claims)
    )
}

/// The DER of the PEM file `name`: the base64 between its BEGIN and END lines.
fn der(name: &str) -> Vec<u8> {
    let pem = std::fs::read_to_string(fixture(name)).expect("read a test key");
    let body: String = pem
        .lines()
        .skip_while(|line| !line.starts_with("-----BEGIN"))
        .skip(1)
        .take_while(|line| !line.starts_with("-----END"))
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .expect("a PEM body")
}

//! `cargo xtask swagger-ui`: Swagger UI works in a real browser on a machine without
//! internet. Starts the Order Processor, opens `/docs` in headless Chromium and tries
//! `POST /orders` (`xtask/swagger-ui.js`), twice: on the embedded default, where access is
//! open and the call answers 201; and with an HS256 secret, where the service checks tokens
//! and the call answers 401 until a token is given through "Authorize", then 201.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use jsonwebtoken::{EncodingKey, Header, encode, get_current_timestamp};
use serde_json::{Value, json};

use crate::{
    services::{BUILD_SERVICES, Service, free_port, request, target_dir, wait_until_up},
    step,
};

/// The browser driver, pinned; it drives the system's Chromium and downloads no browser.
const PLAYWRIGHT: &str = "playwright-core@1.65.1";

/// The access settings of the Order Processor, set empty (unset, for the service) unless a
/// run sets them: settings in the caller's environment would change what each run expects.
const ACCESS_VARIABLES: [&str; 4] = [
    "AUTH_JWKS_FILE",
    "AUTH_HS256_SECRET_FILE",
    "AUTH_AUDIENCE",
    "AUTH_ISSUER",
];

/// How long the token lasts: the browser run's few seconds, with room for a slow machine.
const TOKEN_SECONDS: u64 = 300;

pub fn check(root: &Path) -> Result<(), String> {
    let chromium = chromium()?;
    let target = target_dir(root);
    let modules = node_modules(&target)?;
    step::cargo(root, "build the services", &BUILD_SERVICES)?;
    let work = target.join("xtask-swagger-ui");
    let _ = fs::remove_dir_all(&work);
    let browser = |port: u16| {
        let mut command = Command::new("node");
        command
            .arg(root.join("xtask/swagger-ui.js"))
            .arg(format!("http://127.0.0.1:{port}"))
            .env("NODE_PATH", &modules)
            .env("CHROMIUM", &chromium);
        command
    };

    {
        let (port, _service) = start(&target, &work.join("open-access"), &[])?;
        step::run(
            "Swagger UI in headless Chromium, open access: try POST /orders",
            &mut browser(port),
        )?;
    }

    let work = work.join("tokens");
    create_dir(&work)?;
    let secret = random_secret()?;
    let secret_file = work.join("hs256-secret");
    fs::write(&secret_file, &secret)
        .map_err(|err| format!("cannot write {}: {err}", secret_file.display()))?;
    let secret_file = secret_file.display().to_string();
    let (port, _service) = start(
        &target,
        &work,
        &[("AUTH_HS256_SECRET_FILE", secret_file.as_str())],
    )?;
    let token = token(&secret, &example_user(port)?)?;
    step::run(
        "Swagger UI in headless Chromium, tokens checked: POST /orders refused, then authorized",
        // The script reads the token from its environment: an argument would show in the
        // process list, and nothing prints the environment.
        browser(port).env("SWAGGER_UI_TOKEN", token),
    )
}

/// The Order Processor on its embedded store under `work`, on a free port once it is ready,
/// with the access settings `access` (the others empty).
fn start(target: &Path, work: &Path, access: &[(&str, &str)]) -> Result<(u16, Service), String> {
    create_dir(work)?;
    let port = free_port()?;
    let port_text = port.to_string();
    let data = work.join("data").display().to_string();
    // A variable set twice takes its later value.
    let mut env: Vec<(&str, &str)> = ACCESS_VARIABLES.map(|variable| (variable, "")).to_vec();
    env.extend_from_slice(access);
    env.extend([("SERVER_PORT", port_text.as_str()), ("DATA_DIR", &data)]);
    let service = Service::start(
        "order-processor",
        &target.join("debug/order-processor"),
        &env,
        work,
    )?;
    wait_until_up(port, "/health/ready")?;
    Ok((port, service))
}

fn create_dir(dir: &Path) -> Result<(), String> {
    fs::create_dir_all(dir).map_err(|err| format!("cannot create {}: {err}", dir.display()))
}

/// 32 random bytes in hex: a secret as long as the hash, so HMAC keeps its strength.
fn random_secret() -> Result<String, String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|err| format!("no random bytes for a secret: {err}"))?;
    Ok(bytes.iter().map(|byte| format!("{byte:02x}")).collect())
}

/// The user Swagger UI places the order for: `userId` of the example body it fills in, the
/// example of `POST /orders`' request schema in the served document. The token acts for that
/// user, since placing an order for another one needs `orders:any-user` as well.
fn example_user(port: u16) -> Result<String, String> {
    let (status, body) = request(port, "GET", "/openapi.json", None)
        .map_err(|err| format!("cannot read /openapi.json: {err}"))?;
    if status != 200 {
        return Err(format!("/openapi.json answered {status}"));
    }
    let document: Value =
        serde_json::from_str(&body).map_err(|err| format!("/openapi.json is not JSON: {err}"))?;
    // JSON, named with its charset in the served document.
    let schema = document["paths"]["/orders"]["post"]["requestBody"]["content"]
        .as_object()
        .and_then(|content| {
            content
                .iter()
                .find(|(media_type, _)| media_type.starts_with("application/json"))
        })
        .map_or(&Value::Null, |(_, media)| &media["schema"]);
    let schema = match schema["$ref"].as_str() {
        Some(reference) => reference
            .strip_prefix('#')
            .and_then(|pointer| document.pointer(pointer))
            .unwrap_or(&Value::Null),
        None => schema,
    };
    schema["example"]["userId"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| {
            "the request schema of POST /orders in /openapi.json has no example userId".to_owned()
        })
}

/// A token of `user` for the Order Processor's default audience that places orders, signed
/// with `secret`.
fn token(secret: &str, user: &str) -> Result<String, String> {
    let now = get_current_timestamp();
    let claims = json!({
        "sub": user,
        "aud": "order-processor",
        "scope": "orders:write",
        "iat": now,
        "exp": now + TOKEN_SECONDS,
    });
    encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .map_err(|err| format!("cannot sign a token: {err}"))
}

/// The browser: `CHROMIUM`, or Debian's `chromium`, installed with apt when it is missing.
fn chromium() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("CHROMIUM") {
        return Ok(PathBuf::from(path));
    }
    let path = PathBuf::from("/usr/bin/chromium");
    if !path.exists() {
        step::apt_install("chromium", &[]).map_err(|err| {
            format!("{err}: install Debian's `chromium` package, or set CHROMIUM")
        })?;
    }
    Ok(path)
}

/// `node_modules` with the pinned driver, installed on first use.
fn node_modules(target: &Path) -> Result<PathBuf, String> {
    let prefix = target.join("xtask-node");
    let stamp = prefix.join("installed");
    if fs::read_to_string(&stamp).is_ok_and(|have| have == PLAYWRIGHT) {
        return Ok(prefix.join("node_modules"));
    }
    fs::create_dir_all(&prefix)
        .map_err(|err| format!("cannot create {}: {err}", prefix.display()))?;
    step::run(
        "node browser driver",
        Command::new("npm")
            .args([
                "install",
                "--no-audit",
                "--no-fund",
                "--no-save",
                "--prefix",
            ])
            .arg(&prefix)
            .arg(PLAYWRIGHT),
    )?;
    fs::write(&stamp, PLAYWRIGHT)
        .map_err(|err| format!("cannot write {}: {err}", stamp.display()))?;
    Ok(prefix.join("node_modules"))
}

//! The generator is faithful: the document each generated poem-openapi server serves says
//! exactly what the committed spec says, once cosmetic differences are normalised.

#[path = "support/spec_diff.rs"]
mod spec_diff;
mod support {
    pub mod fs;
    pub mod net;
    pub mod sqlite;
}

use std::sync::Arc;

use order_processor::{http::storage_api::spawn_reference_storage, startup::Application};
use serde_json::Value;

use support::{net::LOOPBACK, sqlite::fresh_store};

fn committed(spec: &str) -> Value {
    let path = format!("{}/openapi/{spec}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("read {path}: {err}"));
    serde_yaml::from_str(&text).unwrap_or_else(|err| panic!("parse {path}: {err}"))
}

async fn served(base_url: &str) -> Value {
    let text = reqwest::get(format!("{base_url}/openapi.yaml"))
        .await
        .expect("GET /openapi.yaml")
        .text()
        .await
        .expect("read the served spec");
    serde_yaml::from_str(&text).expect("the served spec is YAML")
}

fn assert_same(spec: &str, served: &Value) {
    let differences = spec_diff::differences(&committed(spec), served);
    assert!(
        differences.is_empty(),
        "openapi/{spec} and the served document differ:\n{}",
        differences.join("\n")
    );
}

#[tokio::test]
async fn the_order_processor_serves_exactly_its_committed_spec() {
    let (store, _dir) = fresh_store();
    let server = Application::build(store, LOOPBACK)
        .await
        .expect("bind")
        .spawn();

    assert_same("order-processor.yaml", &served(&server.url()).await);

    server.stop().await.expect("stop cleanly");
}

#[tokio::test]
async fn the_reference_storage_service_serves_exactly_its_committed_spec() {
    let (store, _dir) = fresh_store();
    let storage = spawn_reference_storage(Arc::new(store), LOOPBACK)
        .await
        .expect("bind");

    assert_same("storage-service.yaml", &served(&storage.url()).await);

    storage.stop().await.expect("stop cleanly");
}

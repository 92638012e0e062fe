//! The generator is faithful: the document each generated poem-openapi server serves says
//! exactly what the committed spec says, once cosmetic differences are normalised.

#[path = "support/spec_diff.rs"]
mod spec_diff;

use std::{net::SocketAddr, sync::Arc};

use order_processor::{
    http::storage_api::spawn_reference_storage, startup::Application, storage::sqlite::SqliteStore,
};
use serde_json::Value;

const LOOPBACK: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 0);

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

fn temp_store() -> (SqliteStore, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("contracts-{}", uuid::Uuid::new_v4()));
    let store = SqliteStore::open(&dir.join("contracts.db")).expect("open a store");
    (store, dir)
}

#[tokio::test]
async fn the_order_processor_serves_exactly_its_committed_spec() {
    let (store, dir) = temp_store();
    let server = Application::build(store, LOOPBACK)
        .await
        .expect("bind")
        .spawn();

    assert_same("order-processor.yaml", &served(&server.url()).await);

    server.stop().await.expect("stop cleanly");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn the_reference_storage_service_serves_exactly_its_committed_spec() {
    let (store, dir) = temp_store();
    let storage = spawn_reference_storage(Arc::new(store), LOOPBACK)
        .await
        .expect("bind");

    assert_same("storage-service.yaml", &served(&storage.url()).await);

    storage.stop().await.expect("stop cleanly");
    let _ = std::fs::remove_dir_all(dir);
}

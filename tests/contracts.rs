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

use order_processor::{
    http::{problem, storage_api::spawn_reference_storage},
    startup::Application,
};
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

/// Swagger UI shows a response's own examples, so each error answer of both specs carries
/// at least one, and each is an answer the service can give: a kind of problem it knows,
/// with that kind's title, under the status the kind is answered with.
#[test]
fn every_error_answer_has_examples_of_problems_the_service_gives_with_its_status() {
    for spec in ["order-processor.yaml", "storage-service.yaml"] {
        let document = committed(spec);
        let mut missing = Vec::new();
        for (path, operations) in document["paths"].as_object().expect("paths") {
            for (method, operation) in operations.as_object().expect("operations") {
                for (status, response) in operation["responses"].as_object().expect("responses") {
                    let where_ = format!("{spec}: {method} {path} {status}");
                    let media = &response["content"]["application/json"];
                    if media["schema"]["$ref"] != "#/components/schemas/Problem" {
                        continue;
                    }
                    let examples = media["examples"].as_object();
                    if examples.is_none_or(|examples| examples.is_empty()) {
                        missing.push(where_);
                        continue;
                    }
                    for (name, example) in examples.into_iter().flatten() {
                        let reference = example["$ref"].as_str().expect("a reference");
                        let component = reference
                            .strip_prefix("#/components/examples/")
                            .expect("a reference to components/examples");
                        let value = &document["components"]["examples"][component]["value"];
                        assert_is_an_answer(&format!("{where_} {name}"), status, value);
                    }
                }
            }
        }
        assert!(
            missing.is_empty(),
            "without examples:\n{}",
            missing.join("\n")
        );
    }
}

fn assert_is_an_answer(where_: &str, status: &str, problem: &Value) {
    let kind = problem::KINDS
        .iter()
        .find(|kind| problem["type"] == kind.type_)
        .unwrap_or_else(|| panic!("{where_}: {} is not a kind of problem", problem["type"]));
    assert_eq!(problem["title"], kind.title, "{where_}: title");
    assert_eq!(problem["status"], kind.status.as_u16(), "{where_}: status");
    assert_eq!(
        status,
        kind.status.as_str(),
        "{where_}: answered under another status"
    );
}

/// Swagger UI, `/openapi.json` and `/openapi.yaml` show one document, examples and security
/// included: with the bearer scheme in the page's document, Swagger UI offers "Authorize".
#[tokio::test]
async fn swagger_ui_and_both_documents_show_the_same_document_with_its_examples_and_security() {
    let (store, _dir) = fresh_store();
    let server = Application::build(store, LOOPBACK)
        .await
        .expect("bind")
        .spawn();
    let get = |path: &str| {
        let url = format!("{}{path}", server.url());
        async move {
            let response = reqwest::get(url).await.expect("GET");
            assert_eq!(response.status(), 200);
            response.text().await.expect("read the body")
        }
    };

    let json = get("/openapi.json").await;
    let document: Value = serde_json::from_str(&json).expect("JSON");
    assert_eq!(document, served(&server.url()).await);
    let conflict = &document["paths"]["/orders"]["post"]["responses"]["409"]["content"];
    let examples = conflict["application/json; charset=utf-8"]["examples"]
        .as_object()
        .expect("the 409 of POST /orders has examples");
    assert_eq!(
        examples["outOfStock"]["$ref"],
        "#/components/examples/outOfStock"
    );
    let scheme = &document["components"]["securitySchemes"]["bearer"];
    assert_eq!(scheme["type"], "http");
    assert_eq!(scheme["scheme"], "bearer");
    let create = &document["paths"]["/orders"]["post"];
    assert_eq!(create["security"], serde_json::json!([{ "bearer": [] }]));
    assert_eq!(
        create["x-required-scopes"],
        serde_json::json!(["orders:write"])
    );
    assert!(
        document["paths"]["/health"]["get"]
            .get("security")
            .is_none()
    );
    assert!(
        get("/docs").await.contains(&json),
        "the Swagger UI page inlines the served document"
    );

    server.stop().await.expect("stop cleanly");
}

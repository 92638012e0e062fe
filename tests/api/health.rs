//! Health, liveness, readiness, and the documentation routes.

use serde_json::Value;

use crate::{
    helpers::{Backend, on_both_backends, spawn_app},
    support::problem::problem,
};

async fn health_live_and_ready_answer_up(backend: Backend) {
    let app = spawn_app(backend).await;
    for path in ["/health", "/health/live", "/health/ready"] {
        let response = app.get(path).await;
        assert_eq!(response.status().as_u16(), 200, "{path}");
        assert_eq!(
            response.json::<Value>().await.unwrap()["status"],
            "up",
            "{path}"
        );
    }
}

async fn swagger_ui_and_the_spec_are_served(backend: Backend) {
    let app = spawn_app(backend).await;
    let docs = app.get("/docs").await;
    assert_eq!(docs.status().as_u16(), 200);
    let html = docs.text().await.unwrap();
    assert!(html.contains("SwaggerUIBundle"), "Swagger UI is inline");
    assert!(html.contains("/orders/user/{userId}"), "the spec is inline");

    let json: Value = app.get("/openapi.json").await.json().await.unwrap();
    assert_eq!(json["info"]["title"], "Order Processor");
    let yaml = app.get("/openapi.yaml").await.text().await.unwrap();
    assert!(yaml.contains("operationId: create_order"));
}

on_both_backends!(
    health_live_and_ready_answer_up,
    swagger_ui_and_the_spec_are_served
);

#[tokio::test]
async fn ready_answers_503_with_retry_after_when_the_storage_service_is_down() {
    let mut app = spawn_app(Backend::Remote).await;
    app.storage_service.take().unwrap().stop().await.unwrap();

    let live = app.get("/health/live").await;
    assert_eq!(
        live.status().as_u16(),
        200,
        "liveness does not depend on the storage"
    );
    let ready = app.get("/health/ready").await;
    assert!(ready.headers().contains_key("retry-after"));
    problem(ready, 503).await;
}

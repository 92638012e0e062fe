//! The code generated from the fixture specs and from the project's specs, against the
//! committed snapshots in `tests/snapshots/`. A change to the generator shows here as a diff
//! of its output; `cargo insta review` (or `INSTA_UPDATE=always`) accepts an intended one.

use order_processor_codegen::{Generated, generate};

fn generated(spec: &str) -> Generated {
    generate(spec).unwrap_or_else(|errors| panic!("{errors}"))
}

#[test]
fn a_minimal_spec() {
    let generated = generated("tests/fixtures/minimal.yaml");
    insta::assert_snapshot!("minimal_server", generated.server());
    insta::assert_snapshot!("minimal_client", generated.client().expect("a client"));
}

#[test]
fn a_spec_with_a_body_headers_a_pattern_an_enum_and_bounds() {
    insta::assert_snapshot!(
        "body_headers_server",
        generated("tests/fixtures/body-headers.yaml").server()
    );
}

#[test]
fn a_spec_with_bearer_access() {
    insta::assert_snapshot!(
        "bearer_server",
        generated("tests/fixtures/bearer.yaml").server()
    );
}

#[test]
fn the_order_processor_spec() {
    insta::assert_snapshot!(
        "order_processor_server",
        generated("../openapi/order-processor.yaml").server()
    );
}

#[test]
fn the_storage_service_spec() {
    insta::assert_snapshot!(
        "storage_service_server",
        generated("../openapi/storage-service.yaml").server()
    );
}

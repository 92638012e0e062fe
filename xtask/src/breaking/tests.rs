//! Each kind of change is a pair of documents under `xtask/tests/fixtures/breaking/`: `base.yaml`
//! (a request body, parameters, responses, shared and recursive schemas) and a copy of it with one
//! edit, named after the edit. Each test states what its edit is reported as.

use std::{fs, path::Path};

use super::*;

/// The breaking changes from `base.yaml` to the fixture `name`.
fn breaking(name: &str) -> Vec<Change> {
    breaking_between("base", name)
}

fn breaking_between(old: &str, new: &str) -> Vec<Change> {
    compare("t.yaml", &fixture(old), &fixture(new)).unwrap()
}

/// Their identifiers, as a changelog line acknowledges them.
fn ids(name: &str) -> Vec<String> {
    ids_between("base", name)
}

fn ids_between(old: &str, new: &str) -> Vec<String> {
    breaking_between(old, new)
        .into_iter()
        .map(|change| change.id)
        .collect()
}

fn fixture(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/breaking")
        .join(format!("{name}.yaml"));
    let text = fs::read_to_string(&path)
        .unwrap_or_else(|err| panic!("cannot read {}: {err}", path.display()));
    parse(name, &text).unwrap()
}

/// Asserts that each fixture is reported with exactly the identifiers given.
fn assert_reported(cases: &[(&str, &[&str])]) {
    for &(name, expected) in cases {
        let expected: Vec<String> = expected.iter().map(|id| format!("t.yaml: {id}")).collect();
        assert_eq!(ids(name), expected, "fixture {name}");
    }
}

/// Asserts that no fixture named has a breaking change.
fn assert_not_breaking(names: &[&str]) {
    for name in names {
        assert_eq!(ids(name), Vec::<String>::new(), "fixture {name}");
    }
}

#[test]
fn identical_specs_have_no_changes() {
    assert_not_breaking(&["base"]);
}

#[test]
fn removed_operation() {
    assert_reported(&[("removed-operation", &["removed operation GET /orders/{id}"])]);
}

#[test]
fn new_operation_is_not_breaking() {
    assert_not_breaking(&["new-operation"]);
}

#[test]
fn removed_response_field() {
    assert_reported(&[(
        "removed-response-field",
        &["removed response field Order.reason"],
    )]);
    // The server ignores a request field it no longer knows.
    assert_not_breaking(&["removed-optional-request-field"]);
}

#[test]
fn new_required_request_field() {
    assert_reported(&[(
        "new-required-request-field",
        &["new required request field CreateOrderRequest.note"],
    )]);
    // In a response, clients get more, not less.
    assert_not_breaking(&["new-required-response-field"]);
}

#[test]
fn now_required_parameter() {
    assert_reported(&[(
        "now-required-parameter",
        &["now required query parameter limit of GET /orders"],
    )]);
}

#[test]
fn new_required_parameter() {
    assert_reported(&[(
        "new-required-parameter",
        &["new required header parameter tenant of GET /orders"],
    )]);
}

#[test]
fn new_optional_inputs_and_response_changes_are_not_breaking() {
    assert_not_breaking(&[
        "new-optional-request-field",
        "parameter-marked-optional",
        "new-response-field",
        "removed-response-status",
        "added-response-status",
        "changed-description",
    ]);
}

#[test]
fn narrowed_bounds_in_requests() {
    assert_reported(&[
        (
            "narrowed-max-length",
            &["narrowed maxLength in request BookId"],
        ),
        (
            "narrowed-min-length",
            &["narrowed minLength in request BookId"],
        ),
        (
            "narrowed-maximum",
            &["narrowed maximum in request CreateOrderRequest.quantity"],
        ),
        (
            "narrowed-minimum",
            &["narrowed minimum in request query parameter limit of GET /orders"],
        ),
        (
            "narrowed-max-items",
            &["narrowed maxItems in request CreateOrderRequest.tags"],
        ),
        (
            "narrowed-min-items",
            &["narrowed minItems in request CreateOrderRequest.tags"],
        ),
        // A bound where there was none.
        (
            "new-max-length",
            &["narrowed maxLength in request CreateOrderRequest.note"],
        ),
    ]);
}

#[test]
fn widened_or_response_bounds_are_not_breaking() {
    assert_not_breaking(&[
        "widened-max-length",
        "widened-minimum",
        "widened-max-items",
        "dropped-min-items",
        // Bounds on what only the server sends.
        "narrowed-response-max-length",
        "narrowed-response-max-items",
    ]);
}

#[test]
fn removed_enum_value_or_new_enum_in_request() {
    assert_reported(&[
        (
            "removed-enum-value-in-request",
            &["removed enum value shop in request CreateOrderRequest.channel"],
        ),
        (
            "new-enum-in-request",
            &["new enum in request CreateOrderRequest.note"],
        ),
    ]);
    assert_not_breaking(&["added-enum-value-in-request"]);
}

#[test]
fn added_enum_value_in_response() {
    assert_reported(&[(
        "added-enum-value-in-response",
        &["added enum value failed in response Order.status"],
    )]);
    assert_not_breaking(&["removed-enum-value-in-response"]);
}

#[test]
fn new_or_changed_pattern_in_request() {
    assert_reported(&[
        ("changed-pattern", &["changed pattern in request BookId"]),
        (
            "new-pattern",
            &["changed pattern in request CreateOrderRequest.note"],
        ),
    ]);
    // Dropping a pattern accepts more.
    assert_not_breaking(&["dropped-pattern"]);
}

#[test]
fn changed_type_or_format() {
    assert_reported(&[
        (
            "changed-type-in-request",
            &["changed type in request CreateOrderRequest.quantity"],
        ),
        (
            "changed-format-in-request",
            &["changed format in request path parameter id of GET /orders/{id}"],
        ),
        (
            "changed-type-and-format-in-response",
            &[
                "changed format in response Order.id",
                "changed type in response Order.id",
            ],
        ),
    ]);
}

#[test]
fn inline_schema_instead_of_ref_is_compared_by_content() {
    assert_not_breaking(&["inline-schema-instead-of-ref"]);
}

#[test]
fn request_body_made_required() {
    assert_eq!(
        ids_between("request-body-optional", "base"),
        ["t.yaml: now required request body of POST /orders"]
    );
    assert_not_breaking(&["request-body-optional"]);
}

#[test]
fn bodies_are_compared_by_media_type() {
    // A body where there was none, and a second media type beside the first: each schema is
    // compared with the one of its media type, and one without a counterpart is new.
    assert_not_breaking(&["response-gains-body", "new-media-type"]);
    assert!(breaking_between("response-gains-body", "base").is_empty());
}

/// `referenced-base.yaml` takes a parameter, a request body and a response from `components`:
/// what changes in them is reported under the operations that use them.
#[test]
fn referenced_parameters_and_bodies() {
    let cases: &[(&str, &[&str])] = &[
        (
            "referenced-narrowed-parameter",
            &["narrowed maximum in request query parameter limit of GET /orders"],
        ),
        (
            "referenced-now-required-parameter",
            &["now required query parameter limit of GET /orders"],
        ),
        (
            "referenced-new-required-request-field",
            &["new required request field POST /orders body.note"],
        ),
        (
            "referenced-removed-response-field",
            &["removed response field POST /orders 201 body.reason"],
        ),
    ];
    for &(name, expected) in cases {
        let expected: Vec<String> = expected.iter().map(|id| format!("t.yaml: {id}")).collect();
        assert_eq!(
            ids_between("referenced-base", name),
            expected,
            "fixture {name}"
        );
    }
}

#[test]
fn a_body_moved_to_components_is_compared_by_content() {
    assert_not_breaking(&["request-body-from-components"]);
    assert!(breaking_between("request-body-from-components", "base").is_empty());
}

/// `composed-base.yaml` combines schemas with `allOf` (a request) and `anyOf` (a response) of
/// a shared member and an inline one. A breaking edit of a member is reported.
#[test]
fn breaking_changes_inside_composed_schemas() {
    assert!(breaking_between("composed-base", "composed-base").is_empty());
    for name in [
        "composed-narrowed-in-member",
        "composed-added-enum-value-in-member",
        "composed-new-required-field-in-member",
    ] {
        assert!(
            !breaking_between("composed-base", name).is_empty(),
            "fixture {name}"
        );
    }
}

#[test]
fn an_operation_that_needs_a_token_or_a_new_scope() {
    assert_reported(&[
        (
            "new-security-requirement",
            &["new security requirement of GET /orders/{id}"],
        ),
        // Every operation inherits the top-level requirement but the one that overrides it
        // with an empty one, which lets requests without a token through.
        (
            "new-top-level-security",
            &[
                "new security requirement of GET /orders",
                "new security requirement of POST /orders",
            ],
        ),
    ]);
    assert_eq!(
        ids_between("new-security-requirement", "new-required-scope"),
        ["t.yaml: new required scope orders:audit of GET /orders/{id}"]
    );
    let why = &breaking("new-security-requirement")[0].why;
    assert_eq!(
        why,
        "existing clients send no token (it needs one with orders:read): their requests are refused"
    );
}

#[test]
fn a_removed_security_requirement_or_scope_is_not_breaking() {
    assert_eq!(
        ids_between("new-required-scope", "new-security-requirement"),
        Vec::<String>::new()
    );
    assert_eq!(
        ids_between("new-security-requirement", "base"),
        Vec::<String>::new()
    );
}

#[test]
fn acknowledged_changes_pass() {
    let mut changes = breaking("removed-operation");
    changes.extend(breaking("removed-response-field"));
    changes.extend(breaking("narrowed-max-length"));
    let changelog = r"# Changelog

## 0.2.0

- t.yaml: removed operation GET /orders/{id}
  Read orders from the list instead.
* `t.yaml: narrowed maxLength in request BookId`
- t.yaml: removed response field Order.reasonCode
";
    assert_eq!(
        unacknowledged(&changes, changelog),
        ["t.yaml: removed response field Order.reason"]
    );
}

/// The whole check on a repository of its own: the baseline is the committed spec, a breaking
/// change in the working tree fails until the changelog acknowledges it.
#[test]
fn check_fails_until_the_changelog_acknowledges() {
    let root = std::env::temp_dir().join(format!("xtask-breaking-{}", std::process::id()));
    let _ = fs::remove_dir_all(&root);
    fs::create_dir_all(root.join("openapi")).unwrap();
    let run = |args: &[&str]| {
        let out = git(&root, args).unwrap();
        assert!(out.status.success(), "git {args:?}: {out:?}");
    };
    let write = |path: &str, fixture_name: &str| {
        let text = fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/breaking")
                .join(format!("{fixture_name}.yaml")),
        )
        .unwrap();
        fs::write(root.join(path), text).unwrap();
    };
    run(&["init", "--quiet"]);
    for spec in SPECS {
        write(spec, "base");
    }
    run(&["add", "."]);
    run(&[
        "-c",
        "user.name=test",
        "-c",
        "user.email=test@localhost",
        "commit",
        "--quiet",
        "-m",
        "base",
    ]);
    write("openapi/order-processor.yaml", "removed-operation");

    let id = "order-processor.yaml: removed operation GET /orders/{id}";
    let failure = check(&root).unwrap_err();
    assert!(failure.contains(&format!("\n- {id}")), "{failure}");

    fs::write(root.join(CHANGELOG), format!("## 0.2.0\n\n- {id}\n")).unwrap();
    let result = check(&root);
    fs::remove_dir_all(&root).unwrap();
    assert_eq!(result, Ok(()));
}

//! Each construct the generator refuses, in a fixture of its own under
//! `tests/fixtures/refused/`, with the exact message it gets; and a spec with several
//! problems, all reported at once.

use std::{collections::BTreeSet, fs};

use order_processor_codegen::generate;

/// (fixture, pointer and message of each problem)
const REFUSED: &[(&str, &[&str])] = &[
    (
        "additional-properties",
        &[
            "#/components/schemas/Thing: additionalProperties, minProperties and maxProperties are not supported",
        ],
    ),
    (
        "answer-example",
        &[
            "#/paths/~1things~1{id}/get/responses/400/content/application~1json: an answer names its examples under `examples`",
        ],
    ),
    (
        "answer-example-external",
        &[
            "#/paths/~1things~1{id}/get/responses/400/content/application~1json/examples/elsewhere: externalValue is not supported; give the value",
        ],
    ),
    (
        "answer-example-unknown",
        &[
            "#/paths/~1things~1{id}/get/responses/400/content/application~1json/examples/missing: #/components/examples/missing is not an example under #/components/examples",
        ],
    ),
    (
        "answer-example-without-value",
        &[
            "#/paths/~1things~1{id}/get/responses/400/content/application~1json/examples/empty: an example needs a value",
        ],
    ),
    (
        "array-item-constraints",
        &[
            "#/components/schemas/Thing/properties/weight/items: constraints on array items are not supported",
        ],
    ),
    (
        "array-without-items",
        &["#/components/schemas/Thing/properties/weight: an array needs `items`"],
    ),
    (
        "boolean-enum",
        &["#/components/schemas/Thing/properties/weight: enum on booleans is not supported"],
    ),
    (
        "content-example",
        &[
            "#/paths/~1things~1{id}/put/requestBody/content/application~1json: examples belong on the component schema",
        ],
    ),
    (
        "content-inline-schema",
        &[
            "#/paths/~1things~1{id}/put/requestBody/content/application~1json: content must reference a component object schema",
        ],
    ),
    (
        "content-not-json",
        &[
            "#/paths/~1things~1{id}/put/requestBody/content/text~1plain: only application/json content is supported",
        ],
    ),
    (
        "content-without-schema",
        &[
            "#/paths/~1things~1{id}/put/requestBody/content/application~1json: content needs a schema",
        ],
    ),
    (
        "cookie-parameter",
        &["#/paths/~1things~1{id}/get/parameters/1: cookie parameters are not supported"],
    ),
    (
        "default-response",
        &[
            "#/paths/~1things~1{id}/get/responses/default: default responses are not supported; list each status",
        ],
    ),
    (
        "duplicate-operation-id",
        &["#/paths/~1things~1{id}/delete: operationId getThing is not unique"],
    ),
    (
        "enum-example",
        &["#/components/schemas/Colour: `example` is not supported here"],
    ),
    (
        "header-constraints",
        &[
            "#/paths/~1things~1{id}/get/responses/200/headers/ETag: poem-openapi cannot declare constraints on response headers",
        ],
    ),
    (
        "header-content",
        &[
            "#/paths/~1things~1{id}/get/responses/200/headers/ETag: headers with `content` are not supported",
        ],
    ),
    (
        "header-example",
        &[
            "#/paths/~1things~1{id}/get/responses/200/headers/ETag: deprecated and example on headers are not supported",
        ],
    ),
    (
        "header-reference",
        &[
            "#/paths/~1things~1{id}/get/responses/200/headers/ETag: header references are not supported",
        ],
    ),
    (
        "inline-enum",
        &[
            "#/components/schemas/Thing/properties/weight: an enum must be a component schema, to get a name",
        ],
    ),
    (
        "inline-object",
        &[
            "#/components/schemas/Thing/properties/weight: an inline object is not supported; make it a component schema",
        ],
    ),
    (
        "integer-enum",
        &[
            "#/components/schemas/Thing/properties/weight: enum and multipleOf on integers are not supported",
        ],
    ),
    (
        "integer-format",
        &[
            "#/components/schemas/Thing/properties/weight: an integer needs `format: int32` or `format: int64`",
        ],
    ),
    (
        "internal-error-without-body",
        &[
            "#/paths/~1things~1{id}/get/responses/500: a 500 response answers unexpected errors: it needs a body and no headers",
        ],
    ),
    (
        "invalid-pattern",
        &[
            "#/components/schemas/Thing/properties/weight: pattern \"[a-\": regex parse error: [a- ^ error: unclosed character class",
        ],
    ),
    (
        "missing-reference",
        &[
            "#/components/schemas/Thing/properties/weight: #/components/schemas/Weight does not exist",
        ],
    ),
    (
        "no-bad-request",
        &[
            "#/paths/~1things~1{id}/get/responses: an operation with parameters or a body needs a 400 response with a body and no headers",
        ],
    ),
    (
        "no-operation-id",
        &["#/paths/~1things~1{id}/get: every operation needs an operationId"],
    ),
    (
        "no-summary",
        &["#/paths/~1things~1{id}/get: every operation needs a summary"],
    ),
    ("no-tags", &["#/tags: the spec must declare its tags"]),
    (
        "not-openapi",
        &["#: not an OpenAPI 3.0 document: info: missing field `version` at line 4 column 3"],
    ),
    (
        "null-in-enum",
        &["#/components/schemas/Colour: `null` in an enum is not supported"],
    ),
    (
        "nullable",
        &["#/components/schemas/Thing/properties/name: `nullable` is not supported here"],
    ),
    (
        "number",
        &[
            "#/components/schemas/Thing/properties/weight: `type: number` is not supported: binary fractions are not exact; use integers of minor units",
        ],
    ),
    (
        "one-of",
        &[
            "#/components/schemas/Thing/properties/weight: oneOf, allOf, anyOf, not and untyped schemas are not supported",
        ],
    ),
    (
        "operation-deprecated",
        &[
            "#/paths/~1things~1{id}/get: callbacks, servers and deprecated on operations are not supported",
        ],
    ),
    (
        "operation-extension",
        &[
            "#/paths/~1things~1{id}/get/x-required-scope: extension x-required-scope is not supported on operations; the only one is x-required-scopes",
        ],
    ),
    (
        "parameter-content",
        &["#/paths/~1things~1{id}/get/parameters/0: parameters with `content` are not supported"],
    ),
    (
        "parameter-explode",
        &[
            "#/paths/~1things~1{id}/get/parameters/0: deprecated, explode and examples on parameters are not supported",
        ],
    ),
    (
        "parameter-reference",
        &["#/paths/~1things~1{id}/get/parameters/0: parameter references are not supported"],
    ),
    (
        "parameter-style",
        &[
            "#/paths/~1things~1{id}/get/parameters/1: only the default style of each parameter location is supported",
        ],
    ),
    (
        "path-level-parameters",
        &[
            "#/paths/~1things~1{id}: path-level parameters are not supported; declare them on each operation",
        ],
    ),
    (
        "path-reference",
        &["#/paths/~1others: path references are not supported"],
    ),
    (
        "reference-outside-components",
        &[
            "#/components/schemas/Thing/properties/weight: reference #/definitions/Weight is not to #/components/schemas",
        ],
    ),
    (
        "reference-to-reference",
        &[
            "#/components/schemas/Thing/properties/alias: Alias is a reference to a reference",
            "#/components/schemas/Alias: a component schema must not be a reference",
        ],
    ),
    (
        "request-body-optional",
        &[
            "#/paths/~1things~1{id}/put/requestBody: a request body must be required and carry no description",
        ],
    ),
    (
        "request-body-reference",
        &["#/paths/~1things~1{id}/put/requestBody: request body references are not supported"],
    ),
    (
        "request-body-without-content",
        &["#/paths/~1things~1{id}/put/requestBody: a request body needs application/json content"],
    ),
    (
        "required-undefined",
        &["#/components/schemas/Thing: required property colour is not defined"],
    ),
    (
        "response-reference",
        &["#/paths/~1things~1{id}/get/responses/404: response references are not supported"],
    ),
    (
        "security-alternatives",
        &[
            "#/paths/~1things~1{id}/get/security: alternative security requirements are not supported; give exactly one",
        ],
    ),
    (
        "security-anonymous",
        &[
            "#/paths/~1things~1{id}/get/security/0: a security requirement must name exactly one scheme",
        ],
    ),
    (
        "security-api-key",
        &[
            "#/components/securitySchemes/bearer: type apiKey is not supported; only `type: http` with `scheme: bearer` is",
        ],
    ),
    (
        "security-empty",
        &[
            "#/paths/~1things~1{id}/get/security: an empty `security` is not supported; leave it out for an open operation",
        ],
    ),
    (
        "security-http-basic",
        &[
            "#/components/securitySchemes/bearer: http scheme basic is not supported; only `type: http` with `scheme: bearer` is",
        ],
    ),
    (
        "security-oauth2",
        &[
            "#/components/securitySchemes/bearer: type oauth2 is not supported; only `type: http` with `scheme: bearer` is",
        ],
    ),
    (
        "security-openid-connect",
        &[
            "#/components/securitySchemes/bearer: type openIdConnect is not supported; only `type: http` with `scheme: bearer` is",
        ],
    ),
    (
        "security-scheme-reference",
        &["#/components/securitySchemes/bearer: security scheme references are not supported"],
    ),
    (
        "security-scope-duplicate",
        &["#/paths/~1things~1{id}/get/x-required-scopes/1: scope things:read is listed twice"],
    ),
    (
        "security-scope-name",
        &[
            "#/paths/~1things~1{id}/get/x-required-scopes/0: a scope name must be non-empty and without whitespace",
            "#/paths/~1things~1{id}/get/x-required-scopes/1: a scope name must be non-empty and without whitespace",
            "#/paths/~1things~1{id}/get/x-required-scopes/2: a scope name must be a string",
        ],
    ),
    (
        "security-scopes-empty",
        &[
            "#/paths/~1things~1{id}/get/x-required-scopes: x-required-scopes must be an array of at least one scope name; leave it out when a valid token is enough",
        ],
    ),
    (
        "security-scopes-in-requirement",
        &[
            "#/paths/~1things~1{id}/get/security/0/bearer: OpenAPI 3.0 requires the scope array of an http scheme's requirement to be empty; list the scopes in x-required-scopes",
        ],
    ),
    (
        "security-scopes-not-array",
        &[
            "#/paths/~1things~1{id}/get/x-required-scopes: x-required-scopes must be an array of at least one scope name; leave it out when a valid token is enough",
        ],
    ),
    (
        "security-scopes-without-security",
        &[
            "#/paths/~1things~1{id}/get/x-required-scopes: x-required-scopes needs a `security` requirement on the operation",
        ],
    ),
    (
        "security-several-schemes",
        &[
            "#/paths/~1things~1{id}/get/security/0: a security requirement must name exactly one scheme",
        ],
    ),
    (
        "security-top-level",
        &[
            "#/security: a top-level `security` is not supported; declare `security` on each operation that needs a token",
        ],
    ),
    (
        "security-two-schemes",
        &[
            "#/components/securitySchemes/partner: only one security scheme is supported: the server checks one kind of token",
        ],
    ),
    (
        "security-undeclared-scheme",
        &[
            "#/paths/~1things~1{id}/get/security/0/key: security scheme key is not declared in #/components/securitySchemes",
        ],
    ),
    (
        "status-range",
        &["#/paths/~1things~1{id}/get/responses: status ranges are not supported"],
    ),
    (
        "string-format",
        &[
            "#/components/schemas/Thing/properties/weight: string format Item(Byte) is not supported",
        ],
    ),
    (
        "summary-paragraphs",
        &["#/paths/~1things~1{id}/get: a summary must be one paragraph"],
    ),
    (
        "undeclared-tag",
        &["#/paths/~1things~1{id}/get: tag gadgets is not declared in #/tags"],
    ),
    (
        "unknown-status",
        &["#/paths/~1things~1{id}/get/responses/418: status 418 is not supported"],
    ),
    (
        "unavailable-with-other-header",
        &[
            "#/paths/~1things~1{id}/get/responses/503: a 503 response answers unexpected errors: it needs a body and no header but Retry-After",
        ],
    ),
    (
        "unused-example",
        &["#/components/examples/unused: no answer names this example"],
    ),
    ("version-3-1", &["#/openapi: version 3.1.0 is not 3.0.x"]),
];

/// What the build prints for `spec`: one line per problem.
fn report(spec: &str) -> String {
    match generate(spec) {
        Ok(_) => format!("{spec}: generated"),
        Err(errors) => errors.to_string(),
    }
}

fn expected(spec: &str, problems: &[&str]) -> String {
    let lines: Vec<String> = problems
        .iter()
        .map(|problem| format!("{spec}: {problem}"))
        .collect();
    lines.join("\n")
}

#[test]
fn each_refused_construct_is_reported_with_its_pointer() {
    for (fixture, problems) in REFUSED {
        let spec = format!("tests/fixtures/refused/{fixture}.yaml");
        assert_eq!(report(&spec), expected(&spec, problems), "{fixture}");
    }
}

#[test]
fn every_refused_fixture_is_checked() {
    let files: BTreeSet<String> = fs::read_dir("tests/fixtures/refused")
        .expect("the fixtures are readable")
        .map(|entry| entry.expect("the fixtures are readable").file_name())
        .map(|name| name.to_string_lossy().trim_end_matches(".yaml").to_owned())
        .collect();
    let checked: BTreeSet<String> = REFUSED
        .iter()
        .map(|(fixture, _)| (*fixture).to_owned())
        .collect();
    assert_eq!(files, checked);
}

#[test]
fn every_problem_of_a_spec_is_reported_at_once() {
    let spec = "tests/fixtures/several-problems.yaml";
    let problems = [
        "#/components/schemas/Thing/properties/name: `nullable` is not supported here",
        "#/components/schemas/Thing/properties/name: `title` is not supported here",
        "#/components/schemas/Thing/properties/weight: `type: number` is not supported: binary fractions are not exact; use integers of minor units",
        "#/paths/~1things~1{id}/get: every operation needs a summary",
        "#/paths/~1things~1{id}/get/responses/418: status 418 is not supported",
        "#/paths/~1things~1{id}/get: tag gadgets is not declared in #/tags",
    ];
    assert_eq!(report(spec), expected(spec, &problems));
}

#[test]
fn a_spec_that_cannot_be_read_is_reported() {
    let spec = "tests/fixtures/absent.yaml";
    let report = report(spec);
    assert!(
        report.starts_with(&format!("{spec}: #: cannot read: ")),
        "{report}"
    );
}

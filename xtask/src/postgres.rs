//! The PostgreSQL server binaries that the test suite starts its servers with (`initdb` and
//! `pg_ctl`, see `tests/support/postgres.rs`): found on the `PATH` or under Debian's
//! `/usr/lib/postgresql/<version>/bin`, or installed with apt when missing.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use crate::step;

/// Debian's own switch for not creating (and starting) a `main` cluster when the package is
/// installed: the tests start their own servers, and nothing should be left running.
const CREATECLUSTER_CONF: &str = "/etc/postgresql-common/createcluster.conf";

pub fn ensure_server_binaries() -> Result<(), String> {
    if let Some(dir) = server_bin_dir() {
        println!("==> PostgreSQL server binaries: {}", dir.display());
        return Ok(());
    }
    if !Path::new(CREATECLUSTER_CONF).exists() {
        let parent = Path::new(CREATECLUSTER_CONF)
            .parent()
            .expect("an absolute path has a parent");
        fs::create_dir_all(parent)
            .and_then(|()| fs::write(CREATECLUSTER_CONF, "create_main_cluster = false\n"))
            .map_err(|err| format!("cannot write {CREATECLUSTER_CONF}: {err}"))?;
    }
    step::run(
        "apt-get update",
        Command::new("apt-get").args(["update", "-qq"]),
    )?;
    step::run(
        "install Debian's postgresql",
        Command::new("apt-get")
            .args([
                "install",
                "-y",
                "-qq",
                "--no-install-recommends",
                "-o",
                "Dpkg::Options::=--force-confold",
                "postgresql",
            ])
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
    .map_err(|err| format!("{err}: install Debian's `postgresql` package"))?;
    server_bin_dir()
        .map(drop)
        .ok_or_else(|| "postgresql is installed but initdb and pg_ctl are not found".to_owned())
}

/// The first directory with both `initdb` and `pg_ctl`, looked for where the tests look.
fn server_bin_dir() -> Option<PathBuf> {
    let has_both = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    let on_path = std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).find(|dir| has_both(dir)));
    on_path.or_else(|| {
        fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .flatten()
            .map(|entry| entry.path().join("bin"))
            .find(|dir| has_both(dir))
    })
}

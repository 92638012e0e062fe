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
    step::apt_install(
        "postgresql",
        &[
            "--no-install-recommends",
            "-o",
            "Dpkg::Options::=--force-confold",
        ],
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

/// A PostgreSQL server the bench starts in `dir`, on a free loopback port; stopped when
/// dropped. `initdb` refuses root, so as root it runs as `nobody`, in a directory it owns.
pub struct Server {
    bin: PathBuf,
    data: PathBuf,
    as_nobody: bool,
    pub port: u16,
}

impl Server {
    pub fn start(dir: &Path) -> Result<Self, String> {
        let bin = server_bin_dir().ok_or("initdb and pg_ctl are not found")?;
        let as_nobody = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|output| String::from_utf8_lossy(&output.stdout).trim() == "0");
        let _ = fs::remove_dir_all(dir);
        fs::create_dir_all(dir).map_err(|err| format!("cannot create {}: {err}", dir.display()))?;
        if as_nobody {
            step::run(
                "the PostgreSQL directory belongs to nobody",
                Command::new("chown").args(["-R", "nobody"]).arg(dir),
            )?;
        }
        let server = Self {
            data: dir.join("data"),
            port: crate::services::free_port()?,
            bin,
            as_nobody,
        };
        let data = server.data.display().to_string();
        server.run(
            "initdb",
            &[
                "-D",
                &data,
                "-U",
                "postgres",
                "--auth=trust",
                "--no-locale",
                "-E",
                "UTF8",
            ],
        )?;
        // Durability as the SQLite store has it (WAL, synchronous NORMAL): a crash loses no
        // committed data, a power cut may lose the last commits.
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c synchronous_commit=off",
            server.port,
            dir.display()
        );
        let log = dir.join("postgres.log").display().to_string();
        server.run(
            "pg_ctl",
            &["-D", &data, "-l", &log, "-w", "-o", &options, "start"],
        )?;
        Ok(server)
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn run(&self, program: &str, args: &[&str]) -> Result<(), String> {
        let program = self.bin.join(program);
        let mut command = if self.as_nobody {
            let mut command = Command::new("runuser");
            command.args(["-u", "nobody", "--"]).arg(&program);
            command
        } else {
            Command::new(&program)
        };
        let output = command
            .args(args)
            .output()
            .map_err(|err| format!("cannot run {}: {err}", program.display()))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{} failed: {}{}",
                program.display(),
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ))
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let data = self.data.display().to_string();
        let _ = self.run("pg_ctl", &["-D", &data, "-m", "fast", "-w", "stop"]);
    }
}

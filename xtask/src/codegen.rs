//! `cargo xtask codegen --print <spec>`: shows the server and client code that `build.rs`
//! generates from a spec, as the build writes it to `OUT_DIR`.

use std::{
    fs,
    path::{Path, PathBuf},
    time::SystemTime,
};

use crate::{services::target_dir, step};

pub fn print(root: &Path, spec: &str) -> Result<(), String> {
    // `openapi/order-processor.yaml`, `order-processor.yaml` and `order-processor` all name
    // the module `order_processor`.
    let stem = Path::new(spec)
        .file_stem()
        .and_then(|stem| stem.to_str())
        .ok_or_else(|| format!("{spec} does not name a spec"))?;
    if !root.join("openapi").join(format!("{stem}.yaml")).exists() {
        return Err(format!("openapi/{stem}.yaml does not exist"));
    }
    let module = stem.replace('-', "_");
    step::cargo(
        root,
        "build the generated code",
        &["build", "--quiet", "-p", "order-processor", "--lib"],
    )?;
    let out_dir = newest_out_dir(root, &module)?;
    for kind in ["server", "client"] {
        let file = out_dir.join(format!("{module}_{kind}.rs"));
        let code = fs::read_to_string(&file)
            .map_err(|err| format!("cannot read {}: {err}", file.display()))?;
        println!("// ===== {} =====\n{code}", file.display());
    }
    Ok(())
}

/// The `OUT_DIR` of the most recent build of the root crate's build script: earlier builds
/// with other settings leave their own directories behind.
fn newest_out_dir(root: &Path, module: &str) -> Result<PathBuf, String> {
    let build = target_dir(root).join("debug").join("build");
    let entries =
        fs::read_dir(&build).map_err(|err| format!("cannot read {}: {err}", build.display()))?;
    entries
        .filter_map(Result::ok)
        .filter(|entry| {
            entry
                .file_name()
                .to_string_lossy()
                .starts_with("order-processor-")
        })
        .map(|entry| entry.path().join("out"))
        .filter_map(|out| {
            let modified = fs::metadata(out.join(format!("{module}_server.rs")))
                .and_then(|m| m.modified())
                .ok()?;
            Some((modified, out))
        })
        .max_by_key(|(modified, _): &(SystemTime, PathBuf)| *modified)
        .map(|(_, out)| out)
        .ok_or_else(|| format!("no generated code for {module} under {}", build.display()))
}

//! `cargo xtask codegen --print <spec>`: shows the server code, and the client where the
//! service uses one, that `build.rs` generates from a spec, by calling the generator itself.

use std::path::Path;

use order_processor_codegen::{find_spec, generate};

pub fn print(root: &Path, spec: &str) -> Result<(), String> {
    // `openapi/order-processor.yaml`, `order-processor.yaml` and `order-processor` all name
    // the same spec.
    let spec =
        find_spec(spec).ok_or_else(|| format!("{spec} is not one of the project's specs"))?;
    let generated = generate(root.join(spec.path)).map_err(|errors| errors.to_string())?;
    println!(
        "// ===== {}_server.rs =====\n{}",
        spec.module,
        generated.server()
    );
    if spec.client {
        let client = generated.client().map_err(|errors| errors.to_string())?;
        println!("// ===== {}_client.rs =====\n{client}", spec.module);
    }
    Ok(())
}

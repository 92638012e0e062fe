//! Writes, for each spec of the project, its poem-openapi server interface to
//! `OUT_DIR/<module>_server.rs` and, where the service calls it, its progenitor client to
//! `OUT_DIR/<module>_client.rs` (see the `order-processor-codegen` crate). Cargo rebuilds and
//! reruns this script when the generator, a path dependency, changes.

use std::{fs, path::Path, process};

use order_processor_codegen::SPECS;

fn main() {
    let out_dir = std::env::var("OUT_DIR").expect("cargo sets OUT_DIR for build scripts");
    let out_dir = Path::new(&out_dir);
    for spec in SPECS {
        println!("cargo:rerun-if-changed={}", spec.path);
        let generated =
            order_processor_codegen::generate(spec.path).unwrap_or_else(|errors| fail(&errors));
        write(
            &out_dir.join(format!("{}_server.rs", spec.module)),
            &generated.server(),
        );
        if spec.client {
            let client = generated.client().unwrap_or_else(|errors| fail(&errors));
            write(&out_dir.join(format!("{}_client.rs", spec.module)), &client);
        }
    }
}

fn fail(errors: &order_processor_codegen::Errors) -> ! {
    for line in errors.to_string().lines() {
        eprintln!("error: {line}");
    }
    process::exit(1);
}

fn write(path: &Path, code: &str) {
    fs::write(path, code).unwrap_or_else(|err| panic!("cannot write {}: {err}", path.display()));
}

//! Compiles `jobs/v1/jobs.proto` and `jobs/v1/data.proto` with protox (pure
//! Rust), so building needs no system `protoc`, and embeds the encoded
//! descriptor set for server reflection.

use std::{env, fs, path::PathBuf};

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=jobs");

    let mut compiler = protox::Compiler::new(["."])?;
    // Imports (the well-known types) go into the set so reflection clients can
    // resolve them; source info carries the doc comments to `grpcurl describe`.
    compiler.include_imports(true).include_source_info(true);
    compiler.open_files(["jobs/v1/jobs.proto", "jobs/v1/data.proto"])?;
    let descriptors = compiler.file_descriptor_set();

    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(
        out_dir.join("jobs_descriptor.bin"),
        descriptors.encode_to_vec(),
    )?;

    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;
    Ok(())
}

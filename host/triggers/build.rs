//! Compile the Open Inference Protocol's gRPC service from
//! `proto/inference.proto` with protox (pure Rust, no protoc needed).

fn main() {
    // Without the `grpc` feature there is no service to generate.
    #[cfg(feature = "grpc")]
    generate();
}

#[cfg(feature = "grpc")]
fn generate() {
    let proto = "proto/inference.proto";
    println!("cargo:rerun-if-changed={proto}");
    let descriptors = protox::compile([proto], ["proto"]).unwrap_or_else(|e| panic!("{proto}: {e}"));
    tonic_prost_build::configure()
        .build_client(false)
        .compile_fds(descriptors)
        .unwrap_or_else(|e| panic!("generating the gRPC service from {proto}: {e}"));
}

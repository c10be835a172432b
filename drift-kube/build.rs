//! With the `sandbox` feature: compiles Kubernetes' protobuf definitions (`proto/`, copied from
//! kubernetes/api and kubernetes/apimachinery v0.33.9) into a descriptor set, so the sandbox can read
//! the protobuf request bodies kubectl sends for built-in types.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=proto");
    #[cfg(feature = "sandbox")]
    sandbox::descriptors();
}

#[cfg(feature = "sandbox")]
mod sandbox {
    use std::path::PathBuf;

    const FILES: &[&str] = &[
        "k8s.io/api/core/v1/generated.proto",
        "k8s.io/api/apps/v1/generated.proto",
        "k8s.io/api/batch/v1/generated.proto",
        "k8s.io/api/rbac/v1/generated.proto",
        "k8s.io/api/autoscaling/v1/generated.proto",
        "k8s.io/api/autoscaling/v2/generated.proto",
        "k8s.io/api/networking/v1/generated.proto",
        "k8s.io/api/policy/v1/generated.proto",
        "k8s.io/api/coordination/v1/generated.proto",
        "k8s.io/api/storage/v1/generated.proto",
        "k8s.io/api/scheduling/v1/generated.proto",
        "k8s.io/api/admissionregistration/v1/generated.proto",
        "k8s.io/api/events/v1/generated.proto",
    ];

    pub(super) fn descriptors() {
        let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
        let mut compiler = protox::Compiler::new(["proto"]).expect("the proto directory");
        compiler.include_imports(true);
        compiler
            .open_files(FILES)
            .expect("Kubernetes' .proto files compile");
        let bytes = compiler.encode_file_descriptor_set();
        std::fs::write(out.join("k8s-descriptors.bin"), bytes).expect("writing the descriptor set");
    }
}

//! With the `capi` feature: generates the C header from `src/ffi` into `$OUT_DIR/coapio.h`
//! (cbindgen, settings in `ffi/cbindgen.toml`), with version macros from Cargo.toml. The
//! committed `include/coapio.h` is checked against it by `tests/capi_header.rs`.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    #[cfg(feature = "capi")]
    capi::generate();
}

#[cfg(feature = "capi")]
mod capi {
    use std::path::PathBuf;

    pub(super) fn generate() {
        println!("cargo:rerun-if-changed=src/ffi");
        println!("cargo:rerun-if-changed=ffi/cbindgen.toml");
        let dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("manifest dir"));
        let out = PathBuf::from(std::env::var("OUT_DIR").expect("out dir")).join("coapio.h");
        let mut config =
            cbindgen::Config::from_file(dir.join("ffi/cbindgen.toml")).expect("ffi/cbindgen.toml");
        let v = |k: &str| std::env::var(k).expect(k).parse::<u32>().expect("a number");
        let (major, minor, patch) = (
            v("CARGO_PKG_VERSION_MAJOR"),
            v("CARGO_PKG_VERSION_MINOR"),
            v("CARGO_PKG_VERSION_PATCH"),
        );
        config.after_includes = Some(format!(
            "\n#define COAPIO_VERSION_MAJOR {major}\n#define COAPIO_VERSION_MINOR {minor}\n\
             #define COAPIO_VERSION_PATCH {patch}\n#define COAPIO_VERSION_NUMBER {}\n",
            major * 10000 + minor * 100 + patch
        ));
        // Only the files of the C ABI, so that nothing of the Rust API leaks into the header;
        // not src/ffi/mod.rs, whose `mod` lines would make cbindgen read the others twice.
        let mut builder = cbindgen::Builder::new().with_config(config);
        for file in [
            "base.rs",
            "names.rs",
            "config.rs",
            "context.rs",
            "client.rs",
            "oscore.rs",
            "server.rs",
        ] {
            builder = builder.with_src(dir.join("src/ffi").join(file));
        }
        builder
            .generate()
            .expect("cbindgen could not generate the header")
            .write_to_file(&out);
        println!("cargo:rustc-env=COAPIO_GENERATED_HEADER={}", out.display());
    }
}

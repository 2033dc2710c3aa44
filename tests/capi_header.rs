//! The committed `include/coapio.h` is exactly what cbindgen generates from `src/ffi`, and
//! its version macros match Cargo.toml and `coapio_version_number()`.
#![cfg(feature = "capi")]

#[test]
fn committed_header_is_up_to_date() {
    let generated =
        std::fs::read_to_string(env!("COAPIO_GENERATED_HEADER")).expect("generated header");
    let committed =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/include/coapio.h"))
            .expect("include/coapio.h");
    assert!(
        generated == committed,
        "include/coapio.h is stale: refresh it with `make -C examples-c header` \
         (or copy {} over it) and commit it",
        env!("COAPIO_GENERATED_HEADER")
    );
}

#[test]
fn version_macros_match_the_package() {
    let header =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/include/coapio.h")).unwrap();
    let define = |name: &str| -> u32 {
        let line = header
            .lines()
            .find(|l| l.starts_with(&format!("#define {name} ")))
            .unwrap_or_else(|| panic!("{name} missing"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    let (major, minor, patch) = (
        define("COAPIO_VERSION_MAJOR"),
        define("COAPIO_VERSION_MINOR"),
        define("COAPIO_VERSION_PATCH"),
    );
    let pkg = |s: &str| s.parse::<u32>().unwrap();
    assert_eq!(major, pkg(env!("CARGO_PKG_VERSION_MAJOR")));
    assert_eq!(minor, pkg(env!("CARGO_PKG_VERSION_MINOR")));
    assert_eq!(patch, pkg(env!("CARGO_PKG_VERSION_PATCH")));
    assert_eq!(
        define("COAPIO_VERSION_NUMBER"),
        major * 10000 + minor * 100 + patch
    );
    assert_eq!(
        coapio::ffi::coapio_version_number(),
        define("COAPIO_VERSION_NUMBER")
    );
    let v = unsafe { std::ffi::CStr::from_ptr(coapio::ffi::coapio_version()) };
    assert_eq!(v.to_str().unwrap(), env!("CARGO_PKG_VERSION"));
}

//! The C library installs as a C library: `make -C examples-c install` into a temporary
//! `DESTDIR` with a `PREFIX`, then the files, the symlinks, the SONAME (`readelf -d`), the
//! stripped static library, and `pkg-config` (`--cflags --libs` and `--static`) are checked,
//! and a small C program is compiled from the installed header with pkg-config's flags and
//! run twice against one of our servers on loopback: linked to the shared library (found
//! through its SONAME symlink), and linked to the static one with `pkg-config --static`'s
//! system libraries.
//!
//! The library is the one `tests/capi_examples.rs` builds (`<target>/capi`, the Makefile's
//! default features), so this costs a build only when that one has not run.
//!
//! make, cc, pkg-config or readelf missing makes the test say what it skipped and pass, unless
//! `COAPIO_REQUIRE_PEERS=1`, as CI sets it, turns the skip into a failure.
#![cfg(feature = "capi")]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples-c");

/// The program: the header's version against the library's, then a GET of its argument.
const PROGRAM: &str = r#"#include <stdio.h>
#include "coapio.h"

int main(int argc, char **argv) {
    if (coapio_version_number() != COAPIO_VERSION_NUMBER) {
        fprintf(stderr, "header %d, library %u\n", COAPIO_VERSION_NUMBER, coapio_version_number());
        return 1;
    }
    printf("coapio %s\n", coapio_version());
    coapio_context *ctx = NULL;
    coapio_request *req = NULL;
    coapio_response *resp = NULL;
    coapio_result r = coapio_context_new(NULL, &ctx);
    if (r == COAPIO_RESULT_OK) {
        r = coapio_request_new(COAPIO_METHOD_GET, argv[argc - 1], &req);
    }
    if (r == COAPIO_RESULT_OK) {
        r = coapio_request_sync(ctx, req, 5000, &resp); /* consumes req */
    }
    if (r != COAPIO_RESULT_OK) {
        fprintf(stderr, "GET %s: %s\n", argv[argc - 1], coapio_result_str(r));
        coapio_context_free(ctx);
        return 1;
    }
    uint8_t code = 0;
    const uint8_t *buf = NULL;
    size_t len = 0;
    coapio_response_code(resp, &code);
    coapio_response_payload(resp, &buf, &len);
    printf("%d.%02d %s: %.*s\n", code >> 5, code & 31, coapio_code_name(code), (int)len,
           (const char *)buf);
    coapio_response_free(resp);
    coapio_context_free(ctx);
    return 0;
}
"#;

fn in_path(name: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(name).is_file()))
}

/// Runs `cmd`, fails the test unless it exits 0, and returns its stdout.
fn run(cmd: &mut Command) -> String {
    let out: Output = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

/// `readelf -d`'s entries of one kind (`SONAME`, `NEEDED`), their values.
fn dynamic(file: &Path, kind: &str) -> Vec<String> {
    run(Command::new("readelf").arg("-d").arg(file))
        .lines()
        .filter(|l| l.contains(&format!("({kind})")))
        .filter_map(|l| Some(l.split_once('[')?.1.trim_end_matches(']').to_owned()))
        .collect()
}

fn words(s: &str) -> Vec<String> {
    s.split_whitespace().map(str::to_owned).collect()
}

#[test]
fn installs_with_soname_header_and_pkg_config_and_links_both_ways() {
    let missing: Vec<&str> = ["make", "cc", "pkg-config", "readelf"]
        .into_iter()
        .filter(|p| !in_path(p))
        .collect();
    if !missing.is_empty() {
        common::skip_or_fail(&format!(
            "skipped: installing the C library: {} not found (install with `apt-get install \
             build-essential pkg-config`)",
            missing.join(", ")
        ));
        return;
    }
    let capi = common::target_dir().join("capi");
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("capi_install");
    let _ = std::fs::remove_dir_all(&tmp);
    let (dest, prefix) = (tmp.join("dest"), "/opt/coapio");
    let root = dest.join(prefix.trim_start_matches('/'));
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    run(Command::new("make")
        .args(["-C", EXAMPLES, "install"])
        .arg(format!("DESTDIR={}", dest.display()))
        .arg(format!("PREFIX={prefix}"))
        .arg(format!("CARGO_TARGET_DIR={}", capi.display()))
        .arg(format!("CARGO={cargo}")));

    // The files: cargo-c's layout and names.
    let (major, minor, patch) = (
        env!("CARGO_PKG_VERSION_MAJOR"),
        env!("CARGO_PKG_VERSION_MINOR"),
        env!("CARGO_PKG_VERSION_PATCH"),
    );
    let real = format!("libcoapio.so.{major}.{minor}.{patch}");
    let soname = match (major, minor) {
        ("0", "0") => format!("libcoapio.so.0.0.{patch}"),
        ("0", _) => format!("libcoapio.so.0.{minor}"),
        _ => format!("libcoapio.so.{major}"),
    };
    let lib = root.join("lib");
    let meta = std::fs::symlink_metadata(lib.join(&real)).expect("the versioned library");
    assert!(meta.file_type().is_file(), "{real} is a file");
    for link in [&soname, "libcoapio.so"] {
        let to = std::fs::read_link(lib.join(link)).unwrap_or_else(|e| panic!("{link}: {e}"));
        assert_eq!(to, Path::new(&real), "{link} points to {real}");
    }
    assert_eq!(dynamic(&lib.join(&real), "SONAME"), [soname.as_str()]);
    let header = std::fs::read(root.join("include/coapio.h")).expect("the installed header");
    assert_eq!(
        header,
        std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/include/coapio.h")).unwrap()
    );
    // The static library, stripped of debug info and of the standard library's LLVM bitcode.
    let archive = lib.join("libcoapio.a");
    let built = std::fs::metadata(capi.join("release/libcoapio.a"))
        .unwrap()
        .len();
    let installed = std::fs::metadata(&archive).expect("libcoapio.a").len();
    assert!(
        installed < built,
        "{installed} bytes installed, {built} built"
    );
    let sections = run(Command::new("readelf").args(["-S", "-W"]).arg(&archive));
    for s in [".llvmbc", ".debug_info"] {
        assert!(!sections.contains(s), "{s} left in libcoapio.a");
    }
    let (installed_kb, built_kb) = (installed / 1024, built / 1024);
    println!("libcoapio.a: {built_kb} KiB built, {installed_kb} KiB installed");

    // pkg-config, as the installed file says (prefix /opt/coapio), then relocated to DESTDIR.
    let pc_dir = lib.join("pkgconfig");
    let pkg_config = |args: &[&str]| {
        words(&run(Command::new("pkg-config")
            .env("PKG_CONFIG_PATH", &pc_dir)
            .env_remove("PKG_CONFIG_SYSROOT_DIR")
            .args(args)
            .arg("coapio")))
    };
    assert_eq!(
        pkg_config(&["--cflags", "--libs"]),
        words("-I/opt/coapio/include -L/opt/coapio/lib -lcoapio")
    );
    assert_eq!(
        pkg_config(&["--modversion"]),
        [format!("{major}.{minor}.{patch}")]
    );
    let native = std::fs::read_to_string(capi.join("release/native-static-libs"))
        .expect("the Makefile keeps rustc's native-static-libs");
    let mut expected = words("-L/opt/coapio/lib -lcoapio");
    expected.extend(words(&native));
    let static_libs = pkg_config(&["--static", "--libs"]);
    assert_eq!(static_libs, expected, "Libs.private is rustc's list");
    for l in ["-lssl", "-lcrypto"] {
        assert!(static_libs.iter().any(|w| w == l), "{l} (dtls) missing");
    }
    let here = format!("--define-variable=prefix={}", root.display());
    let cflags = pkg_config(&[&here, "--cflags"]);

    // The program, linked both ways, against our server.
    let src = tmp.join("hello.c");
    std::fs::write(&src, PROGRAM).unwrap();
    let server = common::udp6_server("[::1]:0", common::example_site());
    let uri = format!("coap://[::1]:{}/hello", server.port());
    let expected = format!(
        "coapio {}\n2.05 Content: Hello, world!\n",
        env!("CARGO_PKG_VERSION")
    );
    let compile = |exe: &Path, libs: &[String]| {
        run(Command::new("cc")
            .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-pedantic", "-o"])
            .arg(exe)
            .args(&cflags)
            .arg(&src)
            .args(libs))
    };

    let shared = tmp.join("hello_shared");
    compile(&shared, &pkg_config(&[&here, "--libs"]));
    assert!(
        dynamic(&shared, "NEEDED").contains(&soname),
        "the program needs {soname}, the SONAME"
    );
    let out = run(Command::new(&shared).env("LD_LIBRARY_PATH", &lib).arg(&uri));
    assert_eq!(out, expected);

    // -lcoapio would take the shared library when both are installed; -l:libcoapio.a does not.
    let statically = tmp.join("hello_static");
    let libs: Vec<String> = pkg_config(&[&here, "--static", "--libs"])
        .into_iter()
        .map(|w| {
            if w == "-lcoapio" {
                "-l:libcoapio.a".into()
            } else {
                w
            }
        })
        .collect();
    compile(&statically, &libs);
    let needed = dynamic(&statically, "NEEDED");
    assert!(
        !needed.iter().any(|n| n.starts_with("libcoapio")),
        "{needed:?}"
    );
    let out = run(Command::new(&statically)
        .env_remove("LD_LIBRARY_PATH")
        .arg(&uri));
    assert_eq!(out, expected);
    server.stop();
}

//! The README's Rust snippet ("Using it from Rust") runs as written, on loopback: it is
//! `readme/snippet.rs`, included here, and the README must show that file verbatim.

include!("readme/snippet.rs");

use std::sync::mpsc;
use std::time::Duration;

#[test]
fn the_readme_snippet_runs() {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(main().map_err(|e| e.to_string()));
    });
    rx.recv_timeout(Duration::from_secs(10))
        .expect("the README's snippet did not finish within 10 s")
        .expect("the README's snippet failed");
}

#[test]
fn the_readme_shows_the_snippet_verbatim() {
    let readme = include_str!("../README.md");
    let snippet = include_str!("readme/snippet.rs");
    assert!(
        readme.contains(&format!("```rust\n{snippet}```")),
        "README.md's Rust snippet differs from tests/readme/snippet.rs; copy the file into it"
    );
}

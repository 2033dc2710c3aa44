//! Command-line flags of the benchmarks: `--name value`.

/// The value given after `--name`, if any.
pub(crate) fn value(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

/// The value of `--name` as a number, or `default` when it is absent or not a number.
pub(crate) fn arg(name: &str, default: usize) -> usize {
    value(name).and_then(|v| v.parse().ok()).unwrap_or(default)
}

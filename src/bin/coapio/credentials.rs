//! `--credentials FILE`: the subset of aiocoap's client credentials JSON that coapio can use.
//!
//! The file maps URI patterns to credentials, as aiocoap's `--credentials` does:
//!
//! ```json
//! {
//!   "coaps://[::1]/*": { "dtls": { "psk": { "ascii": "secretPSK" },
//!                                  "client-identity": { "ascii": "client_Identity" } } },
//!   "coap://[::1]/*": { "oscore": { "basedir": "client-ctx/" } },
//!   "coap://example.com/*": ":shared",
//!   ":shared": { "oscore": { "basedir": "other-ctx/" } }
//! }
//! ```
//!
//! Supported: `dtls` (a pre-shared key; byte strings as `{"ascii": …}`, `{"hex": …}` or a
//! plain string), `oscore` (a security context directory, `basedir` relative to the current
//! directory as in aiocoap), and `":name"` references to entries whose key starts with `:`.
//! Patterns are whole URIs or prefixes ending in `*`, compared with the URI as given, as
//! aiocoap compares them. The library holds one DTLS client key per endpoint, so a file may
//! have one key (under any number of patterns) and a second, different one is refused; the
//! key is only offered for a `coaps://` URI that one of its patterns matches (another is
//! refused before anything is sent). Not supported (refused with a message): `tlscert`, `any-of`,
//! `all-of`, `edhoc-oscore`, and `*` other than at the end of a pattern.

use std::path::{Path, PathBuf};

use serde_json::Value;

/// What a credentials file gives the client.
#[derive(Debug, Default)]
pub(crate) struct Credentials {
    /// The DTLS pre-shared key: identity and key.
    pub(crate) dtls: Option<(Vec<u8>, Vec<u8>)>,
    /// The URI patterns the DTLS key is for.
    pub(crate) dtls_patterns: Vec<String>,
    /// OSCORE context directories by URI pattern, in the file's order.
    pub(crate) oscore: Vec<(String, PathBuf)>,
}

/// Reads `file`.
///
/// # Errors
///
/// A message naming the file and what in it cannot be used.
pub(crate) fn load(file: &Path) -> Result<Credentials, String> {
    let text = std::fs::read(file).map_err(|e| format!("--credentials {}: {e}", file.display()))?;
    parse(&text).map_err(|e| format!("--credentials {}: {e}", file.display()))
}

fn parse(text: &[u8]) -> Result<Credentials, String> {
    let root: Value = serde_json::from_slice(text).map_err(|e| format!("not JSON: {e}"))?;
    let Value::Object(map) = &root else {
        return Err("the top level must be an object of URI patterns".into());
    };
    let mut creds = Credentials::default();
    for (pattern, entry) in map {
        if pattern.starts_with(':') {
            continue; // a definition, used through references
        }
        if pattern.strip_suffix('*').unwrap_or(pattern).contains('*') {
            return Err(format!(
                "{pattern:?}: coapio matches whole URIs or prefixes ending in *"
            ));
        }
        let entry = match entry {
            Value::String(reference) => {
                map.get(reference)
                    .filter(|_| reference.starts_with(':'))
                    .ok_or_else(|| format!("{pattern:?}: no entry {reference:?} to refer to"))?
            }
            e => e,
        };
        let Value::Object(kinds) = entry else {
            return Err(format!("{pattern:?}: an entry is an object or a \":name\""));
        };
        if kinds.len() != 1 {
            return Err(format!("{pattern:?}: an entry has exactly one kind"));
        }
        for (kind, body) in kinds {
            match kind.as_str() {
                "dtls" => {
                    let psk = bytes(body.get("psk"), pattern, "psk")?;
                    let identity = bytes(body.get("client-identity"), pattern, "client-identity")?;
                    match &creds.dtls {
                        Some(d) if *d != (identity.clone(), psk.clone()) => {
                            return Err(format!(
                                "{pattern:?}: coapio uses one DTLS key for all coaps:// URIs; \
                                 the file has two"
                            ))
                        }
                        _ => creds.dtls = Some((identity, psk)),
                    }
                    creds.dtls_patterns.push(pattern.clone());
                }
                "oscore" => {
                    let dir = body
                        .get("basedir")
                        .or_else(|| body.get("contextfile"))
                        .and_then(Value::as_str)
                        .ok_or_else(|| format!("{pattern:?}: oscore needs \"basedir\""))?;
                    creds.oscore.push((pattern.clone(), PathBuf::from(dir)));
                }
                other => {
                    return Err(format!(
                        "{pattern:?}: credentials of kind {other:?} are not supported by coapio \
                         (it reads dtls pre-shared keys and oscore directories)"
                    ))
                }
            }
        }
    }
    Ok(creds)
}

/// Whether `uri` matches `pattern`: the whole URI, or a prefix when the pattern ends in
/// `*` (aiocoap's rule).
pub(crate) fn matches(pattern: &str, uri: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => uri.starts_with(prefix),
        None => uri == pattern,
    }
}

/// A byte string in aiocoap's forms: `{"ascii": "…"}`, `{"hex": "…"}` (with `-`, `:` or
/// spaces allowed between digits), or a plain string.
fn bytes(v: Option<&Value>, pattern: &str, name: &str) -> Result<Vec<u8>, String> {
    let missing = || format!("{pattern:?}: dtls needs {name:?}");
    match v.ok_or_else(missing)? {
        Value::String(s) => Ok(s.as_bytes().to_vec()),
        Value::Object(o) => {
            if let Some(s) = o.get("ascii").and_then(Value::as_str) {
                return Ok(s.as_bytes().to_vec());
            }
            if let Some(s) = o.get("hex").and_then(Value::as_str) {
                let digits: String = s.chars().filter(|c| !"-: ".contains(*c)).collect();
                return crate::options::hex(&digits)
                    .ok_or_else(|| format!("{pattern:?}: {name} is not hex: {s:?}"));
            }
            Err(format!(
                "{pattern:?}: {name} is {{\"ascii\": …}} or {{\"hex\": …}}"
            ))
        }
        _ => Err(missing()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_dtls_oscore_and_references() {
        let c = parse(
            br#"{"coaps://[::1]/*": {"dtls": {"psk": {"hex": "73-65"}, "client-identity": {"ascii": "me"}}},
                 "coap://a/*": ":x", ":x": {"oscore": {"basedir": "ctx/"}}}"#,
        )
        .unwrap();
        assert_eq!(c.dtls, Some((b"me".to_vec(), b"se".to_vec())));
        assert_eq!(c.dtls_patterns, ["coaps://[::1]/*"]);
        assert_eq!(c.oscore, [("coap://a/*".to_owned(), PathBuf::from("ctx/"))]);
    }

    #[test]
    fn refuses_what_it_cannot_do() {
        assert!(parse(br#"{"coap://*/x": {"oscore": {"basedir": "a"}}}"#).is_err());
        assert!(parse(br#"{"coap://a/*": {"tlscert": {"certfile": "a"}}}"#).is_err());
        assert!(parse(br#"{"coap://a/*": ":missing"}"#).is_err());
        assert!(parse(b"[1]").is_err());
        assert!(parse(b"{").is_err());
    }

    #[test]
    fn patterns_match_whole_uris_or_prefixes() {
        assert!(matches("coaps://[::1]/*", "coaps://[::1]/a/b"));
        assert!(matches("coaps://[::1]/*", "coaps://[::1]/"));
        assert!(!matches("coaps://[::1]/*", "coaps://[::2]/a"));
        assert!(!matches("coaps://[::1]/*", "coaps://[::1]:5684/a"));
        assert!(matches("coaps://h/x", "coaps://h/x"));
        assert!(!matches("coaps://h/x", "coaps://h/xy"));
        assert!(matches("*", "coaps://anything/"));
    }
}

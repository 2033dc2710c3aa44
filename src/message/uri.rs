//! CoAP URIs and the Uri-* options (RFC 7252 §6.4, §6.5). (placeholder until the full module lands)
use super::{OptionNumber, Options};
/// Placeholder error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad uri")]
pub struct UriError;
/// Sets Uri-Path and Uri-Query from a relative reference.
pub fn set_path_and_query(opts: &mut Options, reference: &str) -> Result<(), UriError> {
    opts.remove(OptionNumber::URI_PATH);
    opts.remove(OptionNumber::URI_QUERY);
    let (p, q) = reference.split_once('?').unwrap_or((reference, ""));
    for s in p.split('/').filter(|s| !s.is_empty()) {
        opts.push(OptionNumber::URI_PATH, s);
    }
    for s in q.split('&').filter(|s| !s.is_empty()) {
        opts.push(OptionNumber::URI_QUERY, s);
    }
    Ok(())
}
/// Path from Uri-Path values.
pub fn path_from_options<'o>(segments: impl IntoIterator<Item = &'o [u8]>) -> String {
    let mut s = String::new();
    for seg in segments {
        s.push('/');
        s.push_str(&String::from_utf8_lossy(seg));
    }
    if s.is_empty() {
        s.push('/');
    }
    s
}
/// Query from Uri-Query values.
pub fn query_from_options<'o>(items: impl IntoIterator<Item = &'o [u8]>) -> String {
    items
        .into_iter()
        .map(|i| String::from_utf8_lossy(i).into_owned())
        .collect::<Vec<_>>()
        .join("&")
}

//! The Content-Format registry (RFC 7252 §12.3 and the IANA "CoAP Content-Formats" registry).

use std::fmt;

/// A Content-Format number: which media type (and content coding) a payload has.
///
/// ```
/// use coapio::message::ContentFormat;
/// assert_eq!(ContentFormat::JSON.media_type(), Some("application/json"));
/// assert_eq!(ContentFormat::from_media_type("application/link-format"), Some(ContentFormat::LINK_FORMAT));
/// assert_eq!(ContentFormat(40).to_string(), "application/link-format");
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct ContentFormat(pub u16);

macro_rules! formats {
    ($($(#[$doc:meta])* $name:ident = $n:literal, $mt:literal;)*) => {
        impl ContentFormat {
            $($(#[$doc])* pub const $name: Self = Self($n);)*
        }
        static TABLE: &[(u16, &str)] = &[$(($n, $mt)),*];
    };
}

formats! {
    /// `text/plain;charset=utf-8`
    TEXT_PLAIN = 0, "text/plain;charset=utf-8";
    /// `application/cose; cose-type="cose-encrypt0"` (RFC 9052)
    COSE_ENCRYPT0 = 16, "application/cose; cose-type=\"cose-encrypt0\"";
    /// `application/link-format` (RFC 6690)
    LINK_FORMAT = 40, "application/link-format";
    /// `application/xml`
    XML = 41, "application/xml";
    /// `application/octet-stream`
    OCTET_STREAM = 42, "application/octet-stream";
    /// `application/exi`
    EXI = 47, "application/exi";
    /// `application/json`
    JSON = 50, "application/json";
    /// `application/json-patch+json` (RFC 8132)
    JSON_PATCH_JSON = 51, "application/json-patch+json";
    /// `application/merge-patch+json` (RFC 8132)
    MERGE_PATCH_JSON = 52, "application/merge-patch+json";
    /// `application/cbor` (RFC 8949)
    CBOR = 60, "application/cbor";
    /// `application/cwt` (RFC 8392)
    CWT = 61, "application/cwt";
    /// `application/multipart-core` (RFC 8710)
    MULTIPART_CORE = 62, "application/multipart-core";
    /// `application/cbor-seq` (RFC 8742)
    CBOR_SEQ = 63, "application/cbor-seq";
    /// `application/senml+json` (RFC 8428)
    SENML_JSON = 110, "application/senml+json";
    /// `application/sensml+json` (RFC 8428)
    SENSML_JSON = 111, "application/sensml+json";
    /// `application/senml+cbor` (RFC 8428)
    SENML_CBOR = 112, "application/senml+cbor";
    /// `application/sensml+cbor` (RFC 8428)
    SENSML_CBOR = 113, "application/sensml+cbor";
    /// `application/senml-exi` (RFC 8428)
    SENML_EXI = 114, "application/senml-exi";
    /// `application/sensml-exi` (RFC 8428)
    SENSML_EXI = 115, "application/sensml-exi";
    /// `application/coap-group+json` (RFC 7390)
    COAP_GROUP_JSON = 256, "application/coap-group+json";
    /// `application/missing-blocks+cbor-seq` (RFC 9177)
    MISSING_BLOCKS_CBOR_SEQ = 272, "application/missing-blocks+cbor-seq";
    /// `application/senml+xml` (RFC 8428)
    SENML_XML = 310, "application/senml+xml";
    /// `application/sensml+xml` (RFC 8428)
    SENSML_XML = 311, "application/sensml+xml";
    /// `application/vnd.oma.lwm2m+tlv` (OMA LwM2M)
    LWM2M_TLV = 11542, "application/vnd.oma.lwm2m+tlv";
    /// `application/vnd.oma.lwm2m+json` (OMA LwM2M)
    LWM2M_JSON = 11543, "application/vnd.oma.lwm2m+json";
}

impl ContentFormat {
    /// The registered media type, or `None` for a number coapio does not know.
    pub fn media_type(self) -> Option<&'static str> {
        TABLE.iter().find(|(n, _)| *n == self.0).map(|(_, m)| *m)
    }

    /// The number registered for a media type (exact, ASCII case-insensitive match).
    pub fn from_media_type(media_type: &str) -> Option<Self> {
        TABLE
            .iter()
            .find(|(_, m)| m.eq_ignore_ascii_case(media_type))
            .map(|(n, _)| Self(*n))
    }
}

/// Writes the media type, or `Content-Format N` for an unknown number.
impl fmt::Display for ContentFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.media_type() {
            Some(m) => f.write_str(m),
            None => write!(f, "Content-Format {}", self.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_and_round_trips() {
        for w in TABLE.windows(2) {
            assert!(w[0].0 < w[1].0);
        }
        for &(n, m) in TABLE {
            assert_eq!(ContentFormat::from_media_type(m), Some(ContentFormat(n)));
        }
        assert_eq!(ContentFormat(9999).media_type(), None);
        assert_eq!(ContentFormat(9999).to_string(), "Content-Format 9999");
        assert_eq!(ContentFormat::SENML_CBOR.0, 112);
    }
}

//! Named constants for C: option numbers, Content-Formats and codes, so that a C program
//! writes `COAPIO_OPTION_URI_QUERY` and `COAPIO_CODE_NOT_FOUND` instead of 15 and 0x84. The
//! values are the IANA registries' (RFC 7252 §12 and the documents that added to them), the
//! same as the Rust constants of [`message`](crate::message) (a test compares every one).
//!
//! A code is `class << 5 | detail`, as on the wire and as `coapio_response_code` returns it:
//! `COAPIO_CODE_CONTENT` is 0x45 (2.05).

// ---- option numbers (OptionNumber) ----
/// Option number 1: If-Match.
pub const COAPIO_OPTION_IF_MATCH: u16 = 1;
/// Option number 3: Uri-Host.
pub const COAPIO_OPTION_URI_HOST: u16 = 3;
/// Option number 4: ETag.
pub const COAPIO_OPTION_ETAG: u16 = 4;
/// Option number 5: If-None-Match.
pub const COAPIO_OPTION_IF_NONE_MATCH: u16 = 5;
/// Option number 6: Observe.
pub const COAPIO_OPTION_OBSERVE: u16 = 6;
/// Option number 7: Uri-Port.
pub const COAPIO_OPTION_URI_PORT: u16 = 7;
/// Option number 8: Location-Path.
pub const COAPIO_OPTION_LOCATION_PATH: u16 = 8;
/// Option number 9: OSCORE.
pub const COAPIO_OPTION_OSCORE: u16 = 9;
/// Option number 11: Uri-Path.
pub const COAPIO_OPTION_URI_PATH: u16 = 11;
/// Option number 12: Content-Format.
pub const COAPIO_OPTION_CONTENT_FORMAT: u16 = 12;
/// Option number 14: Max-Age.
pub const COAPIO_OPTION_MAX_AGE: u16 = 14;
/// Option number 15: Uri-Query.
pub const COAPIO_OPTION_URI_QUERY: u16 = 15;
/// Option number 16: Hop-Limit.
pub const COAPIO_OPTION_HOP_LIMIT: u16 = 16;
/// Option number 17: Accept.
pub const COAPIO_OPTION_ACCEPT: u16 = 17;
/// Option number 19: Q-Block1.
pub const COAPIO_OPTION_Q_BLOCK1: u16 = 19;
/// Option number 20: Location-Query.
pub const COAPIO_OPTION_LOCATION_QUERY: u16 = 20;
/// Option number 23: Block2.
pub const COAPIO_OPTION_BLOCK2: u16 = 23;
/// Option number 27: Block1.
pub const COAPIO_OPTION_BLOCK1: u16 = 27;
/// Option number 28: Size2.
pub const COAPIO_OPTION_SIZE2: u16 = 28;
/// Option number 31: Q-Block2.
pub const COAPIO_OPTION_Q_BLOCK2: u16 = 31;
/// Option number 35: Proxy-Uri.
pub const COAPIO_OPTION_PROXY_URI: u16 = 35;
/// Option number 39: Proxy-Scheme.
pub const COAPIO_OPTION_PROXY_SCHEME: u16 = 39;
/// Option number 60: Size1.
pub const COAPIO_OPTION_SIZE1: u16 = 60;
/// Option number 252: Echo.
pub const COAPIO_OPTION_ECHO: u16 = 252;
/// Option number 258: No-Response.
pub const COAPIO_OPTION_NO_RESPONSE: u16 = 258;
/// Option number 292: Request-Tag.
pub const COAPIO_OPTION_REQUEST_TAG: u16 = 292;

// ---- Content-Formats (ContentFormat) ----
/// Content-Format 0: `text/plain;charset=utf-8`.
pub const COAPIO_FORMAT_TEXT_PLAIN: u16 = 0;
/// Content-Format 16: `application/cose; cose-type="cose-encrypt0"`.
pub const COAPIO_FORMAT_COSE_ENCRYPT0: u16 = 16;
/// Content-Format 40: `application/link-format`.
pub const COAPIO_FORMAT_LINK_FORMAT: u16 = 40;
/// Content-Format 41: `application/xml`.
pub const COAPIO_FORMAT_XML: u16 = 41;
/// Content-Format 42: `application/octet-stream`.
pub const COAPIO_FORMAT_OCTET_STREAM: u16 = 42;
/// Content-Format 47: `application/exi`.
pub const COAPIO_FORMAT_EXI: u16 = 47;
/// Content-Format 50: `application/json`.
pub const COAPIO_FORMAT_JSON: u16 = 50;
/// Content-Format 51: `application/json-patch+json`.
pub const COAPIO_FORMAT_JSON_PATCH_JSON: u16 = 51;
/// Content-Format 52: `application/merge-patch+json`.
pub const COAPIO_FORMAT_MERGE_PATCH_JSON: u16 = 52;
/// Content-Format 60: `application/cbor`.
pub const COAPIO_FORMAT_CBOR: u16 = 60;
/// Content-Format 61: `application/cwt`.
pub const COAPIO_FORMAT_CWT: u16 = 61;
/// Content-Format 62: `application/multipart-core`.
pub const COAPIO_FORMAT_MULTIPART_CORE: u16 = 62;
/// Content-Format 63: `application/cbor-seq`.
pub const COAPIO_FORMAT_CBOR_SEQ: u16 = 63;
/// Content-Format 110: `application/senml+json`.
pub const COAPIO_FORMAT_SENML_JSON: u16 = 110;
/// Content-Format 111: `application/sensml+json`.
pub const COAPIO_FORMAT_SENSML_JSON: u16 = 111;
/// Content-Format 112: `application/senml+cbor`.
pub const COAPIO_FORMAT_SENML_CBOR: u16 = 112;
/// Content-Format 113: `application/sensml+cbor`.
pub const COAPIO_FORMAT_SENSML_CBOR: u16 = 113;
/// Content-Format 114: `application/senml-exi`.
pub const COAPIO_FORMAT_SENML_EXI: u16 = 114;
/// Content-Format 115: `application/sensml-exi`.
pub const COAPIO_FORMAT_SENSML_EXI: u16 = 115;
/// Content-Format 256: `application/coap-group+json`.
pub const COAPIO_FORMAT_COAP_GROUP_JSON: u16 = 256;
/// Content-Format 272: `application/missing-blocks+cbor-seq`.
pub const COAPIO_FORMAT_MISSING_BLOCKS_CBOR_SEQ: u16 = 272;
/// Content-Format 310: `application/senml+xml`.
pub const COAPIO_FORMAT_SENML_XML: u16 = 310;
/// Content-Format 311: `application/sensml+xml`.
pub const COAPIO_FORMAT_SENSML_XML: u16 = 311;
/// Content-Format 11542: `application/vnd.oma.lwm2m+tlv`.
pub const COAPIO_FORMAT_LWM2M_TLV: u16 = 11542;
/// Content-Format 11543: `application/vnd.oma.lwm2m+json`.
pub const COAPIO_FORMAT_LWM2M_JSON: u16 = 11543;

// ---- message types (Type), as coapio_response_type writes them ----
/// Message type 0: Confirmable.
pub const COAPIO_TYPE_CON: u8 = 0;
/// Message type 1: Non-confirmable.
pub const COAPIO_TYPE_NON: u8 = 1;
/// Message type 2: Acknowledgement (a piggybacked response).
pub const COAPIO_TYPE_ACK: u8 = 2;
/// Message type 3: Reset.
pub const COAPIO_TYPE_RST: u8 = 3;

// ---- codes (Code): methods, then responses as class.detail ----
/// Code 0.00: an empty message (an ACK or RST without content, or a ping).
pub const COAPIO_CODE_EMPTY: u8 = 0x00;
/// The method GET (0.01): 0x01.
pub const COAPIO_CODE_GET: u8 = 0x01;
/// The method POST (0.02): 0x02.
pub const COAPIO_CODE_POST: u8 = 0x02;
/// The method PUT (0.03): 0x03.
pub const COAPIO_CODE_PUT: u8 = 0x03;
/// The method DELETE (0.04): 0x04.
pub const COAPIO_CODE_DELETE: u8 = 0x04;
/// The method FETCH (0.05): 0x05.
pub const COAPIO_CODE_FETCH: u8 = 0x05;
/// The method PATCH (0.06): 0x06.
pub const COAPIO_CODE_PATCH: u8 = 0x06;
/// The method IPATCH (0.07): 0x07.
pub const COAPIO_CODE_IPATCH: u8 = 0x07;
/// Code 2.01 (created): 0x41.
pub const COAPIO_CODE_CREATED: u8 = 0x41;
/// Code 2.02 (deleted): 0x42.
pub const COAPIO_CODE_DELETED: u8 = 0x42;
/// Code 2.03 (valid): 0x43.
pub const COAPIO_CODE_VALID: u8 = 0x43;
/// Code 2.04 (changed): 0x44.
pub const COAPIO_CODE_CHANGED: u8 = 0x44;
/// Code 2.05 (content): 0x45.
pub const COAPIO_CODE_CONTENT: u8 = 0x45;
/// Code 2.31 (continue): 0x5f.
pub const COAPIO_CODE_CONTINUE: u8 = 0x5f;
/// Code 4.00 (bad request): 0x80.
pub const COAPIO_CODE_BAD_REQUEST: u8 = 0x80;
/// Code 4.01 (unauthorized): 0x81.
pub const COAPIO_CODE_UNAUTHORIZED: u8 = 0x81;
/// Code 4.02 (bad option): 0x82.
pub const COAPIO_CODE_BAD_OPTION: u8 = 0x82;
/// Code 4.03 (forbidden): 0x83.
pub const COAPIO_CODE_FORBIDDEN: u8 = 0x83;
/// Code 4.04 (not found): 0x84.
pub const COAPIO_CODE_NOT_FOUND: u8 = 0x84;
/// Code 4.05 (method not allowed): 0x85.
pub const COAPIO_CODE_METHOD_NOT_ALLOWED: u8 = 0x85;
/// Code 4.06 (not acceptable): 0x86.
pub const COAPIO_CODE_NOT_ACCEPTABLE: u8 = 0x86;
/// Code 4.08 (request entity incomplete): 0x88.
pub const COAPIO_CODE_REQUEST_ENTITY_INCOMPLETE: u8 = 0x88;
/// Code 4.09 (conflict): 0x89.
pub const COAPIO_CODE_CONFLICT: u8 = 0x89;
/// Code 4.12 (precondition failed): 0x8c.
pub const COAPIO_CODE_PRECONDITION_FAILED: u8 = 0x8c;
/// Code 4.13 (request entity too large): 0x8d.
pub const COAPIO_CODE_REQUEST_ENTITY_TOO_LARGE: u8 = 0x8d;
/// Code 4.15 (unsupported content format): 0x8f.
pub const COAPIO_CODE_UNSUPPORTED_CONTENT_FORMAT: u8 = 0x8f;
/// Code 4.22 (unprocessable entity): 0x96.
pub const COAPIO_CODE_UNPROCESSABLE_ENTITY: u8 = 0x96;
/// Code 4.29 (too many requests): 0x9d.
pub const COAPIO_CODE_TOO_MANY_REQUESTS: u8 = 0x9d;
/// Code 5.00 (internal server error): 0xa0.
pub const COAPIO_CODE_INTERNAL_SERVER_ERROR: u8 = 0xa0;
/// Code 5.01 (not implemented): 0xa1.
pub const COAPIO_CODE_NOT_IMPLEMENTED: u8 = 0xa1;
/// Code 5.02 (bad gateway): 0xa2.
pub const COAPIO_CODE_BAD_GATEWAY: u8 = 0xa2;
/// Code 5.03 (service unavailable): 0xa3.
pub const COAPIO_CODE_SERVICE_UNAVAILABLE: u8 = 0xa3;
/// Code 5.04 (gateway timeout): 0xa4.
pub const COAPIO_CODE_GATEWAY_TIMEOUT: u8 = 0xa4;
/// Code 5.05 (proxying not supported): 0xa5.
pub const COAPIO_CODE_PROXYING_NOT_SUPPORTED: u8 = 0xa5;
/// Code 5.08 (hop limit reached): 0xa8.
pub const COAPIO_CODE_HOP_LIMIT_REACHED: u8 = 0xa8;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{Code, ContentFormat, OptionNumber, Type};

    #[test]
    fn the_c_names_are_the_rust_constants() {
        assert_eq!(COAPIO_OPTION_IF_MATCH, OptionNumber::IF_MATCH.0);
        assert_eq!(COAPIO_OPTION_URI_HOST, OptionNumber::URI_HOST.0);
        assert_eq!(COAPIO_OPTION_ETAG, OptionNumber::ETAG.0);
        assert_eq!(COAPIO_OPTION_IF_NONE_MATCH, OptionNumber::IF_NONE_MATCH.0);
        assert_eq!(COAPIO_OPTION_OBSERVE, OptionNumber::OBSERVE.0);
        assert_eq!(COAPIO_OPTION_URI_PORT, OptionNumber::URI_PORT.0);
        assert_eq!(COAPIO_OPTION_LOCATION_PATH, OptionNumber::LOCATION_PATH.0);
        assert_eq!(COAPIO_OPTION_OSCORE, OptionNumber::OSCORE.0);
        assert_eq!(COAPIO_OPTION_URI_PATH, OptionNumber::URI_PATH.0);
        assert_eq!(COAPIO_OPTION_CONTENT_FORMAT, OptionNumber::CONTENT_FORMAT.0);
        assert_eq!(COAPIO_OPTION_MAX_AGE, OptionNumber::MAX_AGE.0);
        assert_eq!(COAPIO_OPTION_URI_QUERY, OptionNumber::URI_QUERY.0);
        assert_eq!(COAPIO_OPTION_HOP_LIMIT, OptionNumber::HOP_LIMIT.0);
        assert_eq!(COAPIO_OPTION_ACCEPT, OptionNumber::ACCEPT.0);
        assert_eq!(COAPIO_OPTION_Q_BLOCK1, OptionNumber::Q_BLOCK1.0);
        assert_eq!(COAPIO_OPTION_LOCATION_QUERY, OptionNumber::LOCATION_QUERY.0);
        assert_eq!(COAPIO_OPTION_BLOCK2, OptionNumber::BLOCK2.0);
        assert_eq!(COAPIO_OPTION_BLOCK1, OptionNumber::BLOCK1.0);
        assert_eq!(COAPIO_OPTION_SIZE2, OptionNumber::SIZE2.0);
        assert_eq!(COAPIO_OPTION_Q_BLOCK2, OptionNumber::Q_BLOCK2.0);
        assert_eq!(COAPIO_OPTION_PROXY_URI, OptionNumber::PROXY_URI.0);
        assert_eq!(COAPIO_OPTION_PROXY_SCHEME, OptionNumber::PROXY_SCHEME.0);
        assert_eq!(COAPIO_OPTION_SIZE1, OptionNumber::SIZE1.0);
        assert_eq!(COAPIO_OPTION_ECHO, OptionNumber::ECHO.0);
        assert_eq!(COAPIO_OPTION_NO_RESPONSE, OptionNumber::NO_RESPONSE.0);
        assert_eq!(COAPIO_OPTION_REQUEST_TAG, OptionNumber::REQUEST_TAG.0);
        assert_eq!(COAPIO_FORMAT_TEXT_PLAIN, ContentFormat::TEXT_PLAIN.0);
        assert_eq!(COAPIO_FORMAT_COSE_ENCRYPT0, ContentFormat::COSE_ENCRYPT0.0);
        assert_eq!(COAPIO_FORMAT_LINK_FORMAT, ContentFormat::LINK_FORMAT.0);
        assert_eq!(COAPIO_FORMAT_XML, ContentFormat::XML.0);
        assert_eq!(COAPIO_FORMAT_OCTET_STREAM, ContentFormat::OCTET_STREAM.0);
        assert_eq!(COAPIO_FORMAT_EXI, ContentFormat::EXI.0);
        assert_eq!(COAPIO_FORMAT_JSON, ContentFormat::JSON.0);
        assert_eq!(
            COAPIO_FORMAT_JSON_PATCH_JSON,
            ContentFormat::JSON_PATCH_JSON.0
        );
        assert_eq!(
            COAPIO_FORMAT_MERGE_PATCH_JSON,
            ContentFormat::MERGE_PATCH_JSON.0
        );
        assert_eq!(COAPIO_FORMAT_CBOR, ContentFormat::CBOR.0);
        assert_eq!(COAPIO_FORMAT_CWT, ContentFormat::CWT.0);
        assert_eq!(
            COAPIO_FORMAT_MULTIPART_CORE,
            ContentFormat::MULTIPART_CORE.0
        );
        assert_eq!(COAPIO_FORMAT_CBOR_SEQ, ContentFormat::CBOR_SEQ.0);
        assert_eq!(COAPIO_FORMAT_SENML_JSON, ContentFormat::SENML_JSON.0);
        assert_eq!(COAPIO_FORMAT_SENSML_JSON, ContentFormat::SENSML_JSON.0);
        assert_eq!(COAPIO_FORMAT_SENML_CBOR, ContentFormat::SENML_CBOR.0);
        assert_eq!(COAPIO_FORMAT_SENSML_CBOR, ContentFormat::SENSML_CBOR.0);
        assert_eq!(COAPIO_FORMAT_SENML_EXI, ContentFormat::SENML_EXI.0);
        assert_eq!(COAPIO_FORMAT_SENSML_EXI, ContentFormat::SENSML_EXI.0);
        assert_eq!(
            COAPIO_FORMAT_COAP_GROUP_JSON,
            ContentFormat::COAP_GROUP_JSON.0
        );
        assert_eq!(
            COAPIO_FORMAT_MISSING_BLOCKS_CBOR_SEQ,
            ContentFormat::MISSING_BLOCKS_CBOR_SEQ.0
        );
        assert_eq!(COAPIO_FORMAT_SENML_XML, ContentFormat::SENML_XML.0);
        assert_eq!(COAPIO_FORMAT_SENSML_XML, ContentFormat::SENSML_XML.0);
        assert_eq!(COAPIO_FORMAT_LWM2M_TLV, ContentFormat::LWM2M_TLV.0);
        assert_eq!(COAPIO_FORMAT_LWM2M_JSON, ContentFormat::LWM2M_JSON.0);
        for (c, t) in [
            (COAPIO_TYPE_CON, Type::Con),
            (COAPIO_TYPE_NON, Type::Non),
            (COAPIO_TYPE_ACK, Type::Ack),
            (COAPIO_TYPE_RST, Type::Rst),
        ] {
            assert_eq!(c, t as u8);
        }
        assert_eq!(COAPIO_CODE_EMPTY, Code::EMPTY.0);
        assert_eq!(COAPIO_CODE_GET, Code::GET.0);
        assert_eq!(COAPIO_CODE_POST, Code::POST.0);
        assert_eq!(COAPIO_CODE_PUT, Code::PUT.0);
        assert_eq!(COAPIO_CODE_DELETE, Code::DELETE.0);
        assert_eq!(COAPIO_CODE_FETCH, Code::FETCH.0);
        assert_eq!(COAPIO_CODE_PATCH, Code::PATCH.0);
        assert_eq!(COAPIO_CODE_IPATCH, Code::IPATCH.0);
        assert_eq!(COAPIO_CODE_CREATED, Code::CREATED.0);
        assert_eq!(COAPIO_CODE_DELETED, Code::DELETED.0);
        assert_eq!(COAPIO_CODE_VALID, Code::VALID.0);
        assert_eq!(COAPIO_CODE_CHANGED, Code::CHANGED.0);
        assert_eq!(COAPIO_CODE_CONTENT, Code::CONTENT.0);
        assert_eq!(COAPIO_CODE_CONTINUE, Code::CONTINUE.0);
        assert_eq!(COAPIO_CODE_BAD_REQUEST, Code::BAD_REQUEST.0);
        assert_eq!(COAPIO_CODE_UNAUTHORIZED, Code::UNAUTHORIZED.0);
        assert_eq!(COAPIO_CODE_BAD_OPTION, Code::BAD_OPTION.0);
        assert_eq!(COAPIO_CODE_FORBIDDEN, Code::FORBIDDEN.0);
        assert_eq!(COAPIO_CODE_NOT_FOUND, Code::NOT_FOUND.0);
        assert_eq!(COAPIO_CODE_METHOD_NOT_ALLOWED, Code::METHOD_NOT_ALLOWED.0);
        assert_eq!(COAPIO_CODE_NOT_ACCEPTABLE, Code::NOT_ACCEPTABLE.0);
        assert_eq!(
            COAPIO_CODE_REQUEST_ENTITY_INCOMPLETE,
            Code::REQUEST_ENTITY_INCOMPLETE.0
        );
        assert_eq!(COAPIO_CODE_CONFLICT, Code::CONFLICT.0);
        assert_eq!(COAPIO_CODE_PRECONDITION_FAILED, Code::PRECONDITION_FAILED.0);
        assert_eq!(
            COAPIO_CODE_REQUEST_ENTITY_TOO_LARGE,
            Code::REQUEST_ENTITY_TOO_LARGE.0
        );
        assert_eq!(
            COAPIO_CODE_UNSUPPORTED_CONTENT_FORMAT,
            Code::UNSUPPORTED_CONTENT_FORMAT.0
        );
        assert_eq!(
            COAPIO_CODE_UNPROCESSABLE_ENTITY,
            Code::UNPROCESSABLE_ENTITY.0
        );
        assert_eq!(COAPIO_CODE_TOO_MANY_REQUESTS, Code::TOO_MANY_REQUESTS.0);
        assert_eq!(
            COAPIO_CODE_INTERNAL_SERVER_ERROR,
            Code::INTERNAL_SERVER_ERROR.0
        );
        assert_eq!(COAPIO_CODE_NOT_IMPLEMENTED, Code::NOT_IMPLEMENTED.0);
        assert_eq!(COAPIO_CODE_BAD_GATEWAY, Code::BAD_GATEWAY.0);
        assert_eq!(COAPIO_CODE_SERVICE_UNAVAILABLE, Code::SERVICE_UNAVAILABLE.0);
        assert_eq!(COAPIO_CODE_GATEWAY_TIMEOUT, Code::GATEWAY_TIMEOUT.0);
        assert_eq!(
            COAPIO_CODE_PROXYING_NOT_SUPPORTED,
            Code::PROXYING_NOT_SUPPORTED.0
        );
        assert_eq!(COAPIO_CODE_HOP_LIMIT_REACHED, Code::HOP_LIMIT_REACHED.0);
    }
}

//! Message codes: the `c.dd` byte of the header (RFC 7252 §3, §12.1).
//!
//! A [`Code`] is the raw byte, so any code read from the wire can be held and sent back
//! unchanged; the registered ones have constants and names.

use std::fmt;

/// A CoAP message code: a 3-bit class and a 5-bit detail, written `c.dd`.
///
/// Class 0 holds the empty message (`0.00`) and the request methods, classes 2, 4 and 5 hold
/// responses; classes 1, 3, 6 and 7 are reserved
/// (<https://www.rfc-editor.org/rfc/rfc7252#section-12.1>).
///
/// ```
/// use coapio::message::Code;
/// assert_eq!(Code::CONTENT.to_string(), "2.05 Content");
/// assert_eq!(Code::new(4, 4), Code::NOT_FOUND);
/// assert!(Code::GET.is_request());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Code(pub u8);

impl Code {
    /// `0.00`: the empty message (no request, no response).
    pub const EMPTY: Self = Self(0x00);
    /// `0.01 GET`
    pub const GET: Self = Self(0x01);
    /// `0.02 POST`
    pub const POST: Self = Self(0x02);
    /// `0.03 PUT`
    pub const PUT: Self = Self(0x03);
    /// `0.04 DELETE`
    pub const DELETE: Self = Self(0x04);
    /// `0.05 FETCH` (RFC 8132)
    pub const FETCH: Self = Self(0x05);
    /// `0.06 PATCH` (RFC 8132)
    pub const PATCH: Self = Self(0x06);
    /// `0.07 iPATCH` (RFC 8132)
    pub const IPATCH: Self = Self(0x07);

    /// `2.01 Created`
    pub const CREATED: Self = Self::new(2, 1);
    /// `2.02 Deleted`
    pub const DELETED: Self = Self::new(2, 2);
    /// `2.03 Valid`
    pub const VALID: Self = Self::new(2, 3);
    /// `2.04 Changed`
    pub const CHANGED: Self = Self::new(2, 4);
    /// `2.05 Content`
    pub const CONTENT: Self = Self::new(2, 5);
    /// `2.31 Continue` (RFC 7959)
    pub const CONTINUE: Self = Self::new(2, 31);
    /// `4.00 Bad Request`
    pub const BAD_REQUEST: Self = Self::new(4, 0);
    /// `4.01 Unauthorized`
    pub const UNAUTHORIZED: Self = Self::new(4, 1);
    /// `4.02 Bad Option`
    pub const BAD_OPTION: Self = Self::new(4, 2);
    /// `4.03 Forbidden`
    pub const FORBIDDEN: Self = Self::new(4, 3);
    /// `4.04 Not Found`
    pub const NOT_FOUND: Self = Self::new(4, 4);
    /// `4.05 Method Not Allowed`
    pub const METHOD_NOT_ALLOWED: Self = Self::new(4, 5);
    /// `4.06 Not Acceptable`
    pub const NOT_ACCEPTABLE: Self = Self::new(4, 6);
    /// `4.08 Request Entity Incomplete` (RFC 7959)
    pub const REQUEST_ENTITY_INCOMPLETE: Self = Self::new(4, 8);
    /// `4.09 Conflict` (RFC 8132)
    pub const CONFLICT: Self = Self::new(4, 9);
    /// `4.12 Precondition Failed`
    pub const PRECONDITION_FAILED: Self = Self::new(4, 12);
    /// `4.13 Request Entity Too Large`
    pub const REQUEST_ENTITY_TOO_LARGE: Self = Self::new(4, 13);
    /// `4.15 Unsupported Content-Format`
    pub const UNSUPPORTED_CONTENT_FORMAT: Self = Self::new(4, 15);
    /// `4.22 Unprocessable Entity` (RFC 8132)
    pub const UNPROCESSABLE_ENTITY: Self = Self::new(4, 22);
    /// `4.29 Too Many Requests` (RFC 8516)
    pub const TOO_MANY_REQUESTS: Self = Self::new(4, 29);
    /// `5.00 Internal Server Error`
    pub const INTERNAL_SERVER_ERROR: Self = Self::new(5, 0);
    /// `5.01 Not Implemented`
    pub const NOT_IMPLEMENTED: Self = Self::new(5, 1);
    /// `5.02 Bad Gateway`
    pub const BAD_GATEWAY: Self = Self::new(5, 2);
    /// `5.03 Service Unavailable`
    pub const SERVICE_UNAVAILABLE: Self = Self::new(5, 3);
    /// `5.04 Gateway Timeout`
    pub const GATEWAY_TIMEOUT: Self = Self::new(5, 4);
    /// `5.05 Proxying Not Supported`
    pub const PROXYING_NOT_SUPPORTED: Self = Self::new(5, 5);
    /// `5.08 Hop Limit Reached` (RFC 8768)
    pub const HOP_LIMIT_REACHED: Self = Self::new(5, 8);

    /// Builds the code `class.detail`; `class` is taken modulo 8 and `detail` modulo 32.
    pub const fn new(class: u8, detail: u8) -> Self {
        Self(((class & 0x07) << 5) | (detail & 0x1f))
    }

    /// The class: the `c` of `c.dd`.
    pub const fn class(self) -> u8 {
        self.0 >> 5
    }

    /// The detail: the `dd` of `c.dd`.
    pub const fn detail(self) -> u8 {
        self.0 & 0x1f
    }

    /// Whether this is `0.00`, the code of an empty message.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Whether this is a request method (`0.01`–`0.31`).
    pub const fn is_request(self) -> bool {
        self.class() == 0 && self.0 != 0
    }

    /// Whether this is a response code (classes 2, 4 and 5).
    pub const fn is_response(self) -> bool {
        matches!(self.class(), 2 | 4 | 5)
    }

    /// Whether this is a success response (class 2).
    pub const fn is_success(self) -> bool {
        self.class() == 2
    }

    /// Whether this is an error response (class 4 or 5).
    pub const fn is_error(self) -> bool {
        matches!(self.class(), 4 | 5)
    }

    /// Whether the class is one RFC 7252 §3 reserves (1, 3, 6 or 7): neither a request nor a
    /// response; such a message is rejected.
    pub const fn is_reserved(self) -> bool {
        matches!(self.class(), 1 | 3 | 6 | 7)
    }

    /// The registered name (`"Content"`, `"GET"`), or `None` for an unregistered code.
    pub const fn name(self) -> Option<&'static str> {
        match self.c_name() {
            Some(name) => match name.to_str() {
                Ok(name) => Some(name),
                Err(_) => None, // never: the names are ASCII
            },
            None => None,
        }
    }

    /// [`Code::name`] as a NUL-terminated static string, for the C ABI's `coapio_code_name`
    /// (nothing is built or allocated at run time).
    pub(crate) const fn c_name(self) -> Option<&'static std::ffi::CStr> {
        Some(match self {
            Self::EMPTY => c"Empty",
            Self::GET => c"GET",
            Self::POST => c"POST",
            Self::PUT => c"PUT",
            Self::DELETE => c"DELETE",
            Self::FETCH => c"FETCH",
            Self::PATCH => c"PATCH",
            Self::IPATCH => c"iPATCH",
            Self::CREATED => c"Created",
            Self::DELETED => c"Deleted",
            Self::VALID => c"Valid",
            Self::CHANGED => c"Changed",
            Self::CONTENT => c"Content",
            Self::CONTINUE => c"Continue",
            Self::BAD_REQUEST => c"Bad Request",
            Self::UNAUTHORIZED => c"Unauthorized",
            Self::BAD_OPTION => c"Bad Option",
            Self::FORBIDDEN => c"Forbidden",
            Self::NOT_FOUND => c"Not Found",
            Self::METHOD_NOT_ALLOWED => c"Method Not Allowed",
            Self::NOT_ACCEPTABLE => c"Not Acceptable",
            Self::REQUEST_ENTITY_INCOMPLETE => c"Request Entity Incomplete",
            Self::CONFLICT => c"Conflict",
            Self::PRECONDITION_FAILED => c"Precondition Failed",
            Self::REQUEST_ENTITY_TOO_LARGE => c"Request Entity Too Large",
            Self::UNSUPPORTED_CONTENT_FORMAT => c"Unsupported Content-Format",
            Self::UNPROCESSABLE_ENTITY => c"Unprocessable Entity",
            Self::TOO_MANY_REQUESTS => c"Too Many Requests",
            Self::INTERNAL_SERVER_ERROR => c"Internal Server Error",
            Self::NOT_IMPLEMENTED => c"Not Implemented",
            Self::BAD_GATEWAY => c"Bad Gateway",
            Self::SERVICE_UNAVAILABLE => c"Service Unavailable",
            Self::GATEWAY_TIMEOUT => c"Gateway Timeout",
            Self::PROXYING_NOT_SUPPORTED => c"Proxying Not Supported",
            Self::HOP_LIMIT_REACHED => c"Hop Limit Reached",
            _ => return None,
        })
    }
}

/// Writes `c.dd Name`, or only `c.dd` for an unregistered code.
impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:02}", self.class(), self.detail())?;
        if let Some(name) = self.name() {
            write!(f, " {name}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Code({self})")
    }
}

impl From<u8> for Code {
    fn from(b: u8) -> Self {
        Self(b)
    }
}

impl From<Code> for u8 {
    fn from(c: Code) -> Self {
        c.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_and_parts() {
        assert_eq!(Code::CONTENT.to_string(), "2.05 Content");
        assert_eq!(Code::GET.to_string(), "0.01 GET");
        assert_eq!(Code::new(2, 31).to_string(), "2.31 Continue");
        assert_eq!(Code::new(4, 31).to_string(), "4.31");
        assert_eq!(Code(0x45).class(), 2);
        assert_eq!(Code(0x45).detail(), 5);
        assert_eq!(Code::NOT_FOUND.0, 0x84);
        assert_eq!(Code::INTERNAL_SERVER_ERROR.0, 0xa0);
    }

    #[test]
    fn classes() {
        assert!(Code::EMPTY.is_empty() && !Code::EMPTY.is_request());
        assert!(Code::DELETE.is_request() && !Code::DELETE.is_response());
        assert!(Code::CHANGED.is_success() && Code::CHANGED.is_response());
        assert!(Code::NOT_FOUND.is_error() && Code::GATEWAY_TIMEOUT.is_error());
        for class in [1, 3, 6, 7] {
            assert!(Code::new(class, 0).is_reserved());
            assert!(!Code::new(class, 0).is_response());
        }
    }
}

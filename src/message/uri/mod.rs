//! CoAP URIs and the Uri-* options (RFC 7252 §6).
//!
//! This module holds [`Uri`], a parsed `coap://` or `coaps://` URI, and the two conversions
//! RFC 7252 defines between a URI and the options of a request: decomposing a URI into
//! Uri-Host, Uri-Port, Uri-Path and Uri-Query options ([`Uri::to_options`],
//! [§6.4](https://www.rfc-editor.org/rfc/rfc7252#section-6.4)) and composing a URI from them
//! ([`Uri::from_options`] and `Display`,
//! [§6.5](https://www.rfc-editor.org/rfc/rfc7252#section-6.5)). [`set_path_and_query`],
//! [`path_from_options`] and [`query_from_options`] do the same for the path and query alone,
//! which is all most clients and servers need.
//!
//! A [`Uri`] holds its parts decoded: each path segment and query item is exactly the value
//! of one option, and percent-encoding exists only in the text form. Parsing normalizes what
//! [§6.3](https://www.rfc-editor.org/rfc/rfc7252#section-6.3) says is equivalent (case of
//! scheme and host, an explicit default port, percent-encoded unreserved characters, an empty
//! path and `/`), so equivalent URIs parse to equal values.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::str::FromStr;

use super::{OptionNumber, Options};

/// The longest value a Uri-Host, Uri-Path or Uri-Query option may have (RFC 7252 §5.10).
const MAX_OPTION_LEN: usize = 255;

/// A CoAP URI scheme (<https://www.rfc-editor.org/rfc/rfc7252#section-6.1>).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// `coap`: CoAP over plain UDP.
    Coap,
    /// `coaps`: CoAP over DTLS.
    Coaps,
}

impl Scheme {
    /// The port a URI of this scheme means when it names none: 5683 for `coap`, 5684 for
    /// `coaps`.
    pub const fn default_port(self) -> u16 {
        match self {
            Self::Coap => 5683,
            Self::Coaps => 5684,
        }
    }

    /// The scheme's name in lowercase, without the `:`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Coap => "coap",
            Self::Coaps => "coaps",
        }
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The host of a URI: an IP address or a registered name.
///
/// `Display` writes the URI form: an IPv4 address as is, an IPv6 address in brackets with
/// any zone as `%25zone` ([RFC 6874](https://www.rfc-editor.org/rfc/rfc6874)), and a name
/// with its non-ASCII bytes percent-encoded.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Host {
    /// An IPv4 address, or an IPv6 address with an optional zone (an interface name or
    /// number, for link-local addresses). A zone on an IPv4 address is ignored.
    Ip {
        /// The address.
        addr: IpAddr,
        /// The IPv6 zone, percent-decoded (`eth0` for `[fe80::1%25eth0]`).
        zone: Option<String>,
    },
    /// A registered name such as `example.com`, percent-decoded and in ASCII lowercase.
    ///
    /// Parsing only makes names whose ASCII characters are unreserved or sub-delims
    /// (RFC 3986 §2), which is what a Uri-Host option may carry (RFC 7252 §6.5 step 2), and
    /// that are not IPv4 addresses; non-ASCII characters are allowed and are
    /// percent-encoded in the text form.
    Name(String),
}

impl From<IpAddr> for Host {
    fn from(addr: IpAddr) -> Self {
        Self::Ip { addr, zone: None }
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ip {
                addr: IpAddr::V4(a),
                ..
            } => write!(f, "{a}"),
            Self::Ip {
                addr: IpAddr::V6(a),
                zone,
            } => {
                write!(f, "[{a}")?;
                if let Some(zone) = zone {
                    let mut s = String::from("%25");
                    encode_into(&mut s, zone.as_bytes(), is_unreserved);
                    f.write_str(&s)?;
                }
                f.write_str("]")
            }
            Self::Name(name) => {
                let mut s = String::with_capacity(name.len());
                encode_into(&mut s, name.as_bytes(), is_reg_name_char);
                f.write_str(&s)
            }
        }
    }
}

/// Why a URI, a path-and-query reference or a set of Uri-* options was rejected.
#[non_exhaustive]
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum UriError {
    /// The text does not start with a scheme and a `:`.
    #[error("not an absolute URI: it does not start with a scheme followed by ':'")]
    NotAbsolute,
    /// The scheme is neither `coap` nor `coaps`.
    #[error("unsupported URI scheme {0:?}: only \"coap\" and \"coaps\" are supported")]
    UnsupportedScheme(String),
    /// The scheme is not followed by `//` and an authority.
    #[error("a CoAP URI needs an authority: the scheme must be followed by \"//\" and a host")]
    MissingAuthority,
    /// The URI has a fragment (`#…`), which CoAP URIs cannot have (RFC 7252 §6.4 step 4).
    #[error("a CoAP URI cannot have a fragment ('#')")]
    Fragment,
    /// The authority holds user information (`user@host`), which CoAP URIs cannot have.
    #[error("a CoAP URI cannot have user information ('@' in the authority)")]
    UserInfo,
    /// The host is empty (`coap:///path`), or a Uri-Host option is empty.
    #[error("the host is empty")]
    EmptyHost,
    /// The port is not a decimal number from 0 to 65535.
    #[error("invalid port {0:?}: it must be a decimal number from 0 to 65535")]
    BadPort(String),
    /// A Uri-Port option is longer than the 2 bytes a port needs.
    #[error("the Uri-Port option is {0} bytes long, but a port takes at most 2")]
    PortOptionTooLong(usize),
    /// A bracketed IP literal is malformed.
    #[error("invalid IP literal [{literal}]: {reason}")]
    BadIpLiteral {
        /// The text between the brackets.
        literal: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A character that the named part of the URI cannot hold.
    #[error("character {ch:?} is not allowed in the {component}")]
    InvalidChar {
        /// The character.
        ch: char,
        /// The part of the URI or the option it was found in.
        component: &'static str,
    },
    /// A `%` not followed by two hexadecimal digits.
    #[error(
        "bad percent-encoding in the {component}: '%' must be followed by two hexadecimal digits"
    )]
    BadPercentEncoding {
        /// The part of the URI it was found in.
        component: &'static str,
    },
    /// Percent-decoding gave bytes that are not UTF-8, or an option value is not UTF-8.
    #[error("the {component} is not valid UTF-8 (after percent-decoding)")]
    InvalidUtf8 {
        /// The part of the URI or the option concerned.
        component: &'static str,
    },
    /// A host, path segment or query item longer than the 255 bytes an option can hold.
    #[error("the {component} is {len} bytes long, but a CoAP option holds at most 255")]
    TooLong {
        /// The part of the URI or the option concerned.
        component: &'static str,
        /// Its length in bytes, decoded.
        len: usize,
    },
    /// A Uri-Path option is `.` or `..`, which RFC 7252 §5.10.1 forbids.
    #[error("a Uri-Path option is \".\" or \"..\", which RFC 7252 §5.10.1 forbids")]
    DotSegment,
    /// A non-repeatable option (Uri-Host or Uri-Port) occurs more than once.
    #[error("the {0} option occurs more than once")]
    RepeatedOption(OptionNumber),
    /// A path-and-query reference starts like an absolute URI: its first segment holds a `:`.
    #[error(
        "expected a path and query, but the first segment holds ':' as a URI scheme would \
         (write \"./\" or \"/\" before a path segment that holds ':')"
    )]
    NotRelative,
}

/// An absolute `coap` or `coaps` URI, with its parts decoded.
///
/// The fields are public; values built by hand should keep to what [`Uri::parse`] makes:
/// path segments, query items and host names of at most 255 bytes, and no path segment `.`
/// or `..` (those cannot be carried in a URI's text form, and RFC 7252 §5.10.1 forbids them
/// in options).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Uri {
    /// The scheme.
    pub scheme: Scheme,
    /// The host.
    pub host: Host,
    /// The port: the one the URI names, or the scheme's default.
    pub port: u16,
    /// The path segments, percent-decoded; empty for the root (`/` or an empty path). A
    /// trailing `/` gives a last segment that is empty.
    pub path: Vec<String>,
    /// The query items (the parts between `&`), percent-decoded; empty when there is no
    /// query. A `?` followed by nothing gives one empty item.
    pub query: Vec<String>,
}

impl Uri {
    /// Parses an absolute `coap://` or `coaps://` URI.
    ///
    /// The scheme is matched without regard to case. The host may be an IPv4 address, a
    /// bracketed IPv6 address with an optional zone (`[fe80::1%25eth0]`, RFC 6874) or a
    /// registered name, which is lowercased and percent-decoded (RFC 7252 §6.4 step 5). An
    /// empty or absent port means the scheme's default. The path is split into segments,
    /// each percent-decoded, with `.` and `..` segments resolved as RFC 3986 §5.2.4 does
    /// (a percent-encoded `%2E` counts as `.`, as RFC 3986 §2.3 makes them equivalent);
    /// the query is split at `&` into items, each percent-decoded.
    ///
    /// ```
    /// use coapio::message::uri::{Host, Scheme, Uri};
    /// let uri = Uri::parse("coap://EXAMPLE.com/%7Esensors/temp.xml?unit=c").unwrap();
    /// assert_eq!(uri.scheme, Scheme::Coap);
    /// assert_eq!(uri.host, Host::Name("example.com".into()));
    /// assert_eq!(uri.port, 5683);
    /// assert_eq!(uri.path, ["~sensors", "temp.xml"]);
    /// assert_eq!(uri.query, ["unit=c"]);
    /// assert_eq!(uri.to_string(), "coap://example.com/~sensors/temp.xml?unit=c");
    ///
    /// let uri = Uri::parse("coaps://[fe80::1%25eth0]/a%2Fb").unwrap();
    /// assert_eq!(uri.port, 5684);
    /// assert_eq!(uri.path, ["a/b"]);
    /// ```
    ///
    /// # Errors
    ///
    /// A [`UriError`] naming the first thing found wrong: no scheme, a scheme other than
    /// `coap`/`coaps`, no authority, a fragment, user information, an empty or malformed
    /// host, a bad port, a character a URI cannot hold there, bad percent-encoding, decoded
    /// text that is not UTF-8, or a host, segment or query item longer than 255 bytes.
    pub fn parse(s: &str) -> Result<Self, UriError> {
        let (scheme, rest) = split_scheme(s).ok_or(UriError::NotAbsolute)?;
        if s.contains('#') {
            return Err(UriError::Fragment);
        }
        let scheme = if scheme.eq_ignore_ascii_case("coap") {
            Scheme::Coap
        } else if scheme.eq_ignore_ascii_case("coaps") {
            Scheme::Coaps
        } else {
            return Err(UriError::UnsupportedScheme(scheme.to_owned()));
        };
        let rest = rest.strip_prefix("//").ok_or(UriError::MissingAuthority)?;
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, rest) = rest.split_at(end);
        let (host, port) = parse_authority(authority)?;
        let (path, query) = match rest.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (rest, None),
        };
        Ok(Self {
            scheme,
            host,
            port: port.unwrap_or(scheme.default_port()),
            path: parse_path(path)?,
            query: match query {
                Some(q) => parse_query(q)?,
                None => Vec::new(),
            },
        })
    }

    /// Sets the Uri-Host, Uri-Port, Uri-Path and Uri-Query options of a request for this
    /// URI (RFC 7252 §6.4), replacing any that `opts` already has, when the destination the
    /// request goes to is not known here. A client that knows it uses
    /// [`to_options_for`](Self::to_options_for), which leaves out what equals it.
    ///
    /// - Uri-Host only when the host is a name: an IP address is taken to be the request's
    ///   destination, which the server already knows.
    /// - Uri-Port only when the port is not the scheme's default. (§6.4 asks for it when the
    ///   port differs from the destination port; including it whenever it is not the
    ///   default is also correct, as it then equals the destination port.)
    /// - One Uri-Path per segment, none for the root.
    /// - One Uri-Query per item.
    ///
    /// ```
    /// use coapio::message::{OptionNumber, Options};
    /// use coapio::message::uri::Uri;
    /// let mut opts = Options::new();
    /// Uri::parse("coap://example.com:61616/a/b?x=1").unwrap().to_options(&mut opts);
    /// assert_eq!(opts.get(OptionNumber::URI_HOST), Some(&b"example.com"[..]));
    /// assert_eq!(opts.get_uint(OptionNumber::URI_PORT), Some(61616));
    /// assert_eq!(opts.get_all(OptionNumber::URI_PATH).count(), 2);
    /// ```
    pub fn to_options(&self, opts: &mut Options) {
        let host = match &self.host {
            Host::Name(name) => Some(name.clone()),
            Host::Ip { .. } => None,
        };
        let port = (self.port != self.scheme.default_port()).then_some(self.port);
        self.set_options(host, port, opts);
    }

    /// Sets the Uri-Host, Uri-Port, Uri-Path and Uri-Query options of a request for this
    /// URI sent to `destination`, as RFC 7252
    /// [§6.4](https://www.rfc-editor.org/rfc/rfc7252#section-6.4) steps 5 to 9 say,
    /// replacing any that `opts` already has. What equals the destination is left out, as
    /// the server knows it (§5.10.1 makes it the options' default):
    ///
    /// - Uri-Host when the host is a name, or an IP address other than the destination's
    ///   (its URI form without a zone, `[2001:db8::1]`); none for the destination's own IP
    ///   literal. An IPv4 address and its v4-mapped IPv6 form are the same address.
    /// - Uri-Port only when the port differs from the destination port.
    /// - One Uri-Path per segment, none for the root.
    /// - One Uri-Query per item.
    ///
    /// ```
    /// use std::net::SocketAddr;
    /// use coapio::message::{OptionNumber, Options};
    /// use coapio::message::uri::Uri;
    /// let mut opts = Options::new();
    /// let uri = Uri::parse("coap://[::1]:61616/a").unwrap();
    /// let destination: SocketAddr = "[::1]:61616".parse().unwrap();
    /// uri.to_options_for(destination, &mut opts);
    /// assert_eq!(opts.get(OptionNumber::URI_HOST), None);
    /// assert_eq!(opts.get_uint(OptionNumber::URI_PORT), None);
    /// assert_eq!(opts.get(OptionNumber::URI_PATH), Some(&b"a"[..]));
    /// ```
    pub fn to_options_for(&self, destination: SocketAddr, opts: &mut Options) {
        let host = match &self.host {
            Host::Name(name) => Some(name.clone()),
            Host::Ip { addr, .. } if addr.to_canonical() == destination.ip().to_canonical() => None,
            Host::Ip { addr, .. } => Some(Host::from(*addr).to_string()),
        };
        let port = (self.port != destination.port()).then_some(self.port);
        self.set_options(host, port, opts);
    }

    fn set_options(&self, host: Option<String>, port: Option<u16>, opts: &mut Options) {
        for n in [
            OptionNumber::URI_HOST,
            OptionNumber::URI_PORT,
            OptionNumber::URI_PATH,
            OptionNumber::URI_QUERY,
        ] {
            opts.remove(n);
        }
        if let Some(host) = host {
            opts.push(OptionNumber::URI_HOST, host);
        }
        if let Some(port) = port {
            opts.push_uint(OptionNumber::URI_PORT, u32::from(port));
        }
        if !is_root(&self.path) {
            for segment in &self.path {
                opts.push(OptionNumber::URI_PATH, segment);
            }
        }
        for item in &self.query {
            opts.push(OptionNumber::URI_QUERY, item);
        }
    }

    /// The URI a request was made for, from its options and where it was sent
    /// (RFC 7252 §6.5): `scheme` is how it arrived, `destination` and `destination_port`
    /// the address it was sent to.
    ///
    /// A Uri-Host option replaces `destination`: an IPv4 address or bracketed IPv6 literal
    /// in it becomes [`Host::Ip`], anything else must be a host name (its ASCII characters
    /// unreserved or sub-delims) and is lowercased. A Uri-Port option replaces
    /// `destination_port`. Every Uri-Path gives a segment (a lone empty one means the root)
    /// and every Uri-Query an item. Other options, Proxy-Uri included, are ignored.
    ///
    /// ```
    /// use std::net::{IpAddr, Ipv6Addr};
    /// use coapio::message::{OptionNumber, Options};
    /// use coapio::message::uri::{Host, Scheme, Uri};
    /// let mut opts = Options::new();
    /// opts.push(OptionNumber::URI_PATH, "a/b");
    /// opts.push(OptionNumber::URI_QUERY, "q=1");
    /// let dest = Host::from(IpAddr::V6(Ipv6Addr::LOCALHOST));
    /// let uri = Uri::from_options(Scheme::Coap, dest, 5684, opts.iter()).unwrap();
    /// assert_eq!(uri.to_string(), "coap://[::1]:5684/a%2Fb?q=1");
    /// ```
    ///
    /// # Errors
    ///
    /// A repeated Uri-Host or Uri-Port, a Uri-Port longer than 2 bytes, a Uri-Host that is
    /// empty, too long, not UTF-8 or neither an IP address nor a host name, and a Uri-Path
    /// or Uri-Query that is not UTF-8 or longer than 255 bytes, or a Uri-Path of `.` or `..`.
    pub fn from_options<'o>(
        scheme: Scheme,
        destination: Host,
        destination_port: u16,
        options: impl IntoIterator<Item = (OptionNumber, &'o [u8])>,
    ) -> Result<Self, UriError> {
        let mut host = None;
        let mut port = None;
        let mut path = Vec::new();
        let mut query = Vec::new();
        for (number, value) in options {
            match number {
                OptionNumber::URI_HOST => {
                    if host.is_some() {
                        return Err(UriError::RepeatedOption(number));
                    }
                    host = Some(host_from_option(value)?);
                }
                OptionNumber::URI_PORT => {
                    if port.is_some() {
                        return Err(UriError::RepeatedOption(number));
                    }
                    if value.len() > 2 {
                        return Err(UriError::PortOptionTooLong(value.len()));
                    }
                    port = Some(value.iter().fold(0u16, |p, &b| (p << 8) | u16::from(b)));
                }
                OptionNumber::URI_PATH => {
                    let segment = option_text(value, "Uri-Path option")?;
                    if segment == "." || segment == ".." {
                        return Err(UriError::DotSegment);
                    }
                    path.push(segment);
                }
                OptionNumber::URI_QUERY => query.push(option_text(value, "Uri-Query option")?),
                _ => {}
            }
        }
        if is_root(&path) {
            path.clear();
        }
        Ok(Self {
            scheme,
            host: host.unwrap_or(destination),
            port: port.unwrap_or(destination_port),
            path,
            query,
        })
    }

    /// The address to send a request for this URI to, when the host is an IP address;
    /// `None` for a host name, which the caller must resolve.
    ///
    /// For an IPv6 address, a numeric zone (`[fe80::1%253]`) becomes the scope ID. A named
    /// zone (`%25eth0`) gives scope ID 0: the caller must map the name in
    /// [`Host::Ip::zone`](Host::Ip) to an interface index itself (with `if_nametoindex`, for
    /// instance), which this pure layer cannot do.
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        match &self.host {
            Host::Ip {
                addr: IpAddr::V6(addr),
                zone,
            } => {
                let scope = zone
                    .as_deref()
                    .filter(|z| !z.is_empty() && z.bytes().all(|b| b.is_ascii_digit()))
                    .and_then(|z| z.parse().ok())
                    .unwrap_or(0);
                Some(SocketAddr::V6(SocketAddrV6::new(
                    *addr, self.port, 0, scope,
                )))
            }
            Host::Ip { addr, .. } => Some(SocketAddr::new(*addr, self.port)),
            Host::Name(_) => None,
        }
    }

    /// The path and query in URI form, percent-encoded as RFC 7252 §6.5 steps 6 to 8 do:
    /// `/a/b?x=1&y`, or `/` for the root with no query.
    pub fn path_and_query(&self) -> String {
        let mut out = String::new();
        push_path(&mut out, self.path.iter().map(String::as_bytes));
        if !self.query.is_empty() {
            out.push('?');
            push_query(&mut out, self.query.iter().map(String::as_bytes));
        }
        out
    }
}

/// Writes the URI as RFC 7252 §6.5 composes it, leaving out the port when it is the
/// scheme's default: `coap://[::1]:5684/a%2Fb?q=1`.
impl fmt::Display for Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.scheme, self.host)?;
        if self.port != self.scheme.default_port() {
            write!(f, ":{}", self.port)?;
        }
        f.write_str(&self.path_and_query())
    }
}

impl FromStr for Uri {
    type Err = UriError;

    /// As [`Uri::parse`].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// Sets Uri-Path and Uri-Query options from a relative reference like `/a/b?x=1&y` (or
/// `a/b`, or `""` / `"/"` meaning the root); replaces existing Uri-Path/Uri-Query.
///
/// The reference is always read as a path (a leading `/` is optional, and `//a` is a path
/// whose first segment is empty, not an authority) followed by an optional query, with the
/// same percent-decoding and `.`/`..` handling as [`Uri::parse`]. `opts` is left untouched
/// when the reference is rejected.
///
/// ```
/// use coapio::message::{OptionNumber, Options};
/// use coapio::message::uri::set_path_and_query;
/// let mut opts = Options::new();
/// set_path_and_query(&mut opts, "/sensors/../temp%20C?unit=c&raw").unwrap();
/// let path: Vec<_> = opts.get_all(OptionNumber::URI_PATH).collect();
/// assert_eq!(path, [b"temp C".as_slice()]);
/// assert_eq!(opts.get_all(OptionNumber::URI_QUERY).count(), 2);
/// ```
///
/// # Errors
///
/// [`UriError::Fragment`] for a `#`, [`UriError::NotRelative`] when the first segment of a
/// reference not starting with `/` holds a `:` (as `coap://host/x` does), and the errors of
/// [`Uri::parse`] for characters, percent-encoding, UTF-8 and lengths.
pub fn set_path_and_query(opts: &mut Options, reference: &str) -> Result<(), UriError> {
    if reference.contains('#') {
        return Err(UriError::Fragment);
    }
    let (path, query) = match reference.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (reference, None),
    };
    if !path.starts_with('/') && path.split('/').next().is_some_and(|s| s.contains(':')) {
        return Err(UriError::NotRelative);
    }
    let path = parse_path(path)?;
    let query = match query {
        Some(q) => parse_query(q)?,
        None => Vec::new(),
    };
    opts.remove(OptionNumber::URI_PATH);
    opts.remove(OptionNumber::URI_QUERY);
    for segment in &path {
        opts.push(OptionNumber::URI_PATH, segment);
    }
    for item in &query {
        opts.push(OptionNumber::URI_QUERY, item);
    }
    Ok(())
}

/// "/a/b" from Uri-Path values (percent-encoding '/', '?', '%' and non-pchar bytes inside
/// segments); "/" when there are none.
///
/// Every byte that is not unreserved, a sub-delim, `:` or `@` is percent-encoded (RFC 7252
/// §6.5 step 6), so non-ASCII text and bytes that are not UTF-8 come out as `%XX` too and
/// the result is always a valid URI path.
///
/// ```
/// use coapio::message::uri::path_from_options;
/// assert_eq!(path_from_options([b"a/b".as_slice(), b"c d", b"\xff"]), "/a%2Fb/c%20d/%FF");
/// assert_eq!(path_from_options([]), "/");
/// ```
pub fn path_from_options<'o>(segments: impl IntoIterator<Item = &'o [u8]>) -> String {
    let mut out = String::new();
    push_path(&mut out, segments);
    out
}

/// "x=1&y" from Uri-Query values (percent-encoded as needed), empty when none.
///
/// Every byte that is not unreserved, a sub-delim other than `&`, `:`, `@`, `/` or `?` is
/// percent-encoded (RFC 7252 §6.5 step 8). A single empty item also gives the empty string;
/// [`Uri::path_and_query`] writes that case as a lone `?`.
///
/// ```
/// use coapio::message::uri::query_from_options;
/// assert_eq!(query_from_options([b"x=1".as_slice(), b"a&b", b"y"]), "x=1&a%26b&y");
/// ```
pub fn query_from_options<'o>(items: impl IntoIterator<Item = &'o [u8]>) -> String {
    let mut out = String::new();
    push_query(&mut out, items);
    out
}

// ---------------------------------------------------------------------------------------
// Character classes of RFC 3986 §2 and §3.

const fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

const fn is_sub_delim(b: u8) -> bool {
    matches!(
        b,
        b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'='
    )
}

/// What a reg-name holds besides percent-encodings.
const fn is_reg_name_char(b: u8) -> bool {
    is_unreserved(b) || is_sub_delim(b)
}

/// What a path segment holds besides percent-encodings.
const fn is_pchar(b: u8) -> bool {
    is_reg_name_char(b) || b == b':' || b == b'@'
}

/// What a query holds besides percent-encodings.
const fn is_query_char(b: u8) -> bool {
    is_pchar(b) || b == b'/' || b == b'?'
}

/// What a query item is written with unencoded (RFC 7252 §6.5 step 8).
const fn is_query_item_char(b: u8) -> bool {
    is_query_char(b) && b != b'&'
}

// ---------------------------------------------------------------------------------------
// Encoding.

fn encode_into(out: &mut String, bytes: &[u8], keep: fn(u8) -> bool) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in bytes {
        if keep(b) {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
    }
}

fn push_path<'o>(out: &mut String, segments: impl IntoIterator<Item = &'o [u8]>) {
    let start = out.len();
    for segment in segments {
        out.push('/');
        encode_into(out, segment, is_pchar);
    }
    if out.len() == start {
        out.push('/');
    }
}

fn push_query<'o>(out: &mut String, items: impl IntoIterator<Item = &'o [u8]>) {
    for (i, item) in items.into_iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        encode_into(out, item, is_query_item_char);
    }
}

// ---------------------------------------------------------------------------------------
// Decoding.

/// Splits `scheme ":" rest`, where scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ).
fn split_scheme(s: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = s.split_once(':')?;
    let mut bytes = scheme.bytes();
    let first_ok = bytes.next().is_some_and(|b| b.is_ascii_alphabetic());
    let rest_ok = bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
    (first_ok && rest_ok).then_some((scheme, rest))
}

/// Checks that every character of `s` is ASCII and either `allowed` or `%`.
fn check_chars(s: &str, allowed: fn(u8) -> bool, component: &'static str) -> Result<(), UriError> {
    match s
        .chars()
        .find(|&c| !(c.is_ascii() && (c == '%' || allowed(c as u8))))
    {
        Some(ch) => Err(UriError::InvalidChar { ch, component }),
        None => Ok(()),
    }
}

fn hex_value(b: u8) -> Option<u8> {
    char::from(b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

fn percent_decode(s: &str, component: &'static str) -> Result<Vec<u8>, UriError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hi = bytes.get(i + 1).copied().and_then(hex_value);
            let lo = bytes.get(i + 2).copied().and_then(hex_value);
            match (hi, lo) {
                (Some(hi), Some(lo)) => out.push((hi << 4) | lo),
                _ => return Err(UriError::BadPercentEncoding { component }),
            }
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    Ok(out)
}

/// Checks the characters of `raw`, percent-decodes it and checks the result is UTF-8.
fn decode_part(
    raw: &str,
    allowed: fn(u8) -> bool,
    component: &'static str,
) -> Result<String, UriError> {
    check_chars(raw, allowed, component)?;
    String::from_utf8(percent_decode(raw, component)?)
        .map_err(|_| UriError::InvalidUtf8 { component })
}

fn check_len(text: &str, component: &'static str) -> Result<(), UriError> {
    if text.len() > MAX_OPTION_LEN {
        return Err(UriError::TooLong {
            component,
            len: text.len(),
        });
    }
    Ok(())
}

/// Whether the segments mean the root: none, or one empty one.
fn is_root(path: &[String]) -> bool {
    path.len() <= 1 && path.iter().all(String::is_empty)
}

/// Parses the authority (`host [":" port]`) of a URI; the port is `None` when absent or
/// empty.
fn parse_authority(authority: &str) -> Result<(Host, Option<u16>), UriError> {
    if authority.contains('@') {
        return Err(UriError::UserInfo);
    }
    let (host, port) = if let Some(after) = authority.strip_prefix('[') {
        let Some((literal, tail)) = after.split_once(']') else {
            return Err(UriError::BadIpLiteral {
                literal: after.to_owned(),
                reason: "the closing ']' is missing",
            });
        };
        let host = parse_ip_literal(literal)?;
        let port = match tail.strip_prefix(':') {
            Some(port) => Some(port),
            None => match tail.chars().next() {
                Some(ch) => {
                    return Err(UriError::InvalidChar {
                        ch,
                        component: "authority after the IP literal",
                    })
                }
                None => None,
            },
        };
        (host, port)
    } else {
        let (host, port) = match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        };
        (parse_reg_name_or_ipv4(host)?, port)
    };
    let port = match port {
        Some(port) => parse_port(port)?,
        None => None,
    };
    Ok((host, port))
}

fn parse_port(s: &str) -> Result<Option<u16>, UriError> {
    if s.is_empty() {
        return Ok(None);
    }
    let mut value: u32 = 0;
    for b in s.bytes() {
        if !b.is_ascii_digit() {
            return Err(UriError::BadPort(s.to_owned()));
        }
        value = value * 10 + u32::from(b - b'0');
        if value > u32::from(u16::MAX) {
            return Err(UriError::BadPort(s.to_owned()));
        }
    }
    u16::try_from(value)
        .map(Some)
        .map_err(|_| UriError::BadPort(s.to_owned()))
}

/// Parses the text between the brackets of an IP-literal: an IPv6 address with an optional
/// RFC 6874 zone (`fe80::1%25eth0`).
fn parse_ip_literal(literal: &str) -> Result<Host, UriError> {
    let bad = |reason| UriError::BadIpLiteral {
        literal: literal.to_owned(),
        reason,
    };
    if literal.starts_with(['v', 'V']) {
        return Err(bad("IPvFuture addresses are not supported"));
    }
    let (addr, zone) = match literal.split_once('%') {
        Some((addr, zone)) => (addr, Some(zone)),
        None => (literal, None),
    };
    let addr: Ipv6Addr = addr.parse().map_err(|_| bad("not a valid IPv6 address"))?;
    let zone = match zone {
        None => None,
        Some(zone) => {
            let Some(zone) = zone.strip_prefix("25") else {
                return Err(bad("a zone must be introduced by \"%25\" (RFC 6874)"));
            };
            if zone.is_empty() {
                return Err(bad("the zone after \"%25\" is empty"));
            }
            Some(decode_part(zone, is_unreserved, "IPv6 zone")?)
        }
    };
    Ok(Host::Ip {
        addr: IpAddr::V6(addr),
        zone,
    })
}

/// Parses an unbracketed host: an IPv4 address or a reg-name, lowercased then
/// percent-decoded (RFC 7252 §6.4 step 5).
fn parse_reg_name_or_ipv4(raw: &str) -> Result<Host, UriError> {
    if raw.is_empty() {
        return Err(UriError::EmptyHost);
    }
    check_chars(raw, is_reg_name_char, "host")?;
    if let Ok(addr) = raw.parse::<Ipv4Addr>() {
        return Ok(IpAddr::V4(addr).into());
    }
    let name = String::from_utf8(percent_decode(&raw.to_ascii_lowercase(), "host")?)
        .map_err(|_| UriError::InvalidUtf8 { component: "host" })?;
    name_to_host(name, "host (after percent-decoding)")
}

/// Makes a host from a decoded name: checks its characters, lowercases it, and makes an
/// IPv4 address of it when it is one.
fn name_to_host(mut name: String, component: &'static str) -> Result<Host, UriError> {
    if name.is_empty() {
        return Err(UriError::EmptyHost);
    }
    if let Some(ch) = name
        .chars()
        .find(|&c| c.is_ascii() && !is_reg_name_char(c as u8))
    {
        return Err(UriError::InvalidChar { ch, component });
    }
    name.make_ascii_lowercase();
    if let Ok(addr) = name.parse::<Ipv4Addr>() {
        return Ok(IpAddr::V4(addr).into());
    }
    check_len(&name, "host")?;
    Ok(Host::Name(name))
}

/// The host a Uri-Host option names (RFC 7252 §6.5 step 2).
fn host_from_option(value: &[u8]) -> Result<Host, UriError> {
    const COMPONENT: &str = "Uri-Host option";
    if value.len() > MAX_OPTION_LEN {
        return Err(UriError::TooLong {
            component: COMPONENT,
            len: value.len(),
        });
    }
    let text = std::str::from_utf8(value).map_err(|_| UriError::InvalidUtf8 {
        component: COMPONENT,
    })?;
    if let Some(after) = text.strip_prefix('[') {
        return match after.strip_suffix(']') {
            Some(literal) => parse_ip_literal(literal),
            None => Err(UriError::BadIpLiteral {
                literal: after.to_owned(),
                reason: "the closing ']' is missing",
            }),
        };
    }
    name_to_host(text.to_owned(), COMPONENT)
}

/// The value of a Uri-Path or Uri-Query option as text.
fn option_text(value: &[u8], component: &'static str) -> Result<String, UriError> {
    if value.len() > MAX_OPTION_LEN {
        return Err(UriError::TooLong {
            component,
            len: value.len(),
        });
    }
    String::from_utf8(value.to_vec()).map_err(|_| UriError::InvalidUtf8 { component })
}

/// Parses a path (empty, or with or without a leading `/`) into decoded segments, resolving
/// `.` and `..` as RFC 3986 §5.2.4 does; the root gives no segments.
fn parse_path(path: &str) -> Result<Vec<String>, UriError> {
    let body = path.strip_prefix('/').unwrap_or(path);
    let mut segments: Vec<String> = Vec::new();
    let mut parts = body.split('/').peekable();
    while let Some(raw) = parts.next() {
        let last = parts.peek().is_none();
        let segment = decode_part(raw, is_pchar, "path")?;
        match segment.as_str() {
            "." | ".." => {
                if segment == ".." {
                    segments.pop();
                }
                if last {
                    // "/a/." and "/a/.." end in a slash: "/a/" and "/".
                    segments.push(String::new());
                }
            }
            _ => segments.push(segment),
        }
    }
    if is_root(&segments) {
        segments.clear();
    }
    for segment in &segments {
        check_len(segment, "path segment")?;
    }
    Ok(segments)
}

/// Parses a query (without the `?`) into decoded items.
fn parse_query(query: &str) -> Result<Vec<String>, UriError> {
    query
        .split('&')
        .map(|raw| {
            let item = decode_part(raw, is_query_char, "query")?;
            check_len(&item, "query item")?;
            Ok(item)
        })
        .collect()
}

#[cfg(test)]
mod tests;

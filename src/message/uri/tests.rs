//! Tests of URI parsing, building, and the conversions to and from options.

use super::*;

fn uri(s: &str) -> Uri {
    Uri::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn err(s: &str) -> UriError {
    match Uri::parse(s) {
        Ok(u) => panic!("{s} parsed as {u:?}"),
        Err(e) => e,
    }
}

fn name(s: &str) -> Host {
    Host::Name(s.to_owned())
}

fn ip(s: &str) -> Host {
    Host::from(s.parse::<IpAddr>().unwrap())
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

fn options_of(u: &Uri) -> Vec<(u16, Vec<u8>)> {
    let mut opts = Options::new();
    u.to_options(&mut opts);
    opts.iter().map(|(n, v)| (n.0, v.to_vec())).collect()
}

/// The URI rebuilt from its own options, as a server receiving them would.
fn via_options(u: &Uri) -> Uri {
    let mut opts = Options::new();
    u.to_options(&mut opts);
    let destination = match &u.host {
        Host::Ip { .. } => u.host.clone(),
        Host::Name(_) => ip("192.0.2.1"),
    };
    Uri::from_options(u.scheme, destination, u.scheme.default_port(), opts.iter()).unwrap()
}

#[test]
fn rfc7252_6_3_equivalence() {
    let a = uri("coap://example.com:5683/~sensors/temp.xml");
    let b = uri("coap://EXAMPLE.com/%7Esensors/temp.xml");
    let c = uri("coap://EXAMPLE.com:/%7esensors/temp.xml");
    assert_eq!(a, b);
    assert_eq!(a, c);
    assert_eq!(a.host, name("example.com"));
    assert_eq!(a.port, 5683);
    assert_eq!(a.path, ["~sensors", "temp.xml"]);
    assert!(a.query.is_empty());
    assert_eq!(options_of(&a), options_of(&c));
    assert_eq!(a.to_string(), "coap://example.com/~sensors/temp.xml");
    // An empty path and "/" are the same resource.
    assert_eq!(uri("coap://h"), uri("coap://h/"));
    assert_eq!(uri("coap://h").to_string(), "coap://h/");
}

#[test]
fn rfc7252_6_4_example_options() {
    // Uri-Host "example.com", Uri-Path "~sensors", "temp.xml" (no Uri-Port: default).
    let u = uri("coap://example.com:5683/~sensors/temp.xml");
    assert_eq!(
        options_of(&u),
        [
            (3, b"example.com".to_vec()),
            (11, b"~sensors".to_vec()),
            (11, b"temp.xml".to_vec())
        ]
    );
}

#[test]
fn scheme_case_and_default_ports() {
    let u = uri("CoAPs://Host");
    assert_eq!((u.scheme, u.port), (Scheme::Coaps, 5684));
    assert_eq!(u.host, name("host"));
    assert_eq!(u.to_string(), "coaps://host/");
    assert_eq!(Scheme::Coap.default_port(), 5683);
    assert_eq!(Scheme::Coaps.as_str(), "coaps");
    assert_eq!(uri("coap://h:5683/").to_string(), "coap://h/");
    assert_eq!(uri("coaps://h:5683/").to_string(), "coaps://h:5683/");
    assert_eq!(uri("coap://h:5684/").to_string(), "coap://h:5684/");
    assert_eq!(uri("coap://h:0/").port, 0);
    assert_eq!(uri("coap://h:65535/").port, 65535);
    assert_eq!(uri("coap://h:005683/").port, 5683);
    assert_eq!(uri("coap://h:?x").port, 5683);
}

#[test]
fn uri_port_option_only_when_not_default() {
    let port = |s: &str| {
        let mut opts = Options::new();
        uri(s).to_options(&mut opts);
        opts.get_uint(OptionNumber::URI_PORT)
    };
    assert_eq!(port("coap://h/"), None);
    assert_eq!(port("coap://h:5683/"), None);
    assert_eq!(port("coaps://h:5684/"), None);
    assert_eq!(port("coaps://h:5683/"), Some(5683));
    assert_eq!(port("coap://[::1]:61616/"), Some(61616));
    assert_eq!(port("coap://h:0/"), Some(0));
}

/// The Uri-Host and Uri-Port options of a request for `s` sent to `destination`.
fn host_and_port_for(s: &str, destination: &str) -> (Option<Vec<u8>>, Option<u32>) {
    let mut opts = Options::new();
    uri(s).to_options_for(destination.parse().unwrap(), &mut opts);
    (
        opts.get(OptionNumber::URI_HOST).map(<[u8]>::to_vec),
        opts.get_uint(OptionNumber::URI_PORT),
    )
}

#[test]
fn to_options_for_leaves_out_the_destination() {
    // RFC 7252 §6.4 steps 5 and 7: neither the destination's IP literal nor its port.
    assert_eq!(
        host_and_port_for("coap://[::1]:61616/x", "[::1]:61616"),
        (None, None)
    );
    assert_eq!(
        host_and_port_for("coap://example.com:61616/", "[2001:db8::1]:61616"),
        (Some(b"example.com".to_vec()), None)
    );
    assert_eq!(
        host_and_port_for("coap://192.0.2.1:40000/", "[::ffff:192.0.2.1]:40000"),
        (None, None)
    );
    assert_eq!(
        host_and_port_for("coap://[fe80::1%25eth0]/", "[fe80::1%2]:5683"),
        (None, None)
    );
    // What differs from the destination is sent, the default port included.
    assert_eq!(
        host_and_port_for("coap://example.com/", "192.0.2.1:61616"),
        (Some(b"example.com".to_vec()), Some(5683))
    );
    assert_eq!(
        host_and_port_for("coap://[2001:db8::2]:7/", "[2001:db8::1]:7"),
        (Some(b"[2001:db8::2]".to_vec()), None)
    );
    assert_eq!(
        host_and_port_for("coap://192.0.2.2/", "192.0.2.1:5683"),
        (Some(b"192.0.2.2".to_vec()), None)
    );
    // The path and query are there as with to_options, and old Uri-* options replaced.
    let u = uri("coap://[::1]:61616/a/b?q=1");
    let mut opts = Options::new();
    opts.push(OptionNumber::URI_PORT, b"\x01");
    opts.push(OptionNumber::URI_PATH, "old");
    u.to_options_for("[::1]:61616".parse().unwrap(), &mut opts);
    let mut expected = Options::new();
    u.to_options(&mut expected);
    expected.remove(OptionNumber::URI_PORT);
    assert!(opts.iter().eq(expected.iter()));
    // A server rebuilds the same URI from the options and the destination.
    for (s, dest) in [
        ("coap://[::1]:61616/x", "[::1]:61616"),
        ("coap://example.com:61616/y?z", "[::1]:61616"),
        ("coap://[2001:db8::2]:9/", "[2001:db8::1]:7"),
    ] {
        let u = uri(s);
        let dest: SocketAddr = dest.parse().unwrap();
        let mut opts = Options::new();
        u.to_options_for(dest, &mut opts);
        let back = Uri::from_options(u.scheme, Host::from(dest.ip()), dest.port(), opts.iter());
        assert_eq!(back.unwrap(), u, "{s}");
    }
}

#[test]
fn uri_host_rules() {
    let host = |s: &str| {
        let mut opts = Options::new();
        uri(s).to_options(&mut opts);
        opts.get(OptionNumber::URI_HOST).map(<[u8]>::to_vec)
    };
    // A name is sent, lowercased and decoded; an IP literal is the destination itself.
    assert_eq!(host("coap://Example.COM/"), Some(b"example.com".to_vec()));
    assert_eq!(
        host("coap://caf%C3%A9.example/"),
        Some("café.example".as_bytes().to_vec())
    );
    assert_eq!(host("coap://192.0.2.1/"), None);
    assert_eq!(host("coap://[2001:db8::1]/"), None);
    assert_eq!(host("coap://[fe80::1%25eth0]/"), None);
    // A percent-encoded uppercase letter is lowercased too.
    assert_eq!(uri("coap://%41b/").host, name("ab"));
    // A name spelled as an IPv4 address by percent-encoding is that address.
    assert_eq!(uri("coap://%31.2.3.4/").host, ip("1.2.3.4"));
    // RFC 3986 dec-octets have no leading zeros: this is a name.
    assert_eq!(uri("coap://01.2.3.4/").host, name("01.2.3.4"));
    assert_eq!(uri("coap://1.2.3/").host, name("1.2.3"));
    // Sub-delims are allowed in names and kept as they are.
    assert_eq!(uri("coap://a!$'()*+,;=b/").host, name("a!$'()*+,;=b"));
    assert_eq!(
        uri("coap://a!$'()*+,;=b/").to_string(),
        "coap://a!$'()*+,;=b/"
    );
    // Non-ASCII is percent-encoded again in the text form.
    assert_eq!(
        uri("coap://caf%c3%a9.example/").to_string(),
        "coap://caf%C3%A9.example/"
    );
}

#[test]
fn ipv4_and_ipv6_hosts() {
    let u = uri("coap://192.0.2.1:1234/x");
    assert_eq!(u.host, ip("192.0.2.1"));
    assert_eq!(u.socket_addr(), Some("192.0.2.1:1234".parse().unwrap()));
    let u = uri("coap://[::1]/");
    assert_eq!(u.host, ip("::1"));
    assert_eq!(u.socket_addr(), Some("[::1]:5683".parse().unwrap()));
    assert_eq!(u.to_string(), "coap://[::1]/");
    let u = uri("coap://[2001:DB8::A]/");
    assert_eq!(u.to_string(), "coap://[2001:db8::a]/");
    let u = uri("coap://[::ffff:192.0.2.1]:9/");
    assert_eq!(u.host, ip("::ffff:192.0.2.1"));
    assert_eq!(uri("coap://h.example/").socket_addr(), None);
}

#[test]
fn ipv6_zones() {
    let u = uri("coap://[fe80::1%25eth0]:5684/x");
    assert_eq!(
        u.host,
        Host::Ip {
            addr: "fe80::1".parse().unwrap(),
            zone: Some("eth0".into())
        }
    );
    assert_eq!(u.to_string(), "coap://[fe80::1%25eth0]:5684/x");
    let Some(SocketAddr::V6(sa)) = u.socket_addr() else {
        panic!()
    };
    assert_eq!((sa.port(), sa.scope_id()), (5684, 0));
    let u = uri("coap://[fe80::1%253]/");
    let Some(SocketAddr::V6(sa)) = u.socket_addr() else {
        panic!()
    };
    assert_eq!(sa.scope_id(), 3);
    assert_eq!(u.to_string(), "coap://[fe80::1%253]/");
    // A zone with characters that must be encoded.
    let u = uri("coap://[fe80::1%25en%2F1]/");
    assert_eq!(
        u.host,
        Host::Ip {
            addr: "fe80::1".parse().unwrap(),
            zone: Some("en/1".into())
        }
    );
    assert_eq!(u.to_string(), "coap://[fe80::1%25en%2F1]/");
    assert_eq!(uri(&u.to_string()), u);
    // Zones are not sent: the host is an IP literal.
    assert!(options_of(&u).is_empty());
}

#[test]
fn paths() {
    let cases: &[(&str, &[&str])] = &[
        ("coap://h", &[]),
        ("coap://h/", &[]),
        ("coap://h?q", &[]),
        ("coap://h/a", &["a"]),
        ("coap://h/a/", &["a", ""]),
        ("coap://h//", &["", ""]),
        ("coap://h/a//b", &["a", "", "b"]),
        ("coap://h/a/./b", &["a", "b"]),
        ("coap://h/a/b/.", &["a", "b", ""]),
        ("coap://h/a/b/..", &["a", ""]),
        ("coap://h/a/../b", &["b"]),
        ("coap://h/a/..", &[]),
        ("coap://h/..", &[]),
        ("coap://h/../../a", &["a"]),
        ("coap://h/.", &[]),
        ("coap://h/a/%2E%2e/b", &["b"]),
        ("coap://h/a/%2E/b", &["a", "b"]),
        ("coap://h/a//..", &["a", ""]),
        ("coap://h/.a/..b/...", &[".a", "..b", "..."]),
        ("coap://h/a%2Fb/c%3Fd", &["a/b", "c?d"]),
        ("coap://h/%25/%20", &["%", " "]),
        ("coap://h/:@!$&'()*+,;=", &[":@!$&'()*+,;="]),
        ("coap://h/%C3%A9t%C3%A9", &["été"]),
    ];
    for (s, path) in cases {
        assert_eq!(uri(s).path, *path, "{s}");
    }
    // No Uri-Path for the root.
    assert!(options_of(&uri("coap://[::1]/")).is_empty());
    assert!(options_of(&uri("coap://[::1]")).is_empty());
    assert_eq!(
        options_of(&uri("coap://[::1]/a/")),
        [(11, b"a".to_vec()), (11, Vec::new())]
    );
}

#[test]
fn queries() {
    let cases: &[(&str, &[&str])] = &[
        ("coap://h/", &[]),
        ("coap://h/?", &[""]),
        ("coap://h/?a", &["a"]),
        ("coap://h?a=1&b", &["a=1", "b"]),
        ("coap://h/?a&&b&", &["a", "", "b", ""]),
        ("coap://h/?a%26b=%3D", &["a&b=="]),
        ("coap://h/?x=/y?z", &["x=/y?z"]),
        ("coap://h/?%C3%A9=%20", &["é= "]),
    ];
    for (s, query) in cases {
        let u = uri(s);
        assert_eq!(u.query, *query, "{s}");
        assert_eq!(uri(&u.to_string()), u, "{s}");
    }
    assert_eq!(uri("coap://h/?").to_string(), "coap://h/?");
    assert_eq!(
        options_of(&uri("coap://[::1]/?a=1&b")),
        [(15, b"a=1".to_vec()), (15, b"b".to_vec())]
    );
}

#[test]
fn display_composition() {
    let u = Uri {
        scheme: Scheme::Coap,
        host: ip("::1"),
        port: 5684,
        path: strings(&["a/b"]),
        query: strings(&["q=1"]),
    };
    assert_eq!(u.to_string(), "coap://[::1]:5684/a%2Fb?q=1");
    assert_eq!(u.path_and_query(), "/a%2Fb?q=1");
    let u = Uri {
        scheme: Scheme::Coaps,
        host: name("ex.org"),
        port: 5684,
        path: strings(&["a b", "100%", "x?y#z", "é", "~-._:@"]),
        query: strings(&["k=v&w", "p/q?r", "#", " "]),
    };
    assert_eq!(
        u.to_string(),
        "coaps://ex.org/a%20b/100%25/x%3Fy%23z/%C3%A9/~-._:@?k=v%26w&p/q?r&%23&%20"
    );
    assert_eq!(uri(&u.to_string()), u);
    let root = Uri {
        path: Vec::new(),
        query: Vec::new(),
        ..u.clone()
    };
    assert_eq!(root.path_and_query(), "/");
    assert_eq!(format!("{}", ip("10.0.0.1")), "10.0.0.1");
    assert_eq!(format!("{}", name("a b")), "a%20b");
    assert_eq!("coap://h/x".parse::<Uri>(), Ok(uri("coap://h/x")));
}

#[test]
fn round_trips() {
    for s in [
        "coap://h/",
        "coap://example.com:61616/a//b/?x&y=1",
        "coaps://[fe80::1%25eth0]:1/%25%2F%3F",
        "coap://192.0.2.1/a%20b?c%26d",
        "coap://caf%C3%A9/%E2%82%AC?%E2%82%AC",
        "coap://h/a/?",
        "coap://h//",
        "coap://h/?&",
    ] {
        let u = uri(s);
        assert_eq!(u.to_string(), s);
        assert_eq!(uri(&u.to_string()), u, "{s}");
        assert_eq!(via_options(&u), u, "{s}");
    }
}

#[test]
fn path_and_query_from_options() {
    assert_eq!(path_from_options([]), "/");
    assert_eq!(path_from_options([b"".as_slice()]), "/");
    assert_eq!(path_from_options([b"a".as_slice(), b""]), "/a/");
    assert_eq!(
        path_from_options([b"a/b".as_slice(), b"?", b"%", b"#"]),
        "/a%2Fb/%3F/%25/%23"
    );
    // Bytes that are not UTF-8 are percent-encoded, as is UTF-8 text outside ASCII.
    assert_eq!(path_from_options([b"\xff\xfe".as_slice()]), "/%FF%FE");
    assert_eq!(path_from_options(["é".as_bytes()]), "/%C3%A9");
    assert_eq!(query_from_options([]), "");
    assert_eq!(query_from_options([b"a=1".as_slice(), b"b"]), "a=1&b");
    assert_eq!(query_from_options([b"&=?/".as_slice()]), "%26=?/");
    assert_eq!(query_from_options([b"\x00\x7f".as_slice()]), "%00%7F");
    // Every byte survives encoding and parsing.
    let all: Vec<u8> = (0..=255).collect();
    let text = format!(
        "coap://h{}?{}",
        path_from_options([all.as_slice()]),
        query_from_options([all.as_slice()])
    );
    assert_eq!(
        err(&text),
        UriError::InvalidUtf8 { component: "path" },
        "bytes that are not UTF-8 encode but cannot come back as text"
    );
    let ascii: Vec<u8> = (0..128).collect();
    let text = format!(
        "coap://h{}?{}",
        path_from_options([ascii.as_slice()]),
        query_from_options([ascii.as_slice()])
    );
    let u = uri(&text);
    assert_eq!(u.path, [String::from_utf8(ascii.clone()).unwrap()]);
    assert_eq!(u.query, [String::from_utf8(ascii).unwrap()]);
}

#[test]
fn set_path_and_query_cases() {
    let set = |r: &str| {
        let mut opts = Options::new();
        opts.push(OptionNumber::URI_PATH, "old");
        opts.push(OptionNumber::URI_QUERY, "old");
        opts.push(OptionNumber::URI_HOST, "kept");
        set_path_and_query(&mut opts, r).map(|()| {
            assert_eq!(opts.get(OptionNumber::URI_HOST), Some(&b"kept"[..]));
            let path: Vec<_> = opts
                .get_all(OptionNumber::URI_PATH)
                .map(<[u8]>::to_vec)
                .collect();
            let query: Vec<_> = opts
                .get_all(OptionNumber::URI_QUERY)
                .map(<[u8]>::to_vec)
                .collect();
            (path, query)
        })
    };
    let bytes = |v: &[&str]| v.iter().map(|s| s.as_bytes().to_vec()).collect::<Vec<_>>();
    assert_eq!(set(""), Ok((vec![], vec![])));
    assert_eq!(set("/"), Ok((vec![], vec![])));
    assert_eq!(
        set("/a/b?x=1&y"),
        Ok((bytes(&["a", "b"]), bytes(&["x=1", "y"])))
    );
    assert_eq!(set("a/b"), Ok((bytes(&["a", "b"]), vec![])));
    assert_eq!(set("?x"), Ok((vec![], bytes(&["x"]))));
    assert_eq!(set("//a"), Ok((bytes(&["", "a"]), vec![])));
    assert_eq!(set("../a/./b/"), Ok((bytes(&["a", "b", ""]), vec![])));
    assert_eq!(set("/a:b"), Ok((bytes(&["a:b"]), vec![])));
    assert_eq!(set("./a:b"), Ok((bytes(&["a:b"]), vec![])));
    assert_eq!(set("/%2F?%26"), Ok((bytes(&["/"]), bytes(&["&"]))));
    assert_eq!(set("a#f"), Err(UriError::Fragment));
    assert_eq!(set("coap://h/x"), Err(UriError::NotRelative));
    assert_eq!(set("a:b/c"), Err(UriError::NotRelative));
    assert_eq!(
        set("/a b"),
        Err(UriError::InvalidChar {
            ch: ' ',
            component: "path"
        })
    );
    assert_eq!(
        set("/%zz"),
        Err(UriError::BadPercentEncoding { component: "path" })
    );
    // Left untouched on error.
    let mut opts = Options::new();
    opts.push(OptionNumber::URI_PATH, "old");
    assert!(set_path_and_query(&mut opts, "/new?%").is_err());
    assert_eq!(opts.get(OptionNumber::URI_PATH), Some(&b"old"[..]));
    // Round trip with path_and_query, including an empty first segment.
    for s in ["coap://h//a?b", "coap://h/a%3Ab/c?", "coap://h/x/"] {
        let u = uri(s);
        let mut opts = Options::new();
        set_path_and_query(&mut opts, &u.path_and_query()).unwrap();
        let mut expected = Options::new();
        u.to_options(&mut expected);
        expected.remove(OptionNumber::URI_HOST);
        assert!(opts.iter().eq(expected.iter()), "{s}");
    }
}

#[test]
fn from_options_overrides_and_defaults() {
    let dest = ip("2001:db8::1");
    let opts: Options = [
        (OptionNumber::URI_PATH, &b"a"[..]),
        (OptionNumber::URI_QUERY, b"q"),
        (OptionNumber::CONTENT_FORMAT, b"\x00"),
    ]
    .into_iter()
    .collect();
    let u = Uri::from_options(Scheme::Coap, dest.clone(), 40000, opts.iter()).unwrap();
    assert_eq!(u.host, dest);
    assert_eq!(u.port, 40000);
    assert_eq!(u.to_string(), "coap://[2001:db8::1]:40000/a?q");

    let mut with_host = opts.clone();
    with_host.push(OptionNumber::URI_HOST, "Sensors.Example");
    with_host.push_uint(OptionNumber::URI_PORT, 5683);
    let u = Uri::from_options(Scheme::Coap, dest.clone(), 40000, with_host.iter()).unwrap();
    assert_eq!(u.host, name("sensors.example"));
    assert_eq!(u.port, 5683);
    assert_eq!(u.to_string(), "coap://sensors.example/a?q");

    let from_host = |h: &[u8]| {
        Uri::from_options(
            Scheme::Coap,
            dest.clone(),
            5683,
            [(OptionNumber::URI_HOST, h)],
        )
        .map(|u| u.host)
    };
    assert_eq!(from_host(b"192.0.2.7"), Ok(ip("192.0.2.7")));
    assert_eq!(from_host(b"[::2]"), Ok(ip("::2")));
    assert_eq!(
        from_host(b"[fe80::1%25lo]"),
        Ok(Host::Ip {
            addr: "fe80::1".parse().unwrap(),
            zone: Some("lo".into())
        })
    );
    assert_eq!(from_host("é.example".as_bytes()), Ok(name("é.example")));
    assert_eq!(from_host(b""), Err(UriError::EmptyHost));
    assert_eq!(
        from_host(b"a/b"),
        Err(UriError::InvalidChar {
            ch: '/',
            component: "Uri-Host option"
        })
    );
    assert_eq!(
        from_host(b"a%41"),
        Err(UriError::InvalidChar {
            ch: '%',
            component: "Uri-Host option"
        })
    );
    assert_eq!(
        from_host(b"\xff"),
        Err(UriError::InvalidUtf8 {
            component: "Uri-Host option"
        })
    );
    assert_eq!(
        from_host(&[b'a'; 256]),
        Err(UriError::TooLong {
            component: "Uri-Host option",
            len: 256
        })
    );
    assert!(matches!(
        from_host(b"[::1"),
        Err(UriError::BadIpLiteral { .. })
    ));
    assert!(matches!(
        from_host(b"[1.2.3.4]"),
        Err(UriError::BadIpLiteral { .. })
    ));

    // Uri-Port of 0 to 2 bytes.
    let port = |v: &[u8]| {
        Uri::from_options(Scheme::Coap, dest.clone(), 9, [(OptionNumber::URI_PORT, v)])
            .map(|u| u.port)
    };
    assert_eq!(port(b""), Ok(0));
    assert_eq!(port(b"\x16\x33"), Ok(5683));
    assert_eq!(port(b"\xff\xff"), Ok(65535));
    assert_eq!(port(b"\x00\x01\x00"), Err(UriError::PortOptionTooLong(3)));
}

#[test]
fn from_options_errors() {
    let dest = ip("::1");
    let run = |opts: &[(OptionNumber, &[u8])]| {
        Uri::from_options(Scheme::Coap, dest.clone(), 5683, opts.iter().copied())
    };
    assert_eq!(
        run(&[
            (OptionNumber::URI_HOST, b"a"),
            (OptionNumber::URI_HOST, b"b")
        ]),
        Err(UriError::RepeatedOption(OptionNumber::URI_HOST))
    );
    assert_eq!(
        run(&[
            (OptionNumber::URI_PORT, b"\x01"),
            (OptionNumber::URI_PORT, b"\x02")
        ]),
        Err(UriError::RepeatedOption(OptionNumber::URI_PORT))
    );
    assert_eq!(
        run(&[(OptionNumber::URI_PATH, b".")]),
        Err(UriError::DotSegment)
    );
    assert_eq!(
        run(&[
            (OptionNumber::URI_PATH, b"a"),
            (OptionNumber::URI_PATH, b"..")
        ]),
        Err(UriError::DotSegment)
    );
    assert_eq!(
        run(&[(OptionNumber::URI_PATH, b"\xc3")]),
        Err(UriError::InvalidUtf8 {
            component: "Uri-Path option"
        })
    );
    assert_eq!(
        run(&[(OptionNumber::URI_QUERY, b"\x80")]),
        Err(UriError::InvalidUtf8 {
            component: "Uri-Query option"
        })
    );
    assert_eq!(
        run(&[(OptionNumber::URI_QUERY, &[b'q'; 300])]),
        Err(UriError::TooLong {
            component: "Uri-Query option",
            len: 300
        })
    );
    // A lone empty Uri-Path is the root; "..." and ".a" are ordinary segments.
    assert_eq!(
        run(&[(OptionNumber::URI_PATH, b"")]).unwrap().path,
        Vec::<String>::new()
    );
    assert_eq!(
        run(&[
            (OptionNumber::URI_PATH, b"..."),
            (OptionNumber::URI_PATH, b".a")
        ])
        .unwrap()
        .path,
        ["...", ".a"]
    );
}

#[test]
fn parse_errors() {
    assert_eq!(err(""), UriError::NotAbsolute);
    assert_eq!(err("/a/b"), UriError::NotAbsolute);
    assert_eq!(err("example.com/x"), UriError::NotAbsolute);
    assert_eq!(err("1coap://h/"), UriError::NotAbsolute);
    assert_eq!(err("://h/"), UriError::NotAbsolute);
    assert_eq!(err("http://h/"), UriError::UnsupportedScheme("http".into()));
    assert_eq!(
        err("coap+tcp://h/"),
        UriError::UnsupportedScheme("coap+tcp".into())
    );
    assert_eq!(err("coap:h/x"), UriError::MissingAuthority);
    assert_eq!(err("coap:/h/x"), UriError::MissingAuthority);
    assert_eq!(err("coap://h/x#frag"), UriError::Fragment);
    assert_eq!(err("coap://h/#"), UriError::Fragment);
    assert_eq!(err("coap://user@h/"), UriError::UserInfo);
    assert_eq!(err("coap:///x"), UriError::EmptyHost);
    assert_eq!(err("coap://:5683/x"), UriError::EmptyHost);
    assert_eq!(err("coap://h:x/"), UriError::BadPort("x".into()));
    assert_eq!(err("coap://h:65536/"), UriError::BadPort("65536".into()));
    assert_eq!(
        err("coap://h:99999999999999999999/"),
        UriError::BadPort("99999999999999999999".into())
    );
    assert_eq!(err("coap://h:-1/"), UriError::BadPort("-1".into()));
    assert_eq!(err("coap://h:+1/"), UriError::BadPort("+1".into()));
    assert_eq!(err("coap://h:1:2/"), UriError::BadPort("1:2".into()));
    assert_eq!(err("coap://[::1]:1:2/"), UriError::BadPort("1:2".into()));
    let bad_ip = |s: &str| match err(s) {
        UriError::BadIpLiteral { reason, .. } => reason,
        e => panic!("{s}: {e:?}"),
    };
    assert_eq!(bad_ip("coap://[::1/"), "the closing ']' is missing");
    assert_eq!(bad_ip("coap://[::g]/"), "not a valid IPv6 address");
    assert_eq!(bad_ip("coap://[]/"), "not a valid IPv6 address");
    assert_eq!(bad_ip("coap://[192.0.2.1]/"), "not a valid IPv6 address");
    assert_eq!(
        bad_ip("coap://[v1.fe80::a+en1]/"),
        "IPvFuture addresses are not supported"
    );
    assert_eq!(
        bad_ip("coap://[fe80::1%eth0]/"),
        "a zone must be introduced by \"%25\" (RFC 6874)"
    );
    assert_eq!(
        bad_ip("coap://[fe80::1%25]/"),
        "the zone after \"%25\" is empty"
    );
    assert_eq!(
        err("coap://[fe80::1%25a:b]/"),
        UriError::InvalidChar {
            ch: ':',
            component: "IPv6 zone"
        }
    );
    assert_eq!(
        err("coap://[fe80::1%25%ff]/"),
        UriError::InvalidUtf8 {
            component: "IPv6 zone"
        }
    );
    assert_eq!(
        err("coap://[::1]x/"),
        UriError::InvalidChar {
            ch: 'x',
            component: "authority after the IP literal"
        }
    );
    assert_eq!(
        err("coap://h_[x]/"),
        UriError::InvalidChar {
            ch: '[',
            component: "host"
        }
    );
    assert_eq!(
        err("coap://é/"),
        UriError::InvalidChar {
            ch: 'é',
            component: "host"
        }
    );
    assert_eq!(
        err("coap://a%2Fb/"),
        UriError::InvalidChar {
            ch: '/',
            component: "host (after percent-decoding)"
        }
    );
    assert_eq!(
        err("coap://a%ff/"),
        UriError::InvalidUtf8 { component: "host" }
    );
    assert_eq!(
        err("coap://a%4/"),
        UriError::BadPercentEncoding { component: "host" }
    );
    assert_eq!(
        err("coap://h/a%"),
        UriError::BadPercentEncoding { component: "path" }
    );
    assert_eq!(
        err("coap://h/a%g0"),
        UriError::BadPercentEncoding { component: "path" }
    );
    assert_eq!(
        err("coap://h/?%2"),
        UriError::BadPercentEncoding { component: "query" }
    );
    assert_eq!(
        err("coap://h/%C3%28"),
        UriError::InvalidUtf8 { component: "path" }
    );
    assert_eq!(
        err("coap://h/?%80"),
        UriError::InvalidUtf8 { component: "query" }
    );
    assert_eq!(
        err("coap://h/a b"),
        UriError::InvalidChar {
            ch: ' ',
            component: "path"
        }
    );
    assert_eq!(
        err("coap://h/[x]"),
        UriError::InvalidChar {
            ch: '[',
            component: "path"
        }
    );
    assert_eq!(
        err("coap://h/é"),
        UriError::InvalidChar {
            ch: 'é',
            component: "path"
        }
    );
    assert_eq!(
        err("coap://h/?a b"),
        UriError::InvalidChar {
            ch: ' ',
            component: "query"
        }
    );
    let long = "x".repeat(256);
    assert_eq!(
        err(&format!("coap://h/{long}")),
        UriError::TooLong {
            component: "path segment",
            len: 256
        }
    );
    assert_eq!(
        err(&format!("coap://h/?{long}")),
        UriError::TooLong {
            component: "query item",
            len: 256
        }
    );
    assert_eq!(
        err(&format!("coap://{long}/")),
        UriError::TooLong {
            component: "host",
            len: 256
        }
    );
    // 255 bytes fit; a long segment removed by ".." is no error; lengths are decoded.
    let max = "x".repeat(255);
    assert_eq!(
        uri(&format!("coap://{max}/{max}?{max}")).path,
        [max.as_str()]
    );
    assert_eq!(
        uri(&format!("coap://h/{long}/..")).path,
        Vec::<String>::new()
    );
    assert_eq!(
        uri(&format!("coap://h/{}", "%41".repeat(255))).path[0].len(),
        255
    );
}

#[test]
fn error_messages() {
    let cases = [
        (UriError::NotAbsolute, "scheme"),
        (UriError::UnsupportedScheme("http".into()), "\"http\""),
        (UriError::MissingAuthority, "\"//\""),
        (UriError::Fragment, "fragment"),
        (UriError::UserInfo, "user information"),
        (UriError::EmptyHost, "host is empty"),
        (UriError::BadPort("x".into()), "65535"),
        (UriError::PortOptionTooLong(3), "3 bytes"),
        (
            UriError::BadIpLiteral {
                literal: "::g".into(),
                reason: "not a valid IPv6 address",
            },
            "[::g]: not a valid IPv6 address",
        ),
        (
            UriError::InvalidChar {
                ch: ' ',
                component: "path",
            },
            "' ' is not allowed in the path",
        ),
        (
            UriError::BadPercentEncoding { component: "query" },
            "in the query",
        ),
        (
            UriError::InvalidUtf8 { component: "path" },
            "path is not valid UTF-8",
        ),
        (
            UriError::TooLong {
                component: "path segment",
                len: 300,
            },
            "300 bytes",
        ),
        (UriError::DotSegment, "\"..\""),
        (
            UriError::RepeatedOption(OptionNumber::URI_HOST),
            "more than once",
        ),
        (UriError::NotRelative, "':'"),
    ];
    for (e, part) in cases {
        let text = e.to_string();
        assert!(text.contains(part), "{text:?} lacks {part:?}");
    }
}

struct XorShift(u64);

impl XorShift {
    fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// Inputs made of arbitrary bytes, and of URI-shaped pieces to reach deeper.
fn arbitrary_inputs() -> impl Iterator<Item = String> {
    const PIECES: &[&str] = &[
        "coap://", "coaps://", "COAP:", "//", "[", "]", "::1", "fe80::1", "%25", "%", "%2", "%2F",
        "%2E", "%C3%A9", "%ff", "eth0", ":", "5683", "99999", "/", "/", "?", "&", "=", "#", ".",
        "..", "@", "a", "B", "1.2.3.4", "é", " ", "v1.x", "\u{0}", "-",
    ];
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    (0..20_000).map(move |i| {
        let len = rng.below(24);
        if i % 2 == 0 {
            let bytes: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
            let mut s = String::from_utf8_lossy(&bytes).into_owned();
            if i % 4 == 0 {
                s.insert_str(0, "coap://");
            }
            s
        } else {
            (0..len).map(|_| PIECES[rng.below(PIECES.len())]).collect()
        }
    })
}

#[test]
fn arbitrary_input_never_panics() {
    let mut parsed = 0;
    for s in arbitrary_inputs() {
        if let Ok(u) = Uri::parse(&s) {
            parsed += 1;
            let text = u.to_string();
            assert_eq!(uri(&text), u, "{s:?} -> {text:?}");
            assert_eq!(via_options(&u), u, "{s:?}");
            let _ = u.socket_addr();
        }
        let mut opts = Options::new();
        if set_path_and_query(&mut opts, &s).is_ok() {
            let path = path_from_options(opts.get_all(OptionNumber::URI_PATH));
            let query = query_from_options(opts.get_all(OptionNumber::URI_QUERY));
            let text = format!("coap://h{path}?{query}");
            assert!(Uri::parse(&text).is_ok(), "{s:?} -> {text:?}");
        }
        let _ = Uri::from_options(
            Scheme::Coaps,
            name("h"),
            1,
            [
                (OptionNumber::URI_HOST, s.as_bytes()),
                (OptionNumber::URI_PORT, s.as_bytes()),
                (OptionNumber::URI_PATH, s.as_bytes()),
                (OptionNumber::URI_QUERY, s.as_bytes()),
            ],
        );
    }
    assert!(parsed > 100, "only {parsed} inputs parsed");
}

#[test]
fn arbitrary_option_bytes_never_panic() {
    let mut rng = XorShift(0x2545_F491_4F6C_DD1D);
    for _ in 0..5_000 {
        let mut opts = Options::new();
        for _ in 0..rng.below(6) {
            let number = [3, 7, 11, 15, 12][rng.below(5)];
            let value: Vec<u8> = (0..rng.below(8)).map(|_| rng.next_u64() as u8).collect();
            opts.push(OptionNumber(number), value);
        }
        if let Ok(u) = Uri::from_options(Scheme::Coap, ip("::1"), 5683, opts.iter()) {
            assert_eq!(uri(&u.to_string()), u);
        }
        let _ = path_from_options(opts.get_all(OptionNumber::URI_PATH));
        let _ = query_from_options(opts.get_all(OptionNumber::URI_QUERY));
    }
}

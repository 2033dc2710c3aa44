//! RFC 8613 Appendix C test vectors, and scenarios between a client and a server context.

use super::cose::{aad, nonce, MAX_SEQUENCE};
use super::*;
use crate::message::{Message, OptionNumber};

fn h(s: &str) -> Vec<u8> {
    assert!(s.len() % 2 == 0);
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

const SECRET: &str = "0102030405060708090a0b0c0d0e0f10";
const SALT: &str = "9e7ca92223786340";
const ID_CONTEXT: &str = "37cbf3210017a2d3";

/// Test vector contexts: C.1 (`salt`), C.2 (no salt), C.3 (`salt` and ID Context).
fn params(sender: &[u8], recipient: &[u8], salt: bool, id_context: bool) -> ContextParams {
    let mut p = ContextParams::new(sender, recipient, h(SECRET));
    if salt {
        p.master_salt = h(SALT);
    }
    if id_context {
        p.id_context = Some(h(ID_CONTEXT));
    }
    p
}

fn ctx(sender: &[u8], recipient: &[u8], salt: bool, id_context: bool) -> SecurityContext {
    SecurityContext::new(params(sender, recipient, salt, id_context)).unwrap()
}

struct Derived {
    sender_key: &'static str,
    recipient_key: &'static str,
    common_iv: &'static str,
    sender_nonce: &'static str,
    recipient_nonce: &'static str,
}

fn check_derivation(c: &SecurityContext, d: &Derived) {
    assert_eq!(c.sender_key(), h(d.sender_key));
    assert_eq!(c.recipient_key(), h(d.recipient_key));
    assert_eq!(c.common_iv(), h(d.common_iv));
    assert_eq!(
        nonce(c.common_iv(), c.sender_id(), &[0]).unwrap(),
        h(d.sender_nonce)
    );
    assert_eq!(
        nonce(c.common_iv(), c.recipient_id(), &[0]).unwrap(),
        h(d.recipient_nonce)
    );
}

#[test]
fn c1_key_derivation_with_master_salt() {
    let client = Derived {
        sender_key: "f0910ed7295e6ad4b54fc793154302ff",
        recipient_key: "ffb14e093c94c9cac9471648b4f98710",
        common_iv: "4622d4dd6d944168eefb54987c",
        sender_nonce: "4622d4dd6d944168eefb54987c",
        recipient_nonce: "4722d4dd6d944169eefb54987c",
    };
    check_derivation(&ctx(&[], &[1], true, false), &client);
    let server = Derived {
        sender_key: client.recipient_key,
        recipient_key: client.sender_key,
        common_iv: client.common_iv,
        sender_nonce: client.recipient_nonce,
        recipient_nonce: client.sender_nonce,
    };
    check_derivation(&ctx(&[1], &[], true, false), &server);
}

#[test]
fn c2_key_derivation_without_master_salt() {
    let client = Derived {
        sender_key: "321b26943253c7ffb6003b0b64d74041",
        recipient_key: "e57b5635815177cd679ab4bcec9d7dda",
        common_iv: "be35ae297d2dace910c52e99f9",
        sender_nonce: "bf35ae297d2dace910c52e99f9",
        recipient_nonce: "bf35ae297d2dace810c52e99f9",
    };
    check_derivation(&ctx(&[0], &[1], false, false), &client);
    let server = Derived {
        sender_key: client.recipient_key,
        recipient_key: client.sender_key,
        common_iv: client.common_iv,
        sender_nonce: client.recipient_nonce,
        recipient_nonce: client.sender_nonce,
    };
    check_derivation(&ctx(&[1], &[0], false, false), &server);
}

#[test]
fn c3_key_derivation_with_id_context() {
    let client = Derived {
        sender_key: "af2a1300a5e95788b356336eeecd2b92",
        recipient_key: "e39a0c7c77b43f03b4b39ab9a268699f",
        common_iv: "2ca58fb85ff1b81c0b7181b85e",
        sender_nonce: "2ca58fb85ff1b81c0b7181b85e",
        recipient_nonce: "2da58fb85ff1b81d0b7181b85e",
    };
    check_derivation(&ctx(&[], &[1], true, true), &client);
    let server = Derived {
        sender_key: client.recipient_key,
        recipient_key: client.sender_key,
        common_iv: client.common_iv,
        sender_nonce: client.recipient_nonce,
        recipient_nonce: client.sender_nonce,
    };
    check_derivation(&ctx(&[1], &[], true, true), &server);
}

/// Protects the request in `unprotected` and returns the whole OSCORE message's bytes.
fn protect_datagram(c: &mut SecurityContext, unprotected: &str) -> (Vec<u8>, RequestBinding) {
    let m = Message::decode(&h(unprotected)).unwrap();
    let (p, binding) = c.protect_request(m.code, &m.options, &m.payload).unwrap();
    (reframe(&m, p), binding)
}

/// The message `m` with the code, options and payload of `p`.
fn reframe(m: &Message, p: Protected) -> Vec<u8> {
    let mut out = m.clone();
    out.code = p.code;
    out.options = p.options;
    out.payload = p.payload;
    out.to_bytes().unwrap()
}

const C4_REQUEST: &str = "44015d1f00003974396c6f63616c686f737483747631";
const C4_PROTECTED: &str = "44025d1f00003974396c6f63616c686f7374620914ff612f1092f1776f1c1668b3825e";

#[test]
fn c4_request_protection() {
    let mut client = ctx(&[], &[1], true, false);
    client.set_sender_sequence(20);
    let (bytes, binding) = protect_datagram(&mut client, C4_REQUEST);
    assert_eq!(bytes, h(C4_PROTECTED));
    assert_eq!(client.sender_sequence(), 21);
    assert_eq!(
        (binding.kid(), binding.partial_iv()),
        (&[][..], &[0x14][..])
    );
    assert!(!binding.is_observation());

    // The server side of the same exchange recovers the original request.
    let mut server = ctx(&[1], &[], true, false);
    let m = Message::decode(&h(C4_PROTECTED)).unwrap();
    let (plain, theirs) = server
        .unprotect_request(m.code, &m.options, &m.payload)
        .unwrap();
    let original = Message::decode(&h(C4_REQUEST)).unwrap();
    assert_eq!(plain.code, original.code);
    assert_eq!(plain.options, original.options);
    assert_eq!(plain.payload, original.payload);
    assert_eq!(plain.partial_iv_seq, Some(20));
    assert_eq!(theirs, binding);
}

#[test]
fn c5_request_protection() {
    let mut client = ctx(&[0], &[1], false, false);
    client.set_sender_sequence(20);
    let (bytes, _) = protect_datagram(&mut client, "440171c30000b932396c6f63616c686f737483747631");
    assert_eq!(
        bytes,
        h("440271c30000b932396c6f63616c686f737463091400ff4ed339a5a379b0b8bc731fffb0")
    );
    let mut server = ctx(&[1], &[0], false, false);
    let m = Message::decode(&bytes).unwrap();
    server
        .unprotect_request(m.code, &m.options, &m.payload)
        .unwrap();
}

#[test]
fn c6_request_protection_with_and_without_kid_context() {
    const REQUEST: &str = "44012f8eef9bbf7a396c6f63616c686f737483747631";
    let mut client = ctx(&[], &[1], true, true);
    client.set_sender_sequence(20);
    let (with, _) = protect_datagram(&mut client, REQUEST);
    assert_eq!(
        with,
        h(concat!(
            "44022f8eef9bbf7a396c6f63616c686f73746b19140837cbf3210017a2d3",
            "ff72cd7273fd331ac45cffbe55c3"
        ))
    );

    // The application may leave the 'kid context' out: same key, nonce and AAD, so the same
    // ciphertext, and an OSCORE option of 0x0914.
    let mut p = params(&[], &[1], true, true);
    p.send_kid_context = false;
    let mut client = SecurityContext::new(p).unwrap();
    client.set_sender_sequence(20);
    let (without, _) = protect_datagram(&mut client, REQUEST);
    assert_eq!(
        without,
        h("44022f8eef9bbf7a396c6f63616c686f7374620914ff72cd7273fd331ac45cffbe55c3")
    );

    // The server takes both; a context without that ID Context takes neither.
    for bytes in [&with, &without] {
        let mut server = ctx(&[1], &[], true, true);
        let m = Message::decode(bytes).unwrap();
        let (plain, _) = server
            .unprotect_request(m.code, &m.options, &m.payload)
            .unwrap();
        assert_eq!(plain.options.get(OptionNumber::URI_PATH), Some(&b"tv1"[..]));
    }
    let mut other = ctx(&[1], &[], true, false);
    let m = Message::decode(&with).unwrap();
    assert_eq!(
        other.unprotect_request(m.code, &m.options, &m.payload),
        Err(OscoreError::UnknownContext)
    );
    let m = Message::decode(&without).unwrap();
    assert_eq!(
        other.unprotect_request(m.code, &m.options, &m.payload),
        Err(OscoreError::DecryptionFailed)
    );
}

const C7_RESPONSE: &str = "64455d1f00003974ff48656c6c6f20576f726c6421";

/// The server of C.1 after verifying the request of C.4, and the binding.
fn c4_server() -> (SecurityContext, RequestBinding) {
    let mut server = ctx(&[1], &[], true, false);
    let m = Message::decode(&h(C4_PROTECTED)).unwrap();
    let (_, binding) = server
        .unprotect_request(m.code, &m.options, &m.payload)
        .unwrap();
    (server, binding)
}

fn c4_client() -> (SecurityContext, RequestBinding) {
    let mut client = ctx(&[], &[1], true, false);
    client.set_sender_sequence(20);
    let (_, binding) = protect_datagram(&mut client, C4_REQUEST);
    (client, binding)
}

fn check_response(own_partial_iv: bool, expected: &str) {
    let (mut server, binding) = c4_server();
    let m = Message::decode(&h(C7_RESPONSE)).unwrap();
    let p = server
        .protect_response(&binding, m.code, &m.options, &m.payload, own_partial_iv)
        .unwrap();
    let bytes = reframe(&m, p);
    assert_eq!(bytes, h(expected));

    let (mut client, binding) = c4_client();
    let r = Message::decode(&bytes).unwrap();
    let plain = client
        .unprotect_response(&binding, r.code, &r.options, &r.payload)
        .unwrap();
    assert_eq!(plain.code, Code::CONTENT);
    assert!(plain.options.is_empty());
    assert_eq!(plain.payload, b"Hello World!");
    assert_eq!(plain.partial_iv_seq, own_partial_iv.then_some(0));
}

#[test]
fn c7_response_without_partial_iv() {
    check_response(
        false,
        "64445d1f0000397490ffdbaad1e9a7e7b2a813d3c31524378303cdafae119106",
    );
}

#[test]
fn c8_response_with_partial_iv() {
    check_response(
        true,
        "64445d1f00003974920100ff4d4c13669384b67354b2b6175ff4b8658c666a6cf88e",
    );
}

// ---- Scenarios -----------------------------------------------------------------------

fn pair(alg: Algorithm) -> (SecurityContext, SecurityContext) {
    let mut c = ContextParams::new(b"c".to_vec(), b"s".to_vec(), [0x42; 32]);
    c.master_salt = b"salt".to_vec();
    c.algorithm = alg;
    let mut s = c.clone();
    std::mem::swap(&mut s.sender_id, &mut s.recipient_id);
    (
        SecurityContext::new(c).unwrap(),
        SecurityContext::new(s).unwrap(),
    )
}

fn request_options(path: &str) -> Options {
    let mut o = Options::new();
    o.push(OptionNumber::URI_HOST, "example.com");
    o.push(OptionNumber::URI_PATH, path);
    o.push_uint(OptionNumber::CONTENT_FORMAT, 0);
    o
}

fn unprotect(
    server: &mut SecurityContext,
    p: &Protected,
) -> Result<(Plain, RequestBinding), OscoreError> {
    server.unprotect_request(p.code, &p.options, &p.payload)
}

#[test]
fn round_trip_for_every_algorithm() {
    for alg in [
        Algorithm::AesCcm16_64_128,
        Algorithm::AesCcm16_128_128,
        Algorithm::A128Gcm,
    ] {
        let (mut client, mut server) = pair(alg);
        let options = request_options("round");
        let (req, binding) = client
            .protect_request(Code::PUT, &options, b"request body")
            .unwrap();
        assert_eq!(
            req.payload.len(),
            1 + "round".len() + 1 + 2 + 12 + alg.tag_len()
        );
        assert_eq!(
            req.options.get(OptionNumber::URI_HOST),
            Some(&b"example.com"[..])
        );
        let (plain, theirs) = unprotect(&mut server, &req).unwrap();
        assert_eq!(plain.code, Code::PUT);
        assert_eq!(plain.options, options);
        assert_eq!(plain.payload, b"request body");

        let mut ro = Options::new();
        ro.push_uint(OptionNumber::MAX_AGE, 30);
        for own in [false, true] {
            let resp = server
                .protect_response(&theirs, Code::CHANGED, &ro, b"done", own)
                .unwrap();
            assert_eq!(resp.code, Code::CHANGED);
            assert!(!resp.options.contains(OptionNumber::MAX_AGE));
            let plain = client
                .unprotect_response(&binding, resp.code, &resp.options, &resp.payload)
                .unwrap();
            assert_eq!(
                (plain.code, &plain.options, &plain.payload[..]),
                (Code::CHANGED, &ro, &b"done"[..])
            );
        }
    }
}

#[test]
fn replay_is_rejected_after_decryption() {
    let (mut client, mut server) = pair(Algorithm::default());
    let (req, _) = client
        .protect_request(Code::POST, &request_options("x"), b"once")
        .unwrap();
    unprotect(&mut server, &req).unwrap();
    let err = unprotect(&mut server, &req).unwrap_err();
    assert_eq!(err, OscoreError::Replay);
    assert_eq!(
        err.response(),
        Some((Code::UNAUTHORIZED, "Replay detected"))
    );

    // A forgery with a used sequence number is a decryption failure, not a replay, and does
    // not touch the window.
    let (req2, _) = client
        .protect_request(Code::POST, &request_options("x"), b"twice")
        .unwrap();
    let mut forged = req2.clone();
    *forged.payload.last_mut().unwrap() ^= 1;
    assert_eq!(
        unprotect(&mut server, &forged).unwrap_err(),
        OscoreError::DecryptionFailed
    );
    unprotect(&mut server, &req2).unwrap();
}

#[test]
fn window_slides() {
    let (mut client, mut server) = pair(Algorithm::default());
    let mut at = |seq: u64| {
        client.set_sender_sequence(seq);
        client
            .protect_request(Code::GET, &request_options("w"), b"")
            .unwrap()
            .0
    };
    let (old, within, ahead, next) = (at(60), at(90), at(100), at(101));
    unprotect(&mut server, &ahead).unwrap();
    let (plain, _) = unprotect(&mut server, &within).unwrap();
    assert_eq!(plain.partial_iv_seq, Some(90));
    assert_eq!(
        unprotect(&mut server, &within).unwrap_err(),
        OscoreError::Replay
    );
    assert_eq!(
        unprotect(&mut server, &old).unwrap_err(),
        OscoreError::Replay
    );
    unprotect(&mut server, &next).unwrap();
}

#[test]
fn tampering_is_detected() {
    let (mut client, mut server) = pair(Algorithm::default());
    let (req, _) = client
        .protect_request(Code::POST, &request_options("t"), b"payload")
        .unwrap();
    for i in 0..req.payload.len() {
        let mut t = req.clone();
        t.payload[i] ^= 0x80;
        assert_eq!(
            unprotect(&mut server, &t).unwrap_err(),
            OscoreError::DecryptionFailed,
            "byte {i}"
        );
    }
    // Another Partial IV means another nonce.
    let mut t = req.clone();
    t.options.set(OptionNumber::OSCORE, [0x09, 0x07, b'c']);
    assert_eq!(
        unprotect(&mut server, &t).unwrap_err(),
        OscoreError::DecryptionFailed
    );
    // Another kid names another context.
    t.options.set(OptionNumber::OSCORE, [0x09, 0x00, b'x']);
    let err = unprotect(&mut server, &t).unwrap_err();
    assert_eq!(err, OscoreError::UnknownContext);
    assert_eq!(
        err.response(),
        Some((Code::UNAUTHORIZED, "Security context not found"))
    );
    // No kid, no Partial IV, a bad option, none at all.
    for (value, expect) in [
        (&[0x01, 0x00][..], OscoreError::DecodeFailed),
        (&[0x08, b'c'][..], OscoreError::DecodeFailed),
        (&[0x20][..], OscoreError::MalformedOption),
    ] {
        t.options.set(OptionNumber::OSCORE, value);
        let err = unprotect(&mut server, &t).unwrap_err();
        assert_eq!(err, expect);
        assert_eq!(
            err.response(),
            Some((Code::BAD_OPTION, "Failed to decode COSE"))
        );
    }
    t.options.remove(OptionNumber::OSCORE);
    assert_eq!(
        unprotect(&mut server, &t).unwrap_err(),
        OscoreError::NotProtected
    );
    // The untampered request still verifies: failures left the window alone.
    unprotect(&mut server, &req).unwrap();
    assert_eq!(
        OscoreError::DecryptionFailed.response(),
        Some((Code::BAD_REQUEST, "Decryption failed"))
    );
}

#[test]
fn responses_are_bound_to_their_request() {
    let (mut client, mut server) = pair(Algorithm::default());
    let (r1, b1) = client
        .protect_request(Code::GET, &request_options("a"), b"")
        .unwrap();
    let (r2, b2) = client
        .protect_request(Code::GET, &request_options("b"), b"")
        .unwrap();
    let (_, s1) = unprotect(&mut server, &r1).unwrap();
    let (_, s2) = unprotect(&mut server, &r2).unwrap();
    for own in [false, true] {
        let resp = server
            .protect_response(&s1, Code::CONTENT, &Options::new(), b"for 1", own)
            .unwrap();
        assert_eq!(
            client.unprotect_response(&b2, resp.code, &resp.options, &resp.payload),
            Err(OscoreError::DecryptionFailed)
        );
        client
            .unprotect_response(&b1, resp.code, &resp.options, &resp.payload)
            .unwrap();
    }
    // The request's nonce protects one response only: later ones get a Partial IV even
    // when asked not to, through the binding and through clones made afterwards.
    let once = server
        .protect_response(&s2, Code::CONTENT, &Options::new(), b"first", false)
        .unwrap();
    assert_eq!(once.options.get(OptionNumber::OSCORE), Some(&[][..]));
    for binding in [&s2, &s2.clone()] {
        let again = server
            .protect_response(binding, Code::CONTENT, &Options::new(), b"second", false)
            .unwrap();
        assert_eq!(again.options.get(OptionNumber::OSCORE).unwrap()[0], 0x01);
        let plain = client
            .unprotect_response(&b2, again.code, &again.options, &again.payload)
            .unwrap();
        assert_eq!(plain.payload, b"second");
    }
    // Bindings are for one side only.
    assert_eq!(
        client.protect_response(&b1, Code::CONTENT, &Options::new(), b"", false),
        Err(OscoreError::WrongBinding)
    );
    assert_eq!(
        server.unprotect_response(&s2, Code::CONTENT, &Options::new(), b""),
        Err(OscoreError::WrongBinding)
    );
    // An unprotected error response is reported as such.
    assert_eq!(
        client.unprotect_response(&b2, Code::UNAUTHORIZED, &Options::new(), b"Replay detected"),
        Err(OscoreError::NotProtected)
    );
}

#[test]
fn observe_registration_and_notifications() {
    let (mut client, mut server) = pair(Algorithm::default());
    let mut o = request_options("obs");
    o.push_uint(OptionNumber::OBSERVE, 0);
    let (req, binding) = client.protect_request(Code::GET, &o, b"").unwrap();
    assert_eq!(req.code, Code::FETCH);
    assert_eq!(req.options.get_uint(OptionNumber::OBSERVE), Some(0));
    assert!(binding.is_observation());
    let (plain, theirs) = unprotect(&mut server, &req).unwrap();
    assert_eq!(plain.options.get_uint(OptionNumber::OBSERVE), Some(0));
    assert!(theirs.is_observation());

    server.set_sender_sequence(0x0100_0005);
    let mut seen = Vec::new();
    for (i, own) in [false, true, true].into_iter().enumerate() {
        let mut n = Options::new();
        n.push_uint(OptionNumber::OBSERVE, 7 + i as u32);
        let resp = server
            .protect_response(&theirs, Code::CONTENT, &n, format!("v{i}").as_bytes(), own)
            .unwrap();
        assert_eq!(resp.code, Code::CONTENT);
        assert_eq!(
            resp.options.get_uint(OptionNumber::OBSERVE),
            Some(7 + i as u32)
        );
        let plain = client
            .unprotect_response(&binding, resp.code, &resp.options, &resp.payload)
            .unwrap();
        seen.push((
            plain.partial_iv_seq,
            plain.options.get_uint(OptionNumber::OBSERVE),
        ));
    }
    assert_eq!(
        seen,
        [
            (None, Some(0xff_ffff)),
            (Some(0x0100_0005), Some(5)),
            (Some(0x0100_0006), Some(6)),
        ]
    );

    // A response with Observe to a request without is refused.
    let (req, binding) = client
        .protect_request(Code::GET, &request_options("x"), b"")
        .unwrap();
    let (_, theirs) = unprotect(&mut server, &req).unwrap();
    assert!(!theirs.is_observation());
    let mut n = Options::new();
    n.push_uint(OptionNumber::OBSERVE, 1);
    let resp = server
        .protect_response(&theirs, Code::CONTENT, &n, b"", true)
        .unwrap();
    assert_eq!(
        client.unprotect_response(&binding, resp.code, &resp.options, &resp.payload),
        Err(OscoreError::UnexpectedObserve)
    );
}

#[test]
fn proxy_uri_request() {
    let (mut client, mut server) = pair(Algorithm::default());
    let mut o = Options::new();
    o.push(OptionNumber::PROXY_URI, "coap://example.com:1234/a/b?q=1");
    let (req, _) = client.protect_request(Code::GET, &o, b"").unwrap();
    assert_eq!(
        req.options.get_str(OptionNumber::PROXY_URI),
        Some("coap://example.com:1234")
    );
    let (plain, _) = unprotect(&mut server, &req).unwrap();
    let path: Vec<_> = plain.options.get_all(OptionNumber::URI_PATH).collect();
    assert_eq!(path, [&b"a"[..], b"b"]);
    assert_eq!(plain.options.get_str(OptionNumber::URI_QUERY), Some("q=1"));
    assert_eq!(
        plain.options.get_str(OptionNumber::PROXY_URI),
        Some("coap://example.com:1234")
    );
}

#[test]
fn restart_recovers_with_echo() {
    // B.1.2: the server lost its replay window.
    let (mut client, mut server) = pair(Algorithm::default());
    let (first, _) = client
        .protect_request(Code::POST, &request_options("e"), b"1")
        .unwrap();
    unprotect(&mut server, &first).unwrap();

    server.replay_window_uninitialized();
    assert!(!server.replay_window_initialized());
    let (req, binding) = client
        .protect_request(Code::POST, &request_options("e"), b"2")
        .unwrap();
    let Err(OscoreError::ReplayWindowUninitialized(u)) = unprotect(&mut server, &req) else {
        panic!("expected an uninitialized window");
    };
    assert_eq!(u.plain.payload, b"2");
    assert_eq!(u.sequence, 1);
    assert_eq!(
        OscoreError::ReplayWindowUninitialized(u.clone()).response(),
        None
    );
    // The replay of an old request is just as unverifiable.
    assert!(matches!(
        unprotect(&mut server, &first),
        Err(OscoreError::ReplayWindowUninitialized(_))
    ));

    // 4.01 with Echo, protected with a Partial IV of the server's own even though asked
    // not to: the request may be a replay whose nonce already protected a response.
    let mut echo = Options::new();
    echo.push(OptionNumber::ECHO, b"challenge");
    let resp = server
        .protect_response(&u.binding, Code::UNAUTHORIZED, &echo, b"", false)
        .unwrap();
    let answer = client
        .unprotect_response(&binding, resp.code, &resp.options, &resp.payload)
        .unwrap();
    assert_eq!(answer.code, Code::UNAUTHORIZED);
    assert!(answer.partial_iv_seq.is_some());
    assert_eq!(
        answer.options.get(OptionNumber::ECHO),
        Some(&b"challenge"[..])
    );

    // The client repeats with the Echo value; the server finds it and accepts.
    let mut o = request_options("e");
    o.push(OptionNumber::ECHO, b"challenge");
    let (retry, _) = client.protect_request(Code::POST, &o, b"2").unwrap();
    let Err(OscoreError::ReplayWindowUninitialized(u)) = unprotect(&mut server, &retry) else {
        panic!("expected an uninitialized window");
    };
    assert_eq!(
        u.plain.options.get(OptionNumber::ECHO),
        Some(&b"challenge"[..])
    );
    let (plain, theirs) = server.accept_fresh(*u.clone()).unwrap();
    assert_eq!(plain.payload, b"2");
    assert!(server.replay_window_initialized());
    // Now the response may reuse the request's nonce.
    let resp = server
        .protect_response(&theirs, Code::CHANGED, &Options::new(), b"", false)
        .unwrap();
    assert_eq!(resp.options.get(OptionNumber::OSCORE), Some(&[][..]));
    // Everything up to the fresh request is rejected from now on; later ones pass.
    for old in [&first, &req, &retry] {
        assert_eq!(
            unprotect(&mut server, old).unwrap_err(),
            OscoreError::Replay
        );
    }
    assert_eq!(server.accept_fresh(*u), Err(OscoreError::Replay));
    let (later, _) = client
        .protect_request(Code::POST, &request_options("e"), b"3")
        .unwrap();
    unprotect(&mut server, &later).unwrap();
}

#[test]
fn client_window_initialized_by_a_fresh_response() {
    let (mut client, mut server) = pair(Algorithm::default());
    server.set_sender_sequence(40);
    client.replay_window_uninitialized();
    let (req, binding) = client
        .protect_request(Code::GET, &request_options("x"), b"")
        .unwrap();
    let (_, theirs) = unprotect(&mut server, &req).unwrap();
    let resp = server
        .protect_response(&theirs, Code::CONTENT, &Options::new(), b"", true)
        .unwrap();
    client
        .unprotect_response(&binding, resp.code, &resp.options, &resp.payload)
        .unwrap();
    assert!(client.replay_window_initialized());
    // The server's requests above 40 are fresh to the client; 40 and below are not.
    let (srv_req, _) = server
        .protect_request(Code::GET, &request_options("y"), b"")
        .unwrap();
    unprotect(&mut client, &srv_req).unwrap();
}

#[test]
fn persistence_never_reuses_a_sequence_number() {
    let mut p = ContextParams::new(b"c".to_vec(), b"s".to_vec(), [7; 16]);
    p.persist_step = 8;
    let mut server_p = p.clone();
    std::mem::swap(&mut server_p.sender_id, &mut server_p.recipient_id);
    server_p.persist_step = 0;
    let mut server = SecurityContext::new(server_p).unwrap();

    let mut stored: Option<u64> = None; // "non-volatile memory"
    let mut client = SecurityContext::new(p.clone()).unwrap();
    let mut confirmed = 0;
    let mut used = std::collections::BTreeSet::new();
    let mut rng = 0x1234_5678_9abc_def0u64;
    for round in 0..400 {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        // Sometimes the store is slow; sometimes the process crashes.
        if rng % 3 != 0 {
            if let Some(b) = client.pending_persist() {
                stored = Some(b);
                client.confirm_persisted(b);
                confirmed = confirmed.max(b);
            }
        }
        let _ = client.take_persist_request();
        if rng % 17 == 0 {
            client = SecurityContext::new(p.clone()).unwrap();
            if let Some(b) = stored {
                client.set_sender_sequence(b);
            }
            confirmed = 0;
            continue;
        }
        match client.protect_request(Code::GET, &request_options("p"), b"") {
            Ok((req, _)) => {
                let seq = unprotect(&mut server, &req)
                    .unwrap_or_else(|e| panic!("round {round}: {e}"))
                    .0
                    .partial_iv_seq
                    .unwrap();
                assert!(
                    seq < confirmed,
                    "round {round}: {seq} not below {confirmed}"
                );
                assert!(used.insert(seq), "round {round}: {seq} reused");
            }
            Err(OscoreError::SequencePersistPending) => {}
            Err(e) => panic!("{e}"),
        }
    }
    assert!(used.len() > 100, "{}", used.len());
}

#[test]
fn sequence_numbers_run_out() {
    let (mut client, mut server) = pair(Algorithm::default());
    client.set_sender_sequence(MAX_SEQUENCE);
    let (req, _) = client
        .protect_request(Code::GET, &request_options("z"), b"")
        .unwrap();
    assert_eq!(
        req.options.get(OptionNumber::OSCORE),
        Some(&[0x0d, 0xff, 0xff, 0xff, 0xff, 0xff, b'c'][..])
    );
    let (plain, theirs) = unprotect(&mut server, &req).unwrap();
    assert_eq!(plain.partial_iv_seq, Some(MAX_SEQUENCE));
    assert_eq!(
        client.protect_request(Code::GET, &request_options("z"), b""),
        Err(OscoreError::SequenceExhausted)
    );
    // A server that has run out can still answer with the request's nonce.
    server.set_sender_sequence(MAX_SEQUENCE + 1);
    server
        .protect_response(&theirs, Code::CONTENT, &Options::new(), b"", false)
        .unwrap();
    assert_eq!(
        server.protect_response(&theirs, Code::CONTENT, &Options::new(), b"", true),
        Err(OscoreError::SequenceExhausted)
    );
}

#[test]
fn parameter_and_input_errors() {
    let p = |s: &[u8], r: &[u8]| ContextParams::new(s, r, [1; 16]);
    assert_eq!(
        SecurityContext::new(p(&[0; 8], &[1])).unwrap_err(),
        OscoreError::IdTooLong { len: 8, max: 7 }
    );
    let mut gcm = p(&[0; 7], &[1]);
    gcm.algorithm = Algorithm::A128Gcm;
    assert_eq!(
        SecurityContext::new(gcm).unwrap_err(),
        OscoreError::IdTooLong { len: 7, max: 6 }
    );
    SecurityContext::new(p(&[0; 7], &[])).unwrap();
    assert!(matches!(
        SecurityContext::new(p(&[1], &[1])),
        Err(OscoreError::InvalidParams(_))
    ));
    assert!(matches!(
        SecurityContext::new(ContextParams::new([1], [2], [])),
        Err(OscoreError::InvalidParams(_))
    ));
    let mut w = p(&[1], &[2]);
    w.replay_window = 0;
    assert!(matches!(
        SecurityContext::new(w),
        Err(OscoreError::InvalidParams(_))
    ));
    let mut c = p(&[1], &[2]);
    c.id_context = Some(vec![0; 256]);
    assert!(matches!(
        SecurityContext::new(c.clone()),
        Err(OscoreError::InvalidParams(_))
    ));
    c.send_kid_context = false;
    SecurityContext::new(c).unwrap();

    let (mut client, mut server) = pair(Algorithm::default());
    assert_eq!(
        client.protect_request(Code::CONTENT, &Options::new(), b""),
        Err(OscoreError::CodeMismatch(Code::CONTENT))
    );
    let mut nested = Options::new();
    nested.push(OptionNumber::OSCORE, []);
    assert_eq!(
        client.protect_request(Code::GET, &nested, b""),
        Err(OscoreError::NestedOscore)
    );
    // Nothing was spent on the failures.
    assert_eq!(client.sender_sequence(), 0);
    let (req, _) = client
        .protect_request(Code::GET, &Options::new(), b"")
        .unwrap();
    let (_, theirs) = unprotect(&mut server, &req).unwrap();
    assert_eq!(
        server.protect_response(&theirs, Code::GET, &Options::new(), b"", false),
        Err(OscoreError::CodeMismatch(Code::GET))
    );
    // AES-CCM with a 13-byte nonce encrypts at most 65535 bytes; AES-GCM more.
    let big = vec![0u8; 70_000];
    assert_eq!(
        client.protect_request(Code::POST, &Options::new(), &big),
        Err(OscoreError::MessageTooLong)
    );
    let (mut gc, mut gs) = pair(Algorithm::A128Gcm);
    let (req, _) = gc
        .protect_request(Code::POST, &Options::new(), &big)
        .unwrap();
    assert_eq!(unprotect(&mut gs, &req).unwrap().0.payload.len(), big.len());
    // Debug output shows no secrets.
    let dbg = format!("{client:?} {:?}", ContextParams::new([1], [2], [0xab; 4]));
    assert!(!dbg.contains("abab"), "{dbg}");
}

/// A small deterministic generator for the robustness tests.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn bytes(&mut self, max: usize) -> Vec<u8> {
        let len = self.below(max + 1);
        (0..len).map(|_| self.next() as u8).collect()
    }
}

#[test]
fn garbage_never_panics() {
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let (mut client, mut server) = pair(Algorithm::default());
    let (req, binding) = client
        .protect_request(Code::POST, &request_options("fuzz"), b"payload")
        .unwrap();
    let (_, theirs) = unprotect(&mut server, &req).unwrap();
    let resp = server
        .protect_response(&theirs, Code::CONTENT, &Options::new(), b"answer", true)
        .unwrap();
    let mut frame = Message::new(crate::message::Type::Con, req.code, 1);
    frame.options = req.options.clone();
    frame.payload = req.payload.clone();
    let datagram = frame.to_bytes().unwrap();

    for _ in 0..5000 {
        // Random OSCORE option values with the real payload, and random payloads.
        let mut o = req.options.clone();
        o.set(OptionNumber::OSCORE, rng.bytes(12));
        let payload = if rng.below(2) == 0 {
            req.payload.clone()
        } else {
            rng.bytes(40)
        };
        let _ = OscoreOption::parse(o.get(OptionNumber::OSCORE).unwrap());
        let _ = server.unprotect_request(req.code, &o, &payload);
        let _ = client.unprotect_response(&binding, resp.code, &o, &payload);

        // Truncations and bit flips of the whole datagram, decoded as a receiver would.
        let mut d = datagram.clone();
        d.truncate(rng.below(d.len() + 1));
        if !d.is_empty() && rng.below(2) == 0 {
            let i = rng.below(d.len());
            d[i] ^= 1 << rng.below(8);
        }
        if let Ok(m) = Message::decode(&d) {
            assert!(server
                .unprotect_request(m.code, &m.options, &m.payload)
                .is_err());
            let _ = client.unprotect_response(&binding, m.code, &m.options, &m.payload);
        }

        // Random plaintexts: a peer with the keys sending nonsense.
        let pt = rng.bytes(30);
        if let Some(ct) = Algorithm::default().seal(
            server.recipient_key(),
            &nonce(server.common_iv(), b"c", &[0x55]).unwrap(),
            &aad(Algorithm::default(), b"c", &[0x55]),
            &pt,
        ) {
            let mut o = Options::new();
            o.push(OptionNumber::OSCORE, [0x09, 0x55, b'c']);
            let mut fresh = pair(Algorithm::default()).1;
            let _ = fresh.unprotect_request(Code::POST, &o, &ct);
        }
    }
    // After all that, the genuine response still verifies.
    client
        .unprotect_response(&binding, resp.code, &resp.options, &resp.payload)
        .unwrap();
}

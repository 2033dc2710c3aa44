//! The Uri-Host and Uri-Port options our clients put on the wire (RFC 7252 §6.4 steps 5 and
//! 7): none for what equals the destination. Both callers of `Uri::to_options_for` are
//! checked, the async facade and the C ABI, against a raw socket that reads the request.

mod common;

use std::net::UdpSocket;
use std::time::Duration;

use coapio::message::{Code, Message, OptionNumber};
use coapio::proto::Request;

use common::udp6_client;

/// A socket on `[::1]` that receives one request and never answers, and its port.
fn peer() -> (UdpSocket, u16) {
    let sock = UdpSocket::bind("[::1]:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let port = sock.local_addr().unwrap().port();
    (sock, port)
}

/// The Uri-Host, Uri-Port and Uri-Path options of the next request `sock` receives.
fn uri_options(sock: &UdpSocket) -> (Option<Vec<u8>>, Option<u32>, Vec<Vec<u8>>) {
    let mut buf = [0u8; 1500];
    let (n, _) = sock.recv_from(&mut buf).expect("no request arrived");
    let m = Message::decode(&buf[..n]).unwrap();
    (
        m.options.get(OptionNumber::URI_HOST).map(<[u8]>::to_vec),
        m.options.get_uint(OptionNumber::URI_PORT),
        m.options
            .get_all(OptionNumber::URI_PATH)
            .map(<[u8]>::to_vec)
            .collect(),
    )
}

#[test]
fn facade_sends_no_uri_host_or_port_for_the_destination() {
    let (sock, port) = peer();
    let client = udp6_client();
    // The request future is dropped at once: the request is on the wire by then or soon.
    let fut = client.ep.request(
        &format!("coap://[::1]:{port}/x"),
        Request::new(Code::GET).non_confirmable(),
    );
    let got = common::block_on_within(Duration::from_secs(5), async {
        let _ = futures::future::select(
            Box::pin(fut),
            async_io::Timer::after(Duration::from_millis(200)),
        )
        .await;
        uri_options(&sock)
    });
    assert_eq!(got, (None, None, vec![b"x".to_vec()]));
    client.stop();
}

#[cfg(feature = "capi")]
#[test]
fn c_requests_send_no_uri_host_or_port_for_the_destination() {
    use coapio::ffi::*;
    use std::ffi::CString;
    use std::ptr::{null, null_mut};

    let (sock, port) = peer();
    let mut ctx = null_mut();
    assert_eq!(
        coapio_context_new(null(), &mut ctx),
        coapio_result::COAPIO_RESULT_OK
    );
    let uri = CString::new(format!("coap://[::1]:{port}/x")).unwrap();
    let mut req = null_mut();
    assert_eq!(
        coapio_request_new(
            coapio_method::COAPIO_METHOD_GET as u32,
            uri.as_ptr(),
            &mut req
        ),
        coapio_result::COAPIO_RESULT_OK
    );
    assert_eq!(
        coapio_context_send(ctx, req, None, null_mut(), null_mut()),
        coapio_result::COAPIO_RESULT_OK
    );
    assert_eq!(uri_options(&sock), (None, None, vec![b"x".to_vec()]));
    coapio_context_free(ctx);
}

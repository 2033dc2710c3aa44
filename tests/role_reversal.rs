//! simple6 with a site (role reversal): a device whose endpoint runs on simple6 talks to a
//! server (here a plain UDP socket acting as a resource directory), and the server's request
//! back to the address the device's request came from is served by the device's site over
//! the same socket. Nobody else reaches the site.

mod common;

use std::net::UdpSocket;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use coapio::message::{Code, Message, OptionNumber, Token, Type};
use coapio::proto::Response;
use coapio::server::{get, Site};
use coapio::{Endpoint, TransportKind};

use common::{block_on_within, text, Running};

fn message(ty: Type, code: Code, mid: u16, token: &[u8], path: &str) -> Message {
    let mut m = Message::new(ty, code, mid);
    m.token = Token::from_slice(token).unwrap();
    if !path.is_empty() {
        m.options.push(OptionNumber::URI_PATH, path);
    }
    m
}

fn send(socket: &UdpSocket, m: &Message, to: std::net::SocketAddr) {
    let mut buf = Vec::new();
    m.encode(&mut buf).unwrap();
    socket.send_to(&buf, to).unwrap();
}

/// The next CoAP message on `socket` and where it came from, or `None` after `within`.
fn receive(socket: &UdpSocket, within: Duration) -> Option<(Message, std::net::SocketAddr)> {
    socket.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0; 1500];
    loop {
        match socket.recv_from(&mut buf) {
            Ok((n, from)) => return Some((Message::decode(&buf[..n]).unwrap(), from)),
            // An ICMP error from an earlier datagram of ours: not an answer.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => continue,
            Err(_) => return None,
        }
    }
}

#[test]
fn simple6_serves_the_server_it_registered_with_and_nobody_else() {
    let served = Arc::new(AtomicUsize::new(0));
    let counter = served.clone();
    let site = Site::new().resource(
        "/sensor",
        get(move |_req| {
            counter.fetch_add(1, Ordering::SeqCst);
            async { Response::content("21.5 C") }
        }),
    );
    let device = Running::spawn(
        Endpoint::builder()
            .transport(TransportKind::Simple6)
            .site(site)
            .build()
            .expect("simple6 with a site"),
    );

    let directory = UdpSocket::bind("127.0.0.1:0").unwrap();
    let directory_addr = directory.local_addr().unwrap();
    let other = UdpSocket::bind("127.0.0.1:0").unwrap();
    let server_side = std::thread::spawn(move || {
        // The registration: answered 2.01 Created, piggybacked.
        let (reg, device_addr) =
            receive(&directory, Duration::from_secs(5)).expect("no registration");
        assert_eq!(reg.code, Code::POST);
        let mut created = message(
            Type::Ack,
            Code::CREATED,
            reg.message_id,
            reg.token.as_bytes(),
            "",
        );
        created.options.push(OptionNumber::LOCATION_PATH, "rd");
        send(&directory, &created, device_addr);

        // The directory asks the device, at the address it registered from.
        send(
            &directory,
            &message(Type::Con, Code::GET, 0x7001, b"rd1", "sensor"),
            device_addr,
        );
        let (answer, from) = receive(&directory, Duration::from_secs(5)).expect("no answer");
        assert_eq!(from, device_addr);
        assert_eq!((answer.ty, answer.code), (Type::Ack, Code::CONTENT));
        assert_eq!(
            (answer.message_id, answer.token.as_bytes()),
            (0x7001, &b"rd1"[..])
        );
        assert_eq!(answer.payload, b"21.5 C");
        // Its retransmission is answered from the deduplication cache, not served again.
        send(
            &directory,
            &message(Type::Con, Code::GET, 0x7001, b"rd1", "sensor"),
            device_addr,
        );
        let (again, _) = receive(&directory, Duration::from_secs(5)).expect("no repeated answer");
        assert_eq!(
            (again.message_id, again.payload),
            (0x7001, b"21.5 C".to_vec())
        );
        // A path the device does not have.
        send(
            &directory,
            &message(Type::Con, Code::GET, 0x7002, b"rd2", "other"),
            device_addr,
        );
        let (missing, _) = receive(&directory, Duration::from_secs(5)).expect("no 4.04");
        assert_eq!(missing.code, Code::NOT_FOUND);

        // Somebody else, at the same address and port: the connected socket never delivers
        // it, so no answer comes.
        send(
            &other,
            &message(Type::Con, Code::GET, 0x7003, b"x", "sensor"),
            device_addr,
        );
        assert!(receive(&other, Duration::from_millis(500)).is_none());
    });

    let uri = format!("coap://{directory_addr}/rd?ep=node1");
    let response = block_on_within(
        Duration::from_secs(10),
        device.ep.post(&uri, b"</sensor>".to_vec()),
    )
    .expect("registration");
    assert_eq!(response.code, Code::CREATED, "{}", text(&response));
    server_side.join().unwrap();
    assert_eq!(served.load(Ordering::SeqCst), 1);
    device.stop();
}

#[test]
fn simple6_refuses_a_bind_address() {
    let e = Endpoint::builder()
        .transport(TransportKind::Simple6)
        .bind("127.0.0.1:5683".parse().unwrap())
        .build()
        .unwrap_err();
    assert!(matches!(e, coapio::Error::Unsupported(_)), "{e:?}");
    assert!(e.to_string().contains("simple6 cannot bind"), "{e}");
}

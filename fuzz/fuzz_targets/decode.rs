//! Decodes arbitrary bytes. A datagram that decodes must encode back to exactly the same bytes,
//! through the borrowed `MessageRef` and through the owned `Message`, and `Message::decode` must
//! agree with `MessageRef::decode` in success and in error.

#![no_main]

use coapio::message::{peek_header, Message, MessageRef};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = peek_header(data);
    match MessageRef::decode(data) {
        Ok(m) => {
            let mut buf = Vec::with_capacity(data.len());
            m.encode(&mut buf);
            assert_eq!(buf, data, "MessageRef re-encoding differs");

            let owned = m.to_owned();
            buf.clear();
            owned.encode(&mut buf).expect("a decoded message encodes");
            assert_eq!(buf, data, "Message re-encoding differs");
            assert_eq!(owned.to_bytes().as_deref(), Ok(data));

            assert_eq!(Message::decode(data).as_ref(), Ok(&owned));
            assert!(owned.options.iter().eq(m.options.iter()));
            assert_eq!(owned.options.len(), m.options.iter().count());
            for (number, _) in m.options.iter() {
                assert!(m.options.get_all(number).eq(owned.options.get_all(number)));
                assert_eq!(m.options.get_uint(number), owned.options.get_uint(number));
            }
            assert_eq!(
                (m.ty, m.code, m.message_id, m.token, m.payload),
                (
                    owned.ty,
                    owned.code,
                    owned.message_id,
                    owned.token,
                    &owned.payload[..]
                )
            );
            let _ = format!("{m:?} {owned:?} {}", m.code);
        }
        Err(e) => {
            assert_eq!(Message::decode(data), Err(e));
            let _ = e.to_string();
        }
    }
});

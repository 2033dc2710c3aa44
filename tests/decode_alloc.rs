//! Decoding a request allocates nothing: the decoded message borrows from the datagram.
//!
//! A counting global allocator sees every allocation of this test binary; the test checks that
//! none happens while a typical request (and a large response) is decoded and its options and
//! payload are read.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use coapio::message::{Code, Message, MessageRef, OptionNumber, Token, Type};

struct Counting;

thread_local! {
    // Only this thread's allocations count: the test harness's threads allocate too.
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

fn allocations() -> usize {
    ALLOCATIONS.with(Cell::get)
}

// SAFETY: forwards every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, which we pass on.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` through `alloc` above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn decoding_allocates_nothing() {
    let mut get = Message::new(Type::Con, Code::GET, 0x1234);
    get.token = Token::from_slice(&[1, 2, 3, 4]).unwrap();
    get.options.push(OptionNumber::URI_PATH, "sensors");
    get.options.push(OptionNumber::URI_PATH, "temperature");
    get.options.push(OptionNumber::URI_QUERY, "unit=C");
    let get = get.to_bytes().unwrap();
    let mut resp = Message::new(Type::Ack, Code::CONTENT, 0x1234);
    resp.options.push_uint(OptionNumber::CONTENT_FORMAT, 50);
    resp.options.push(OptionNumber::ETAG, [9; 8]);
    resp.options.push_uint(OptionNumber::MAX_AGE, 3600);
    resp.payload = vec![b'x'; 1024];
    let resp = resp.to_bytes().unwrap();

    let before = allocations();
    let mut seen = 0usize;
    for _ in 0..1000 {
        for datagram in [&get[..], &resp[..]] {
            let m = MessageRef::decode(std::hint::black_box(datagram)).unwrap();
            seen += m
                .options
                .iter()
                .map(|(n, v)| usize::from(n.0) + v.len())
                .sum::<usize>();
            seen += m.payload.len() + m.token.len();
            seen += m.options.get_all(OptionNumber::URI_PATH).count();
        }
    }
    let after = allocations();
    assert!(seen > 0);
    assert_eq!(
        after - before,
        0,
        "decoding allocated {} times",
        after - before
    );
}

//! Block-wise transfers (RFC 7959) as small state machines the endpoint drives: a client
//! transfer that uploads with Block1 and downloads with Block2, the server's table of uploads
//! in progress, and the server's cache of large representations served block by block.
//!
//! Everything here is bounded by configuration: the largest body, the number of uploads and of
//! cached representations, and how long they live.

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::message::{BlockValue, Code, OptionNumber, Options, OptionsRef};
use crate::proto::Failure;

use super::types::{Request, Response};

/// Options that describe a block-wise transfer rather than the resource.
const TRANSFER_OPTIONS: [OptionNumber; 5] = [
    OptionNumber::BLOCK1,
    OptionNumber::BLOCK2,
    OptionNumber::SIZE1,
    OptionNumber::SIZE2,
    OptionNumber::REQUEST_TAG,
];

fn is_transfer_option(n: OptionNumber) -> bool {
    TRANSFER_OPTIONS.contains(&n)
}

/// A hash of what identifies a resource representation: method, the cache-key options other
/// than the block-wise ones (<https://www.rfc-editor.org/rfc/rfc7959#section-2.10>), and for
/// FETCH the body, which is part of its cache key (RFC 8132 §2).
pub(crate) fn request_key<'a>(
    method: Code,
    options: impl Iterator<Item = (OptionNumber, &'a [u8])>,
    payload: &[u8],
) -> u64 {
    let mut h = DefaultHasher::new();
    method.0.hash(&mut h);
    if method == Code::FETCH {
        payload.hash(&mut h);
    }
    for (n, v) in options {
        if !n.is_no_cache_key() && !is_transfer_option(n) && n != OptionNumber::OBSERVE {
            n.0.hash(&mut h);
            v.hash(&mut h);
        }
    }
    h.finish()
}

/// The block option `number` of a message, if present and valid.
pub(crate) fn block_of(
    options: OptionsRef<'_>,
    number: OptionNumber,
) -> Option<Result<BlockValue, ()>> {
    options
        .get(number)
        .map(|v| BlockValue::from_bytes(v).map_err(|_| ()))
}

fn block_opt(opts: &Options, number: OptionNumber) -> Option<BlockValue> {
    opts.get(number)
        .and_then(|v| BlockValue::from_bytes(v).ok())
}

/// A short content hash, used as ETag when a large representation has none, so that a
/// client can tell its blocks belong together.
pub(crate) fn content_etag(payload: &[u8]) -> [u8; 4] {
    let mut h = DefaultHasher::new();
    payload.hash(&mut h);
    (h.finish() as u32).to_be_bytes()
}

/// Cuts block `block` (of the size its SZX says) out of a whole response: code and options
/// of the whole, Block2 with M set when more follows, Size2 on the first block, an ETag when
/// the whole has none. `None` when the block starts past the end.
pub(crate) fn cut_block2(whole: &Response, block: BlockValue) -> Option<Response> {
    let offset = block.offset();
    let len = whole.payload.len();
    if offset >= len && !(offset == 0 && len == 0) {
        return None;
    }
    let end = (offset + block.size()).min(len);
    let more = end < len;
    let mut r = Response::new(whole.code);
    r.options = whole.options.clone();
    r.options.remove(OptionNumber::BLOCK2);
    if !r.options.contains(OptionNumber::ETAG) {
        r.options
            .push(OptionNumber::ETAG, content_etag(&whole.payload));
    }
    let value = BlockValue::new(block.num(), more, block.szx()).ok()?;
    r.options.push_uint(OptionNumber::BLOCK2, value.to_uint());
    if block.num() == 0 {
        r.options.set_uint(OptionNumber::SIZE2, len as u32);
    }
    r.payload = whole.payload[offset..end].to_vec();
    Some(r)
}

/// What a client transfer wants next.
#[derive(Debug)]
pub(crate) enum Step {
    /// Send this request (the next block).
    Send(Request),
    /// The transfer is over.
    Done(Result<Response, Failure>),
}

/// One request as the caller sees it, carried out as several block-wise exchanges.
#[derive(Debug)]
pub(crate) struct ClientTransfer {
    pub(crate) remote: SocketAddr,
    /// The request as the caller made it (with its whole payload).
    original: Request,
    /// Block1 upload state: the size exponent in use and the next block number.
    upload: Option<(u8, u32)>,
    restarted: bool,
    /// The representation received so far (Block2).
    body: Vec<u8>,
    etag: Option<Vec<u8>>,
    /// The first block's response (its code and options make the final response).
    head: Option<Response>,
    max_body: usize,
}

impl ClientTransfer {
    /// A transfer for `original`; returns it with the first request to send. `block_size` is
    /// the preferred block size for the upload.
    pub(crate) fn upload(
        remote: SocketAddr,
        original: Request,
        block_size: usize,
        max_body: usize,
    ) -> (Self, Request) {
        let szx = BlockValue::szx_for_size(block_size);
        let t = Self {
            remote,
            original,
            upload: Some((szx, 0)),
            restarted: false,
            body: Vec::new(),
            etag: None,
            head: None,
            max_body,
        };
        let first = t.block1_request(szx, 0);
        (t, first)
    }

    /// A transfer that continues a download: the response to `original` came as the first
    /// block of a larger representation.
    pub(crate) fn download(remote: SocketAddr, original: Request, max_body: usize) -> Self {
        Self {
            remote,
            original,
            upload: None,
            restarted: false,
            body: Vec::new(),
            etag: None,
            head: None,
            max_body,
        }
    }

    fn block1_request(&self, szx: u8, num: u32) -> Request {
        let size = 1usize << (szx + 4);
        let total = self.original.payload.len();
        let start = (num as usize * size).min(total);
        let end = (start + size).min(total);
        // Each byte of the body is copied once, into its block (not the whole body per block).
        let mut r = Request {
            method: self.original.method,
            options: self.original.options.clone(),
            payload: self.original.payload[start..end].to_vec(),
            confirmable: self.original.confirmable,
            timeout: self.original.timeout,
            token_length: self.original.token_length,
            oscore: self.original.oscore,
        };
        r.options.remove(OptionNumber::BLOCK1);
        r.options.remove(OptionNumber::BLOCK2);
        let more = end < total;
        if let Ok(b) = BlockValue::new(num, more, szx) {
            r.options.push_uint(OptionNumber::BLOCK1, b.to_uint());
        }
        if num == 0 {
            r.options.set_uint(OptionNumber::SIZE1, total as u32);
        }
        r
    }

    fn block2_request(&self, num: u32, szx: u8) -> Request {
        // A FETCH's body is part of what it asks for: every block's request carries it
        // (RFC 8132 §2.3.2); other methods' later blocks need no body.
        let payload = if self.original.method == Code::FETCH {
            self.original.payload.clone()
        } else {
            Vec::new()
        };
        let mut r = Request {
            method: self.original.method,
            options: self.original.options.clone(),
            payload,
            confirmable: self.original.confirmable,
            timeout: self.original.timeout,
            token_length: self.original.token_length,
            oscore: self.original.oscore,
        };
        // A Request-Tag stays: the later blocks of the response belong to the same
        // operation as the request that had it (RFC 9175 §3.3).
        for n in TRANSFER_OPTIONS {
            if n != OptionNumber::REQUEST_TAG {
                r.options.remove(n);
            }
        }
        r.options.remove(OptionNumber::OBSERVE);
        if let Ok(b) = BlockValue::new(num, false, szx) {
            r.options.push_uint(OptionNumber::BLOCK2, b.to_uint());
        }
        r
    }

    /// Takes the response to the last request sent.
    pub(crate) fn on_response(&mut self, response: Response) -> Step {
        if let Some((szx, num)) = self.upload {
            let echoed = block_opt(&response.options, OptionNumber::BLOCK1);
            if response.code == Code::CONTINUE {
                // The server may ask for smaller blocks: continue at the same byte offset.
                let (new_szx, acked) = match echoed {
                    Some(b) => (b.szx().min(szx), b.num()),
                    None => (szx, num),
                };
                let next_offset = (acked as usize + 1) * (1usize << (szx + 4));
                if next_offset >= self.original.payload.len() {
                    return Step::Done(Err(Failure::BadResponse(
                        "2.31 Continue after the last block of an upload",
                    )));
                }
                let next_num = (next_offset >> (new_szx + 4)) as u32;
                self.upload = Some((new_szx, next_num));
                // Block numbers have 20 bits: a body that small blocks cannot number fails.
                if BlockValue::new(next_num, false, new_szx).is_err() {
                    return Step::Done(Err(Failure::BadResponse(
                        "the server's block size is too small to number this upload's blocks",
                    )));
                }
                return Step::Send(self.block1_request(new_szx, next_num));
            }
            if response.code == Code::REQUEST_ENTITY_TOO_LARGE && !self.restarted {
                if let Some(b) = echoed.filter(|b| b.szx() < szx) {
                    // The server wants smaller blocks: start again with its size.
                    self.restarted = true;
                    self.upload = Some((b.szx(), 0));
                    let last = self.original.payload.len().saturating_sub(1) >> (b.szx() + 4);
                    if BlockValue::new(last as u32, false, b.szx()).is_err() {
                        return Step::Done(Err(Failure::BadResponse(
                            "the server's block size is too small to number this upload's blocks",
                        )));
                    }
                    return Step::Send(self.block1_request(b.szx(), 0));
                }
            }
            // The final answer to the upload; it may start a download.
            self.upload = None;
        }
        let Some(block) = block_opt(&response.options, OptionNumber::BLOCK2) else {
            if self.head.is_some() {
                return Step::Done(Err(Failure::BadResponse(
                    "a block of a block-wise response came without Block2",
                )));
            }
            return Step::Done(Ok(response));
        };
        if block.offset() != self.body.len() {
            return Step::Done(Err(Failure::BadResponse(
                "a block-wise response skipped or repeated a block",
            )));
        }
        if block.more() && response.payload.len() != block.size() {
            return Step::Done(Err(Failure::BadResponse(
                "a block other than the last of a block-wise response is not full",
            )));
        }
        let etag = response.options.get(OptionNumber::ETAG).map(<[u8]>::to_vec);
        if self.head.is_some() && etag != self.etag {
            return Step::Done(Err(Failure::BadResponse(
                "the representation changed during a block-wise transfer",
            )));
        }
        if self.body.len() + response.payload.len() > self.max_body {
            return Step::Done(Err(Failure::BadResponse(
                "the representation is larger than Config::max_body_size",
            )));
        }
        self.body.extend_from_slice(&response.payload);
        if self.head.is_none() {
            self.etag = etag;
            self.head = Some(response.clone());
        }
        if block.more() {
            let next_num = (self.body.len() >> (block.szx() + 4)) as u32;
            return Step::Send(self.block2_request(next_num, block.szx()));
        }
        // The head's options, the last block's arrival.
        let mut whole = match self.head.take() {
            Some(mut head) => {
                head.received = response.received;
                head
            }
            None => response,
        };
        whole.options.remove(OptionNumber::BLOCK2);
        whole.options.remove(OptionNumber::SIZE2);
        whole.payload = std::mem::take(&mut self.body);
        Step::Done(Ok(whole))
    }
}

/// What the server does with a request that carries Block1.
#[derive(Debug)]
pub(crate) enum UploadStep {
    /// Answer at once (2.31 Continue, or an error), without the application.
    Answer(Response),
    /// The upload is complete: this is the whole request; the response gets this Block1.
    Complete(Request, BlockValue),
}

#[derive(Debug)]
struct Upload {
    body: Vec<u8>,
    next_num: u32,
    szx: u8,
    expires: Instant,
    /// Its place in the activity order (the newest record in `Uploads::order` with it).
    seq: u64,
    /// The last block came and the whole went to the application; the body (but that block)
    /// stays until the answer is known ([`Uploads::finish`]).
    complete: bool,
}

/// What an upload costs besides its body: the map slot and its activity record.
const UPLOAD_COST: usize =
    size_of::<((SocketAddr, u64), Upload)>() * 8 / 7 + size_of::<((SocketAddr, u64), u64)>();

/// The key of an upload: the request's key and its Request-Tag (RFC 9175 §3: blocks with
/// different Request-Tags belong to different uploads; an absent tag differs from an empty
/// one).
pub(crate) fn upload_key(request_key: u64, options: OptionsRef<'_>) -> u64 {
    tagged_key(request_key, options.get(OptionNumber::REQUEST_TAG))
}

/// [`upload_key`] from the request's key and its Request-Tag: also the key under which the
/// server keeps a large representation for serving its later blocks.
pub(crate) fn tagged_key(request_key: u64, request_tag: Option<&[u8]>) -> u64 {
    let mut h = DefaultHasher::new();
    request_key.hash(&mut h);
    request_tag.hash(&mut h);
    h.finish()
}

/// The key under which the server keeps a large answer to `request` for serving its later
/// blocks: what a request for a later block is looked up by ([`upload_key`] of its
/// [`request_key`]).
pub(crate) fn representation_key(request: &Request) -> u64 {
    tagged_key(
        request_key(request.method, request.options.iter(), &request.payload),
        request.options.get(OptionNumber::REQUEST_TAG),
    )
}

/// The server's uploads in progress, by remote and upload key.
///
/// Memory is bounded by a byte budget with a quota per remote, not by a count: when a new
/// upload (or a growing one) needs room, the least recently active unfinished upload goes
/// first (the remote's own when its quota is full). Strangers who start uploads and never
/// finish them therefore cannot lock legitimate uploads out: they only push each other out.
#[derive(Debug)]
pub(crate) struct Uploads {
    map: HashMap<(SocketAddr, u64), Upload>,
    /// Activity order, oldest first; records whose `seq` is no longer the upload's are stale.
    order: VecDeque<((SocketAddr, u64), u64)>,
    per_remote: HashMap<SocketAddr, usize>,
    bytes: usize,
    seq: u64,
    max_body: usize,
    budget: usize,
    quota: usize,
    lifetime: Duration,
}

impl Uploads {
    pub(crate) fn new(max_body: usize, budget: usize, quota: usize, lifetime: Duration) -> Self {
        Self {
            map: HashMap::new(),
            order: VecDeque::new(),
            per_remote: HashMap::new(),
            bytes: 0,
            seq: 0,
            max_body,
            budget,
            quota: quota.min(budget),
            lifetime,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// Bytes held by uploads in progress.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    fn cost(u: &Upload) -> usize {
        UPLOAD_COST + u.body.capacity()
    }

    fn charge(&mut self, remote: SocketAddr, add: usize, sub: usize) {
        self.bytes = self.bytes + add - sub;
        let r = self.per_remote.entry(remote).or_default();
        *r = *r + add - sub;
        if *r == 0 {
            self.per_remote.remove(&remote);
        }
    }

    fn remove(&mut self, key: &(SocketAddr, u64)) -> Option<Upload> {
        let u = self.map.remove(key)?;
        self.charge(key.0, 0, Self::cost(&u));
        Some(u)
    }

    /// Marks `key` as the most recently active upload.
    fn touch(&mut self, key: (SocketAddr, u64)) {
        self.seq += 1;
        let seq = self.seq;
        if let Some(u) = self.map.get_mut(&key) {
            u.seq = seq;
            self.order.push_back((key, seq));
        }
        if self.order.len() > 2 * self.map.len() + 16 {
            let map = &self.map;
            self.order
                .retain(|(k, s)| map.get(k).is_some_and(|u| u.seq == *s));
        }
    }

    /// Forgets the completed upload `key` of `remote`: its answer was not a challenge to send
    /// the last block again. An upload started anew meanwhile stays.
    pub(crate) fn finish(&mut self, remote: SocketAddr, key: u64) {
        let k = (remote, key);
        if self.map.get(&k).is_some_and(|u| u.complete) {
            self.remove(&k);
        }
    }

    /// Drops the uploads idle for their lifetime (the least recently active come first).
    fn purge(&mut self, now: Instant) {
        while let Some(&(key, seq)) = self.order.front() {
            match self.map.get(&key) {
                Some(u) if u.seq == seq && u.expires > now => break,
                Some(u) if u.seq == seq => {
                    self.order.pop_front();
                    self.remove(&key);
                }
                _ => {
                    self.order.pop_front();
                }
            }
        }
    }

    /// Evicts the least recently active uploads other than `keep` (of `remote` only, when
    /// `own`) until `needed` more bytes fit. Returns whether they fit.
    fn make_room(&mut self, keep: (SocketAddr, u64), needed: usize) -> bool {
        let remote = keep.0;
        let fits = |s: &Self| {
            s.bytes + needed <= s.budget
                && s.per_remote.get(&remote).copied().unwrap_or(0) + needed <= s.quota
        };
        let mut i = 0;
        while !fits(self) && i < self.order.len() {
            let (key, seq) = self.order[i];
            let live = self.map.get(&key).is_some_and(|u| u.seq == seq);
            let own_full = self.per_remote.get(&remote).copied().unwrap_or(0) + needed > self.quota;
            // When the remote's own quota is the problem, only its own uploads make room.
            if !live || key == keep || (own_full && key.0 != remote) {
                i += 1;
                continue;
            }
            self.order.remove(i);
            self.remove(&key);
        }
        fits(self)
    }

    /// Takes one block of an upload (`request` carries `block`, a Block1 value); `key` is
    /// the upload's key ([`upload_key`]).
    pub(crate) fn on_block(
        &mut self,
        now: Instant,
        remote: SocketAddr,
        key: u64,
        mut request: Request,
        block: BlockValue,
        preferred_szx: u8,
    ) -> UploadStep {
        self.purge(now);
        let k = (remote, key);
        let too_large = |max: usize| {
            let mut r = Response::new(Code::REQUEST_ENTITY_TOO_LARGE);
            r.options
                .set_uint(OptionNumber::SIZE1, max.min(u32::MAX as usize) as u32);
            UploadStep::Answer(r)
        };
        if request
            .options
            .get_uint(OptionNumber::SIZE1)
            .is_some_and(|s| s as usize > self.max_body)
        {
            self.remove(&k);
            return too_large(self.max_body);
        }
        if block.num() == 0 {
            if !block.more() {
                // A one-block upload is an ordinary request.
                request.options.remove(OptionNumber::BLOCK1);
                request.options.remove(OptionNumber::SIZE1);
                return UploadStep::Complete(request, block);
            }
            // A new upload (or the same one started again).
            self.remove(&k);
            if !self.make_room(k, UPLOAD_COST + request.payload.len()) {
                return UploadStep::Answer(Response::new(Code::SERVICE_UNAVAILABLE));
            }
            self.map.insert(
                k,
                Upload {
                    body: Vec::new(),
                    next_num: 0,
                    szx: block.szx(),
                    expires: now + self.lifetime,
                    seq: 0,
                    complete: false,
                },
            );
            self.charge(remote, UPLOAD_COST, 0);
        }
        let Some(upload) = self.map.get(&k) else {
            return UploadStep::Answer(Response::new(Code::REQUEST_ENTITY_INCOMPLETE));
        };
        // A block repeated (its 2.31 was lost, the client asks again): acknowledge again. A
        // block that differs from what came before belongs to another upload that the client
        // did not tell apart (no Request-Tag): neither can go on.
        let offset = block.offset();
        let have = upload.body.len();
        if offset + request.payload.len() <= have && offset < have {
            if upload.body[offset..offset + request.payload.len()] != request.payload[..] {
                self.remove(&k);
                return UploadStep::Answer(Response::new(Code::REQUEST_ENTITY_INCOMPLETE));
            }
            let mut r = Response::new(Code::CONTINUE);
            r.options.push_uint(OptionNumber::BLOCK1, block.to_uint());
            return UploadStep::Answer(r);
        }
        if offset != have || (block.more() && request.payload.len() != block.size()) {
            self.remove(&k);
            return UploadStep::Answer(Response::new(Code::REQUEST_ENTITY_INCOMPLETE));
        }
        if have + request.payload.len() > self.max_body {
            self.remove(&k);
            return too_large(self.max_body);
        }
        if block.more() {
            // What the body's allocation grows by: a Vec doubles (or grows to fit).
            let cap = upload.body.capacity();
            let need = have + request.payload.len();
            let grow = if need > cap {
                need.max(cap * 2) - cap
            } else {
                0
            };
            if grow > 0 && !self.make_room(k, grow) {
                self.remove(&k);
                return UploadStep::Answer(Response::new(Code::SERVICE_UNAVAILABLE));
            }
            let Some(upload) = self.map.get_mut(&k) else {
                return UploadStep::Answer(Response::new(Code::REQUEST_ENTITY_INCOMPLETE));
            };
            let before = upload.body.capacity();
            upload.body.extend_from_slice(&request.payload);
            upload.next_num = block.num() + 1;
            upload.szx = block.szx();
            upload.expires = now + self.lifetime;
            let after = upload.body.capacity();
            self.charge(remote, after, before);
            self.touch(k);
            // Ask for smaller blocks when the client's are larger than this server wants.
            let szx = block.szx().min(preferred_szx);
            let mut r = Response::new(Code::CONTINUE);
            if let Ok(b) = BlockValue::new(block.num(), true, szx) {
                r.options.push_uint(OptionNumber::BLOCK1, b.to_uint());
            }
            return UploadStep::Answer(r);
        }
        // The body stays (but the last block) until the answer is known: when it is a 4.01
        // with an Echo value (a freshness challenge, RFC 9175 §2.3, or the amplification
        // limit's), the client sends the last block again with that value, which completes
        // the upload again.
        let Some(upload) = self.map.get_mut(&k) else {
            return UploadStep::Answer(Response::new(Code::REQUEST_ENTITY_INCOMPLETE));
        };
        upload.complete = true;
        upload.expires = now + self.lifetime;
        let mut body = Vec::with_capacity(have + request.payload.len());
        body.extend_from_slice(&upload.body);
        body.extend_from_slice(&request.payload);
        self.touch(k);
        request.payload = body;
        request.options.remove(OptionNumber::BLOCK1);
        request.options.remove(OptionNumber::SIZE1);
        UploadStep::Complete(request, block)
    }
}

/// Large representations the server is serving block by block, by remote and request key.
#[derive(Debug)]
pub(crate) struct BlockCache {
    map: HashMap<(SocketAddr, u64), (Response, Instant)>,
    order: VecDeque<(SocketAddr, u64)>,
    capacity: usize,
    lifetime: Duration,
}

impl BlockCache {
    pub(crate) fn new(capacity: usize, lifetime: Duration) -> Self {
        Self {
            map: HashMap::new(),
            order: VecDeque::new(),
            capacity,
            lifetime,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    pub(crate) fn get(&mut self, now: Instant, key: &(SocketAddr, u64)) -> Option<&Response> {
        if self
            .map
            .get(key)
            .is_some_and(|(_, expires)| *expires <= now)
        {
            self.map.remove(key);
        }
        self.map.get(key).map(|(r, _)| r)
    }

    pub(crate) fn insert(&mut self, now: Instant, key: (SocketAddr, u64), whole: Response) {
        if self.capacity == 0 {
            return;
        }
        if self.map.insert(key, (whole, now + self.lifetime)).is_none() {
            self.order.push_back(key);
        }
        while self.map.len() > self.capacity || self.order.len() > 2 * self.capacity {
            match self.order.pop_front() {
                Some(k) => {
                    self.map.remove(&k);
                }
                None => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn whole(len: usize) -> Response {
        Response::new(Code::CONTENT).with_payload((0..len).map(|i| i as u8).collect::<Vec<_>>())
    }

    #[test]
    fn cutting_blocks() {
        let w = whole(100);
        let b0 = cut_block2(&w, BlockValue::new(0, false, 1).unwrap()).unwrap(); // 32 bytes
        assert_eq!(b0.payload.len(), 32);
        let v = BlockValue::from_bytes(b0.options.get(OptionNumber::BLOCK2).unwrap()).unwrap();
        assert!(v.more());
        assert_eq!(b0.options.get_uint(OptionNumber::SIZE2), Some(100));
        assert!(b0.options.contains(OptionNumber::ETAG));
        let b3 = cut_block2(&w, BlockValue::new(3, false, 1).unwrap()).unwrap();
        assert_eq!(b3.payload, (96u8..100).collect::<Vec<_>>());
        assert!(
            !BlockValue::from_bytes(b3.options.get(OptionNumber::BLOCK2).unwrap())
                .unwrap()
                .more()
        );
        assert!(cut_block2(&w, BlockValue::new(4, false, 1).unwrap()).is_none());
    }

    #[test]
    fn download_reassembles_and_checks_order() {
        let remote = "[::1]:1".parse().unwrap();
        let w = whole(100);
        let mut t = ClientTransfer::download(remote, Request::get("/x"), 1 << 20);
        let mut block = BlockValue::new(0, false, 1).unwrap();
        loop {
            let part = cut_block2(&w, block).unwrap();
            match t.on_response(part) {
                Step::Send(next) => {
                    block = BlockValue::from_bytes(next.options.get(OptionNumber::BLOCK2).unwrap())
                        .unwrap();
                    assert!(next.payload.is_empty());
                }
                Step::Done(r) => {
                    let r = r.unwrap();
                    assert_eq!(r.payload, w.payload);
                    assert!(!r.options.contains(OptionNumber::BLOCK2));
                    break;
                }
            }
        }
        let mut t = ClientTransfer::download(remote, Request::get("/x"), 1 << 20);
        let _ = t.on_response(cut_block2(&w, BlockValue::new(0, false, 1).unwrap()).unwrap());
        let skipped = cut_block2(&w, BlockValue::new(2, false, 1).unwrap()).unwrap();
        assert!(matches!(
            t.on_response(skipped),
            Step::Done(Err(Failure::BadResponse(_)))
        ));
    }

    #[test]
    fn uploads_are_checked_and_bounded() {
        let now = Instant::now();
        let remote = "[::1]:1".parse().unwrap();
        let mut u = Uploads::new(64, 1 << 20, 1 << 20, Duration::from_secs(60));
        let block = |num, more| BlockValue::new(num, more, 0).unwrap(); // 16 bytes
        let req = |n: usize| Request::put("/x", vec![7u8; n]);
        assert!(
            matches!(u.on_block(now, remote, 1, req(16), block(0, true), 6), UploadStep::Answer(r) if r.code == Code::CONTINUE)
        );
        // Out of order: 4.08, and the upload is gone.
        assert!(
            matches!(u.on_block(now, remote, 1, req(16), block(2, true), 6), UploadStep::Answer(r) if r.code == Code::REQUEST_ENTITY_INCOMPLETE)
        );
        assert_eq!((u.len(), u.bytes()), (0, 0));
        // Past the largest body: 4.13 with Size1.
        for num in 0..4 {
            let _ = u.on_block(now, remote, 3, req(16), block(num, true), 6);
        }
        match u.on_block(now, remote, 3, req(16), block(4, true), 6) {
            UploadStep::Answer(r) => {
                assert_eq!(r.code, Code::REQUEST_ENTITY_TOO_LARGE);
                assert_eq!(r.options.get_uint(OptionNumber::SIZE1), Some(64));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!((u.len(), u.bytes()), (0, 0));
    }

    /// Thousands of abandoned uploads from strangers push each other out; a legitimate upload
    /// started after them completes.
    #[test]
    fn abandoned_uploads_make_room_for_new_ones() {
        let now = Instant::now();
        let budget = 100 * (UPLOAD_COST + 1024);
        let mut u = Uploads::new(1 << 20, budget, budget, Duration::from_secs(60));
        let block = |num, more| BlockValue::new(num, more, 6).unwrap(); // 1024 bytes
        let req = || Request::put("/x", vec![1u8; 1024]);
        for port in 0..5000u16 {
            let stranger = SocketAddr::from(([10, 0, 0, 1], port));
            let step = u.on_block(now, stranger, 1, req(), block(0, true), 6);
            assert!(matches!(step, UploadStep::Answer(r) if r.code == Code::CONTINUE));
            assert!(u.bytes() <= budget, "{}", u.bytes());
        }
        let me = SocketAddr::from(([10, 0, 0, 2], 1));
        let step = u.on_block(now, me, 1, req(), block(0, true), 6);
        assert!(matches!(step, UploadStep::Answer(r) if r.code == Code::CONTINUE));
        // More strangers meanwhile: they evict each other, not the active upload.
        for port in 5000..5050u16 {
            let stranger = SocketAddr::from(([10, 0, 0, 1], port));
            let _ = u.on_block(now, stranger, 1, req(), block(0, true), 6);
        }
        match u.on_block(
            now,
            me,
            1,
            Request::put("/x", vec![2u8; 10]),
            block(1, false),
            6,
        ) {
            UploadStep::Complete(whole, _) => assert_eq!(whole.payload.len(), 1034),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_remote_over_its_quota_replaces_its_own_oldest_upload() {
        let now = Instant::now();
        let quota = 2 * (UPLOAD_COST + 1024);
        let mut u = Uploads::new(1 << 20, 1 << 20, quota, Duration::from_secs(60));
        let block = BlockValue::new(0, true, 6).unwrap();
        let a = SocketAddr::from(([10, 0, 0, 1], 1));
        let b = SocketAddr::from(([10, 0, 0, 2], 1));
        let _ = u.on_block(now, b, 9, Request::put("/x", vec![0; 1024]), block, 6);
        for key in 0..10 {
            let _ = u.on_block(now, a, key, Request::put("/x", vec![0; 1024]), block, 6);
        }
        assert!(u.per_remote[&a] <= quota);
        // b's upload was not touched by a's.
        assert!(u.map.contains_key(&(b, 9)));
    }

    #[test]
    fn request_tags_and_fetch_bodies_are_part_of_the_keys() {
        let mut with_tag = crate::message::Message::new(crate::message::Type::Con, Code::PUT, 1);
        with_tag.options.push(OptionNumber::URI_PATH, "x");
        let plain = with_tag.to_bytes().unwrap();
        with_tag.options.push(OptionNumber::REQUEST_TAG, [1]);
        let tagged = with_tag.to_bytes().unwrap();
        fn opts(b: &[u8]) -> OptionsRef<'_> {
            crate::message::MessageRef::decode(b).unwrap().options
        }
        let (p, t) = (&plain, &tagged);
        let key = request_key(Code::PUT, opts(p).iter(), &[]);
        assert_eq!(key, request_key(Code::PUT, opts(t).iter(), &[]));
        assert_ne!(upload_key(key, opts(p)), upload_key(key, opts(t)));
        let none = std::iter::empty();
        assert_ne!(
            request_key(Code::FETCH, none.clone(), b"a"),
            request_key(Code::FETCH, none.clone(), b"b")
        );
        assert_eq!(
            request_key(Code::GET, none.clone(), b"a"),
            request_key(Code::GET, none, b"b")
        );
    }
}

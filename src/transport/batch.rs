//! Batches of datagrams that a transport receives or sends in one call
//! ([`Transport::try_recv_batch`](super::Transport::try_recv_batch),
//! [`Transport::try_send_batch`](super::Transport::try_send_batch)): `recvmmsg`/`sendmmsg`
//! on Linux, one datagram per call elsewhere. The buffers are allocated once and reused.

use crate::net::{RecvMeta, Transmit};

/// Datagrams taken or sent per call: at window 64 (64 requests in flight from one client) a
/// wake-up finds a few dozen datagrams waiting, which two calls take.
pub const BATCH: usize = 32;

/// The room for one received datagram: the largest UDP payload there is, so that no datagram
/// is ever cut short. The memory is asked for zeroed and so comes from the system untouched:
/// a slot costs the pages its datagrams write, not 64 KiB.
const SLOT: usize = 65_536;

/// Room for up to [`BATCH`] received datagrams, each with what the transport knows of it.
pub struct RecvBatch {
    data: Box<[u8]>,
    /// Per datagram: its slot and length.
    places: [(usize, usize); BATCH],
    metas: [RecvMeta; BATCH],
    filled: usize,
}

impl std::fmt::Debug for RecvBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvBatch")
            .field("filled", &self.filled)
            .finish_non_exhaustive()
    }
}

impl Default for RecvBatch {
    fn default() -> Self {
        Self::new()
    }
}

impl RecvBatch {
    /// Room for [`BATCH`] datagrams of up to 64 KiB each.
    pub fn new() -> Self {
        let nobody = RecvMeta::new(std::net::SocketAddr::from(([0u8; 4], 0)));
        Self {
            data: vec![0; SLOT * BATCH].into_boxed_slice(),
            places: [(0, 0); BATCH],
            metas: [nobody; BATCH],
            filled: 0,
        }
    }

    /// How many datagrams it can hold.
    pub const fn capacity(&self) -> usize {
        BATCH
    }

    /// How many datagrams the last receive put in it.
    pub const fn len(&self) -> usize {
        self.filled
    }

    /// Whether the last receive put nothing in it.
    pub const fn is_empty(&self) -> bool {
        self.filled == 0
    }

    /// The `i`th datagram received and its metadata.
    pub fn get(&self, i: usize) -> Option<(&[u8], &RecvMeta)> {
        (i < self.filled).then(|| {
            let (slot, len) = self.places[i];
            let start = slot * SLOT;
            (&self.data[start..start + len], &self.metas[i])
        })
    }

    /// For transports: forgets what the last receive put in.
    pub fn clear(&mut self) {
        self.filled = 0;
    }

    /// For transports: the room for the next datagram, `None` when the batch is full.
    pub fn next_slot(&mut self) -> Option<&mut [u8]> {
        let start = self.filled * SLOT;
        self.data.get_mut(start..start + SLOT)
    }

    /// For transports: every slot, in order, to be filled by one system call; then
    /// [`push_at`](Self::push_at) says, slot by slot, what it put there.
    pub fn slots_mut(&mut self) -> std::slice::ChunksExactMut<'_, u8> {
        self.data.chunks_exact_mut(SLOT)
    }

    /// For transports: the datagram just written into the [`next_slot`](Self::next_slot) is
    /// `len` bytes long and has `meta`.
    ///
    /// # Panics
    ///
    /// If the batch is full or `len` is larger than a slot: a transport bug.
    pub fn push(&mut self, len: usize, meta: RecvMeta) {
        self.push_at(self.filled, len, meta);
    }

    /// For transports that filled [`slots_mut`](Self::slots_mut): slot `slot` holds the next
    /// datagram, `len` bytes long, with `meta` (slots that hold nothing worth passing on are
    /// skipped).
    ///
    /// # Panics
    ///
    /// If the batch is full, or `slot` or `len` is out of range: a transport bug.
    pub fn push_at(&mut self, slot: usize, len: usize, meta: RecvMeta) {
        assert!(self.filled < BATCH && slot < BATCH && len <= SLOT);
        self.places[self.filled] = (slot, len);
        self.metas[self.filled] = meta;
        self.filled += 1;
    }
}

/// Up to [`BATCH`] datagrams to send, each with where it goes; the buffers are kept between
/// batches.
#[derive(Debug)]
pub struct SendBatch {
    bufs: Vec<Vec<u8>>,
    transmits: Vec<Transmit>,
}

impl Default for SendBatch {
    fn default() -> Self {
        Self::new()
    }
}

impl SendBatch {
    /// An empty batch.
    pub fn new() -> Self {
        Self {
            bufs: (0..BATCH).map(|_| Vec::with_capacity(1280)).collect(),
            transmits: Vec::with_capacity(BATCH),
        }
    }

    /// How many datagrams are in it.
    pub fn len(&self) -> usize {
        self.transmits.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.transmits.is_empty()
    }

    /// Whether it has room for no more.
    pub fn is_full(&self) -> bool {
        self.transmits.len() == BATCH
    }

    /// Empties it (keeping the buffers).
    pub fn clear(&mut self) {
        self.transmits.clear();
    }

    /// Adds a datagram written by `fill` into a buffer of the batch, if `fill` returns where it
    /// goes; returns whether one was added. `None` when the batch is full.
    pub fn push_with(
        &mut self,
        fill: impl FnOnce(&mut Vec<u8>) -> Option<Transmit>,
    ) -> Option<bool> {
        let i = self.transmits.len();
        let buf = self.bufs.get_mut(i)?;
        Some(match fill(buf) {
            Some(t) => {
                self.transmits.push(t);
                true
            }
            None => false,
        })
    }

    /// The `i`th datagram: where it goes and its bytes.
    pub fn get(&self, i: usize) -> Option<(&Transmit, &[u8])> {
        let t = self.transmits.get(i)?;
        Some((t, &self.bufs[i][..t.size]))
    }
}

//! The server's observers (RFC 7641 §4.1): who observes which resource, what each one asked
//! for, and what they cost.
//!
//! A registration is kept compactly (the resource's path shared between its observers, the
//! request's options packed into one allocation), so that tens of thousands of clients can
//! observe one resource within a memory budget ([`Config::observer_memory`](super::Config::observer_memory)) instead of
//! a small count. Counts per resource are kept beside the map, so admitting an observer costs
//! O(1) whatever the number of observers.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use crate::message::{Code, OptionNumber, Options, Token};
use crate::net::RecvMeta;

use super::types::Request;

/// An observer: a client observing a resource of this endpoint.
#[derive(Debug)]
pub(crate) struct Observer {
    /// The path observed, as `Endpoint::notify` names it (shared by its observers).
    pub(crate) resource: Arc<str>,
    /// The registration's method (GET or FETCH).
    method: Code,
    /// The registration's options, packed ([`pack`]).
    options: Box<[u8]>,
    /// The registration's payload (a FETCH's; empty for GET).
    payload: Box<[u8]>,
    pub(crate) meta: RecvMeta,
    /// The Observe value of the last notification.
    pub(crate) seq: u32,
    pub(crate) notifications_since_con: u32,
    pub(crate) last_con: Instant,
    /// The message ID of a Confirmable notification not yet acknowledged: a newer
    /// notification takes over its retransmission (RFC 7641 §4.5.2).
    pub(crate) inflight_con: Option<u16>,
    /// For a registration protected with OSCORE: what protects its notifications.
    pub(crate) security: Option<Box<super::endpoint::Security>>,
}

impl Observer {
    /// The registration, as the application is asked to render it again.
    pub(crate) fn request(&self) -> Request {
        let mut request = Request::new(self.method);
        request.options = unpack(&self.options);
        request.payload = self.payload.to_vec();
        request
    }

    fn cost(&self) -> usize {
        OBSERVER_COST + self.options.len() + self.payload.len()
    }
}

/// What an observer costs besides its packed options and payload: the map slot (key, value,
/// control byte, load-factor slack).
pub(crate) const OBSERVER_COST: usize = (size_of::<((SocketAddr, Token), Observer)>() + 1) * 8 / 7;

/// Packs options as (number, length, bytes) triples, two bytes each for number and length.
fn pack(options: &Options) -> Box<[u8]> {
    let mut out = Vec::with_capacity(options.iter().map(|(_, v)| 4 + v.len()).sum());
    for (n, v) in options.iter() {
        if n == OptionNumber::OBSERVE {
            continue;
        }
        out.extend_from_slice(&n.0.to_le_bytes());
        out.extend_from_slice(&(v.len() as u16).to_le_bytes());
        out.extend_from_slice(v);
    }
    out.into_boxed_slice()
}

fn unpack(mut packed: &[u8]) -> Options {
    let mut options = Options::new();
    while packed.len() >= 4 {
        let number = u16::from_le_bytes([packed[0], packed[1]]);
        let len = usize::from(u16::from_le_bytes([packed[2], packed[3]]));
        let Some(value) = packed.get(4..4 + len) else {
            break;
        };
        options.push(OptionNumber(number), value);
        packed = &packed[4 + len..];
    }
    options.set_uint(OptionNumber::OBSERVE, 0);
    options
}

/// Why an observer was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Full {
    /// The memory budget is used up.
    Memory,
    /// The resource has `max_observers_per_resource` observers.
    Resource,
}

/// Every observer, by remote and token, with indexes by resource and by remote so that
/// notifying a resource or dropping a remote costs O(its observers).
#[derive(Debug, Default)]
pub(crate) struct Observers {
    map: HashMap<(SocketAddr, Token), Observer>,
    /// The observers of each resource path.
    per_resource: HashMap<Arc<str>, HashSet<(SocketAddr, Token)>>,
    /// The tokens of each remote's observations.
    per_remote: HashMap<SocketAddr, HashSet<Token>>,
    bytes: usize,
}

impl Observers {
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    pub(crate) fn contains(&self, key: &(SocketAddr, Token)) -> bool {
        self.map.contains_key(key)
    }

    pub(crate) fn get(&self, key: &(SocketAddr, Token)) -> Option<&Observer> {
        self.map.get(key)
    }

    pub(crate) fn get_mut(&mut self, key: &(SocketAddr, Token)) -> Option<&mut Observer> {
        self.map.get_mut(key)
    }

    /// Adds or replaces the observer `key` of `request`'s resource, if the budget and the
    /// resource's limit allow it (a replacement is counted without the observer it
    /// replaces). Returns its Observe value for the registration's answer; on `Err`, the
    /// replaced observer (if any) is gone too, and the message ID of the Confirmable
    /// notification it had in flight comes back so that the caller can end it.
    pub(crate) fn register(
        &mut self,
        now: Instant,
        key: (SocketAddr, Token),
        request: &Request,
        meta: RecvMeta,
        security: Option<super::endpoint::Security>,
        (budget, per_resource): (usize, usize),
    ) -> Result<u32, (Full, Option<u16>)> {
        let previous = self.remove(&key);
        let path = request.path();
        let resource = match self.per_resource.get_key_value(path.as_str()) {
            Some((r, _)) => r.clone(),
            None => Arc::from(path),
        };
        let observer = Observer {
            resource: resource.clone(),
            method: request.method,
            options: pack(&request.options),
            payload: request.payload.clone().into_boxed_slice(),
            meta,
            seq: previous.as_ref().map_or(2, |o| (o.seq + 1) & 0xff_ffff),
            notifications_since_con: 0,
            last_con: now,
            // A Confirmable notification in flight to the old registration goes on.
            inflight_con: previous.as_ref().and_then(|o| o.inflight_con),
            security: security.map(Box::new),
        };
        if self.per_resource.get(&resource).map_or(0, HashSet::len) >= per_resource {
            return Err((Full::Resource, previous.and_then(|o| o.inflight_con)));
        }
        if self.bytes + observer.cost() > budget {
            return Err((Full::Memory, previous.and_then(|o| o.inflight_con)));
        }
        let seq = observer.seq;
        self.bytes += observer.cost();
        self.per_resource.entry(resource).or_default().insert(key);
        self.per_remote.entry(key.0).or_default().insert(key.1);
        self.map.insert(key, observer);
        Ok(seq)
    }

    pub(crate) fn remove(&mut self, key: &(SocketAddr, Token)) -> Option<Observer> {
        let o = self.map.remove(key)?;
        self.bytes -= o.cost();
        if let Some(set) = self.per_resource.get_mut(&o.resource) {
            set.remove(key);
            if set.is_empty() {
                self.per_resource.remove(&o.resource);
            }
        }
        if let Some(tokens) = self.per_remote.get_mut(&key.0) {
            tokens.remove(&key.1);
            if tokens.is_empty() {
                self.per_remote.remove(&key.0);
            }
        }
        Some(o)
    }

    /// The observers of `path`, in a fixed order (so that the endpoint stays deterministic).
    pub(crate) fn of(&self, path: &str) -> Vec<(SocketAddr, Token)> {
        let mut keys: Vec<_> = self
            .per_resource
            .get(path)
            .map(|set| set.iter().copied().collect())
            .unwrap_or_default();
        keys.sort_unstable_by(|(a, t), (b, u)| (a, t.as_bytes()).cmp(&(b, u.as_bytes())));
        keys
    }

    /// The observers at `remote`, in a fixed order.
    pub(crate) fn at(&self, remote: SocketAddr) -> Vec<(SocketAddr, Token)> {
        let mut keys: Vec<_> = self
            .per_remote
            .get(&remote)
            .map(|tokens| tokens.iter().map(|t| (remote, *t)).collect())
            .unwrap_or_default();
        keys.sort_unstable_by(|(_, t), (_, u)| t.as_bytes().cmp(u.as_bytes()));
        keys
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registrations_round_trip_and_are_counted() {
        let now = Instant::now();
        let mut o = Observers::default();
        let mut req = Request::get("/a/b?x=1").observe();
        req.options.push(OptionNumber::ACCEPT, [0]);
        let remote: SocketAddr = "[::1]:5683".parse().unwrap();
        let key = (remote, Token::from_slice(&[1]).unwrap());
        let meta = RecvMeta::new(remote);
        let full = |r: Result<u32, (Full, Option<u16>)>| r.map_err(|(f, _)| f);
        assert_eq!(
            full(o.register(now, key, &req, meta, None, (1 << 20, 10))),
            Ok(2)
        );
        assert_eq!(o.get(&key).unwrap().request(), req);
        assert_eq!(
            full(o.register(now, key, &req, meta, None, (1 << 20, 1))),
            Ok(3)
        );
        let key2 = (remote, Token::from_slice(&[2]).unwrap());
        assert_eq!(
            full(o.register(now, key2, &req, meta, None, (1 << 20, 1))),
            Err(Full::Resource)
        );
        assert_eq!(
            full(o.register(now, key2, &Request::get("/c"), meta, None, (1, 9))),
            Err(Full::Memory)
        );
        assert_eq!(o.of("/a/b"), vec![key]);
        assert_eq!(o.at(remote), vec![key]);
        // A re-registration that no longer fits is refused, and the old one handed back.
        let mut big = Request::get("/a/b").observe();
        big.options.push(OptionNumber::URI_QUERY, vec![b'q'; 5000]);
        let budget = o.bytes() + 100;
        o.get_mut(&key).unwrap().inflight_con = Some(77);
        assert_eq!(
            o.register(now, key, &big, meta, None, (budget, 10)),
            Err((Full::Memory, Some(77)))
        );
        assert_eq!((o.len(), o.bytes()), (0, 0));
        assert!(o.per_resource.is_empty() && o.per_remote.is_empty());
    }

    /// Moving an observation to another resource counts against that resource's limit.
    #[test]
    fn a_re_registration_for_another_resource_respects_its_limit() {
        let now = Instant::now();
        let mut o = Observers::default();
        let (p1, p2): (SocketAddr, SocketAddr) =
            ("[::1]:1".parse().unwrap(), "[::1]:2".parse().unwrap());
        let t = Token::from_slice(&[1]).unwrap();
        let limits = (1 << 20, 1);
        let a = Request::get("/a").observe();
        assert!(o
            .register(now, (p1, t), &a, RecvMeta::new(p1), None, limits)
            .is_ok());
        let b = Request::get("/b").observe();
        assert!(o
            .register(now, (p2, t), &b, RecvMeta::new(p2), None, limits)
            .is_ok());
        assert!(o
            .register(now, (p2, t), &a, RecvMeta::new(p2), None, limits)
            .is_err());
        assert_eq!(o.of("/a").len(), 1);
    }
}

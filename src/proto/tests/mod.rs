//! Scenario tests of the sans-IO endpoint on a simulated network (`sim`): a virtual clock and
//! a seeded link that loses, duplicates, delays and reorders datagrams. No sockets, no sleeps.

mod blockwise;
mod bounds;
mod echo;
mod errors;
mod exchanges;
mod lossy;
mod message_layer;
mod observe;
mod observe_core;
mod options;
#[cfg(feature = "oscore")]
mod oscore;
#[cfg(feature = "oscore")]
mod oscore_merge;
#[cfg(feature = "oscore")]
mod oscore_review;
mod regressions;
mod sim;
mod sustained;

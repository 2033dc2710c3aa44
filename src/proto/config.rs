//! Configuration of an [`Endpoint`](super::Endpoint): the transmission parameters of RFC 7252 §4.8 and
//! the bounds that keep its memory finite.

use std::time::Duration;

use thiserror::Error;

use crate::message::Type;

/// How an [`Endpoint`](super::Endpoint) behaves. Start from [`Config::default`] and change fields.
///
/// The defaults are those of <https://www.rfc-editor.org/rfc/rfc7252#section-4.8>. Derived
/// times (MAX_TRANSMIT_WAIT, EXCHANGE_LIFETIME, …) are methods.
///
/// ```
/// use std::time::Duration;
/// let mut config = coapio::proto::Config::default().with_seed(42);
/// config.ack_timeout = Duration::from_secs(1);
/// assert!(config.validate().is_ok());
/// assert_eq!(config.max_transmit_wait(), Duration::from_millis(46_500));
/// ```
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Config {
    /// ACK_TIMEOUT: the first retransmission timeout, before randomization (default 2 s).
    pub ack_timeout: Duration,
    /// ACK_RANDOM_FACTOR: the first timeout is drawn from
    /// `[ack_timeout, ack_timeout × ack_random_factor]` (default 1.5; at least 1).
    pub ack_random_factor: f64,
    /// MAX_RETRANSMIT: retransmissions of a Confirmable message before giving up (default 4;
    /// at most 20).
    pub max_retransmit: u32,
    /// NSTART: outstanding interactions per remote; further requests wait in a queue
    /// (default 1; at least 1).
    pub nstart: usize,
    /// How long a Non-confirmable request waits for its response (default MAX_TRANSMIT_WAIT,
    /// 93 s).
    pub non_timeout: Duration,
    /// How long a request waits for a separate response after its empty ACK (default
    /// EXCHANGE_LIFETIME, 247 s).
    pub separate_timeout: Duration,
    /// How long the application may take before a Confirmable request gets an empty ACK and
    /// its answer becomes a separate response (default 100 ms, as aiocoap's EMPTY_ACK_DELAY).
    pub empty_ack_delay: Duration,
    /// The type of separate responses: [`Type::Con`] (default) or [`Type::Non`].
    pub separate_response_type: Type,
    /// The length of the tokens this endpoint makes, 0–8 bytes (default 8).
    pub token_length: usize,
    /// The memory the deduplication cache may use, in bytes (default 64 MiB; an entry costs
    /// about 150 bytes plus the response it replays). Received messages are remembered for
    /// their whole lifetime (EXCHANGE_LIFETIME or NON_LIFETIME, RFC 7252 §4.5) and never
    /// forgotten earlier; when the budget is full, a new non-idempotent request (POST, PATCH)
    /// gets 5.03 Service Unavailable with a Max-Age saying when to try again, and an
    /// idempotent one (GET, FETCH, PUT, DELETE) is served without being remembered, as §4.5
    /// allows.
    pub dedup_memory: usize,
    /// The share of [`Config::dedup_memory`] one remote may use (default 8 MiB), so that one
    /// remote cannot take the whole cache; beyond it, its requests are treated as when the
    /// whole cache is full.
    pub dedup_memory_per_remote: usize,
    /// How many remotes nothing refers to any more are remembered for their message ID
    /// counters (default 65536). Their state lives EXCHANGE_LIFETIME after last use so that
    /// message IDs are not reused (RFC 7252 §4.4); beyond this count the oldest is forgotten
    /// early, and its next message ID starts at a random value.
    pub max_idle_remotes: usize,
    /// Whether a message ID is never reused with a remote within EXCHANGE_LIFETIME (RFC 7252
    /// §4.4; default `true`). Then at most 65 536 messages go to one remote per
    /// EXCHANGE_LIFETIME (265 a second on average, by default): beyond that, new messages
    /// wait for an ID to become free ([`Stats::waiting_for_message_ids`](super::Stats::waiting_for_message_ids)). Turn it off
    /// only on a closed test network where a peer's deduplication is known to be shorter;
    /// IDs still in flight are never reused either way.
    pub strict_message_ids: bool,
    /// Whether the application acts as a forward proxy (RFC 7252 §5.7): requests with
    /// Proxy-Uri or Proxy-Scheme reach it. Off by default: such requests get 5.05 Proxying
    /// Not Supported.
    pub proxy: bool,
    /// How many received requests may await the application's answer at once; more get
    /// 5.03 Service Unavailable (default 4096).
    pub max_pending_requests: usize,
    /// How many requests may wait for an NSTART slot per remote; more are refused (default
    /// 1024).
    pub max_queued_per_remote: usize,
    /// The block size this endpoint prefers, in bytes (16 to 1024, a power of two; default
    /// 1024): request payloads larger than this go out block-wise (Block1), and responses
    /// larger than this are served block-wise (Block2; RFC 7959).
    pub block_size: usize,
    /// The largest body a block-wise transfer may assemble, in either direction (default
    /// 4 MiB); more gets 4.13 Request Entity Too Large (server) or fails the request (client).
    pub max_body_size: usize,
    /// The memory block-wise uploads (Block1) in progress may take, in bytes (default
    /// 32 MiB). When a new upload needs room, the least recently active unfinished one is
    /// dropped, so uploads started and abandoned by strangers cannot lock others out.
    pub upload_memory: usize,
    /// The share of [`Config::upload_memory`] one remote's uploads may take (default 8 MiB);
    /// beyond it, the remote's own least recently active upload makes room.
    pub upload_memory_per_remote: usize,
    /// How many large representations the server keeps for serving their later blocks
    /// (default 64); a later block of one that is gone is made anew by the application.
    pub block_cache: usize,
    /// The memory the observers of this endpoint's resources may take, in bytes (RFC 7641;
    /// default 16 MiB; an observer costs about 200 bytes plus its request's options); a
    /// registration beyond is answered without Observe.
    pub observer_memory: usize,
    /// How many clients may observe one resource (one path) at once (default 65536).
    pub max_observers_per_resource: usize,
    /// The type of notifications: [`Type::Non`] (default) or [`Type::Con`].
    pub notification_type: Type,
    /// With NON notifications, every this many notifications one is sent CON, to learn
    /// whether the observer is still there (default 20; at least once a day anyway).
    pub notification_con_every: u32,
    /// Leisure (RFC 7252 §8.2): a response to a multicast request goes out after a random
    /// delay up to this, so that the group's answers do not arrive all at once (default 5 s,
    /// DEFAULT_LEISURE; zero answers at once).
    pub leisure: Duration,
    /// How long a request to a multicast group collects responses (RFC 7252 §8.2; default
    /// 8 s: the servers' default leisure of 5 s plus some).
    pub multicast_timeout: Duration,
    /// Amplification mitigation (RFC 9175 §2.4; default on): an answer to a remote not yet
    /// verified that would be more than three times the size of its request is cut into
    /// smaller Block2 blocks (with an Echo value), or, when even the smallest block is too
    /// large, replaced by 4.01 Unauthorized with an Echo option, which the client repeats in
    /// its request to prove that it receives what is sent to its address. Everything sent in
    /// answer counts: an empty ACK before a separate response, and the separate response's
    /// retransmissions, which stop when they would exceed the limit. A remote is verified by
    /// a good Echo value or by answering a request of this endpoint's. Over DTLS, whose
    /// handshake verifies the address, the facade turns it off. Answers to multicast requests
    /// are not limited by it.
    pub amplification_mitigation: bool,
    /// How long an Echo value this endpoint gives is accepted (default 30 s): the freshness
    /// a request that carries one proves (RFC 9175 §2.3).
    pub echo_lifetime: Duration,
    /// How long a remote stays verified after it last proved its address (default 1 hour).
    pub verified_lifetime: Duration,
    /// How many verified remotes are remembered (default 65536; about 60 bytes each); the
    /// oldest is forgotten first, and has to answer an Echo challenge again.
    pub max_verified_remotes: usize,
    /// The seed of the random number generator (tokens, message IDs, timeouts). Seed it from
    /// the OS for anything facing a network: unpredictable tokens protect against off-path
    /// spoofing (RFC 9175 §4). Default 0.
    pub seed: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            ack_timeout: Duration::from_secs(2),
            ack_random_factor: 1.5,
            max_retransmit: 4,
            nstart: 1,
            non_timeout: Duration::from_secs(93),
            separate_timeout: Duration::from_secs(247),
            empty_ack_delay: Duration::from_millis(100),
            separate_response_type: Type::Con,
            token_length: 8,
            dedup_memory: 64 << 20,
            dedup_memory_per_remote: 8 << 20,
            max_idle_remotes: 65_536,
            strict_message_ids: true,
            proxy: false,
            max_pending_requests: 4096,
            max_queued_per_remote: 1024,
            block_size: 1024,
            max_body_size: 4 << 20,
            upload_memory: 32 << 20,
            upload_memory_per_remote: 8 << 20,
            block_cache: 64,
            observer_memory: 16 << 20,
            max_observers_per_resource: 65_536,
            notification_type: Type::Non,
            notification_con_every: 20,
            leisure: Duration::from_secs(5),
            multicast_timeout: Duration::from_secs(8),
            amplification_mitigation: true,
            echo_lifetime: Duration::from_secs(30),
            verified_lifetime: Duration::from_secs(3600),
            max_verified_remotes: 65_536,
            seed: 0,
        }
    }
}

/// A [`Config`] value out of range.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// The named field is out of range; the text says the allowed range.
    #[error("config field `{field}` is out of range: {allowed}")]
    OutOfRange {
        /// The field.
        field: &'static str,
        /// What it may be.
        allowed: &'static str,
    },
}

impl Config {
    /// Sets the seed.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Checks every field; [`Endpoint::new`](super::Endpoint::new) clamps what this reports into range.
    ///
    /// # Errors
    ///
    /// The first field out of range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |field, allowed| Err(ConfigError::OutOfRange { field, allowed });
        if self.ack_timeout.is_zero() || self.ack_timeout > Duration::from_secs(3600) {
            return err("ack_timeout", "more than 0 and at most 1 hour");
        }
        if !(1.0..=10.0).contains(&self.ack_random_factor) {
            return err("ack_random_factor", "1.0 to 10.0");
        }
        if self.max_retransmit > 20 {
            return err("max_retransmit", "0 to 20");
        }
        if self.nstart == 0 {
            return err("nstart", "at least 1");
        }
        if self.token_length > 8 {
            return err("token_length", "0 to 8");
        }
        if !matches!(self.separate_response_type, Type::Con | Type::Non) {
            return err("separate_response_type", "Con or Non");
        }
        if !(16..=1024).contains(&self.block_size) || !self.block_size.is_power_of_two() {
            return err("block_size", "16, 32, 64, 128, 256, 512 or 1024");
        }
        let day = Duration::from_secs(24 * 3600);
        if self.non_timeout > day || self.separate_timeout > day {
            return err("non_timeout / separate_timeout", "at most a day");
        }
        if self.empty_ack_delay > Duration::from_secs(3600)
            || self.leisure > Duration::from_secs(3600)
        {
            return err("empty_ack_delay / leisure", "at most an hour");
        }
        if self.max_observers_per_resource > 1 << 24 {
            return err("max_observers_per_resource", "at most 16777216");
        }
        if self.echo_lifetime > day || self.verified_lifetime > day {
            return err("echo_lifetime / verified_lifetime", "at most a day");
        }
        if self.max_pending_requests == 0 {
            return err("max_pending_requests", "at least 1");
        }
        Ok(())
    }

    /// A copy with every field clamped into its valid range.
    pub(crate) fn sanitized(&self) -> Self {
        let mut c = self.clone();
        c.ack_timeout = c
            .ack_timeout
            .clamp(Duration::from_millis(1), Duration::from_secs(3600));
        c.ack_random_factor = if c.ack_random_factor.is_nan() {
            1.5
        } else {
            c.ack_random_factor.clamp(1.0, 10.0)
        };
        c.max_retransmit = c.max_retransmit.min(20);
        c.nstart = c.nstart.max(1);
        c.token_length = c.token_length.min(8);
        if c.separate_response_type != Type::Non {
            c.separate_response_type = Type::Con;
        }
        c.block_size = 1 << (crate::message::BlockValue::szx_for_size(c.block_size) + 4);
        // Durations added to an Instant must not overflow it: a day is plenty for each.
        let day = Duration::from_secs(24 * 3600);
        c.non_timeout = c.non_timeout.min(day);
        c.separate_timeout = c.separate_timeout.min(day);
        c.empty_ack_delay = c.empty_ack_delay.min(Duration::from_secs(3600));
        c.leisure = c.leisure.min(Duration::from_secs(3600));
        c.multicast_timeout = c.multicast_timeout.min(day);
        c.max_observers_per_resource = c.max_observers_per_resource.min(1 << 24);
        c.notification_con_every = c.notification_con_every.max(1);
        if c.notification_type != Type::Con {
            c.notification_type = Type::Non;
        }
        c.max_pending_requests = c.max_pending_requests.max(1);
        c.echo_lifetime = c.echo_lifetime.min(day);
        c.verified_lifetime = c.verified_lifetime.min(day);
        c
    }

    /// MAX_TRANSMIT_SPAN: from the first transmission of a Confirmable message to its last
    /// retransmission (45 s by default).
    pub fn max_transmit_span(&self) -> Duration {
        self.ack_timeout
            .mul_f64(((1u64 << self.max_retransmit.min(20)) - 1) as f64 * self.ack_random_factor)
    }

    /// MAX_TRANSMIT_WAIT: from the first transmission of a Confirmable message to the moment
    /// the sender gives up (93 s by default).
    pub fn max_transmit_wait(&self) -> Duration {
        self.ack_timeout.mul_f64(
            ((1u64 << (self.max_retransmit.min(20) + 1)) - 1) as f64 * self.ack_random_factor,
        )
    }

    /// EXCHANGE_LIFETIME: how long a Confirmable message's ID stays in use, and how long a
    /// received one is remembered (247 s by default).
    pub fn exchange_lifetime(&self) -> Duration {
        self.max_transmit_span() + 2 * MAX_LATENCY + self.ack_timeout
    }

    /// NON_LIFETIME: how long a received Non-confirmable message is remembered (145 s by
    /// default).
    pub fn non_lifetime(&self) -> Duration {
        self.max_transmit_span() + MAX_LATENCY
    }
}

/// MAX_LATENCY of RFC 7252 §4.8.2.
const MAX_LATENCY: Duration = Duration::from_secs(100);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_derived_values() {
        let c = Config::default();
        assert_eq!(c.max_transmit_span(), Duration::from_secs(45));
        assert_eq!(c.max_transmit_wait(), Duration::from_secs(93));
        assert_eq!(c.exchange_lifetime(), Duration::from_secs(247));
        assert_eq!(c.non_lifetime(), Duration::from_secs(145));
        assert!(c.validate().is_ok());
    }

    #[test]
    fn validation_and_clamping() {
        let c = Config {
            nstart: 0,
            ack_random_factor: f64::NAN,
            token_length: 20,
            ..Config::default()
        };
        assert!(c.validate().is_err());
        let s = c.sanitized();
        assert!(s.validate().is_ok(), "{s:?}");
        assert_eq!((s.nstart, s.token_length), (1, 8));
    }
}

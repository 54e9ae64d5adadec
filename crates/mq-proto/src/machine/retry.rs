//! Failure classification, backoff and per-request retry decisions.
//!
//! * [`FailureKind`] says what went wrong with one attempt, in transport-neutral terms.
//! * [`RetryConfig`] holds the policy (attempts, backoff, time budget, publish semantics).
//! * [`Backoff`] computes the delays: capped exponential growth with seeded jitter.
//! * [`RetryState`] tracks one logical request and answers [`RetryDecision`] per failure.
//!
//! Nothing here reads a clock: `now` is an argument, and randomness comes from a seed.

use std::time::{Duration, Instant};

use crate::ops::ErrorCode;

/// What went wrong with one attempt of a request.
///
/// The runtime driver builds this from its transport error or from a decoded error response.
/// Two questions classify it: can repeating the request ever succeed
/// ([`is_transient`](Self::is_transient)), and may this attempt have reached the server
/// ([`request_may_have_reached_server`](Self::request_may_have_reached_server)).
///
/// ```
/// use mq_proto::ErrorCode;
/// use mq_proto::machine::FailureKind;
///
/// assert!(FailureKind::Connect.is_transient());
/// assert!(!FailureKind::Connect.request_may_have_reached_server());
/// assert!(!FailureKind::Tls.is_transient());
/// assert!(!FailureKind::Tls.request_may_have_reached_server());
/// assert!(FailureKind::status(500, Some(ErrorCode::InternalError)).is_transient());
/// assert!(FailureKind::status(400, Some(ErrorCode::QpsLimitExceeded)).is_transient());
/// assert!(!FailureKind::status(403, Some(ErrorCode::SignatureDoesNotMatch)).is_transient());
/// assert!(!FailureKind::status(505, Some(ErrorCode::InternalError)).is_transient());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailureKind {
    /// Could not connect (DNS, refused, connect timeout, an I/O failure or reset during the
    /// TLS handshake): the request was provably not sent, and a later attempt may connect.
    Connect,
    /// The TLS handshake failed for a reason a new connection cannot change: the server's
    /// certificate was refused (unknown issuer, wrong host name, expired, bad signature), the
    /// host is not a valid TLS server name, the peer is incompatible or broke the protocol,
    /// or it sent a fatal alert such as `bad_certificate` or `unknown_ca`. The request was
    /// provably not sent. Never retried.
    Tls,
    /// A pooled connection was found closed before the request was written: provably not sent.
    NotSent,
    /// The connection was reset or closed after the request may have been sent.
    ConnectionLost,
    /// No (complete) answer within the configured time; the request may have been processed.
    Timeout,
    /// The service answered with an error status.
    Status {
        /// HTTP status code.
        status: u16,
        /// Error code from the `Error` body, when there was one.
        code: Option<ErrorCode>,
    },
    /// The answer could not be decoded (an undecodable 2xx, a 1xx/3xx status, invalid HTTP,
    /// an oversize body) or contradicts the request (body MD5). An error status with an
    /// unexpected body (a proxy's HTML page on a 502) is a [`FailureKind::Status`], not this.
    InvalidResponse,
    /// The driver abandoned the request on purpose (for example on shutdown). Never retried.
    Cancelled,
    /// Anything else (for example a local configuration problem). Never retried.
    Other,
}

impl FailureKind {
    /// A service error with this status and optional code.
    pub fn status(status: u16, code: Option<ErrorCode>) -> Self {
        Self::Status { status, code }
    }

    /// Whether repeating the request may ever succeed.
    ///
    /// Transient: connection failures other than TLS refusals ([`Connect`](Self::Connect),
    /// [`NotSent`](Self::NotSent)), [`ConnectionLost`](Self::ConnectionLost),
    /// [`Timeout`](Self::Timeout), throttling (`Throttling`, `QpsLimitExceeded`, status 429
    /// or 503), the service's `RequestTimeout`, a `408` other than `TimeExpired`, and server
    /// faults (5xx, or an `InternalError`/`InternalServerError` code).
    ///
    /// Final: [`Tls`](Self::Tls); client errors (other 4xx: authentication, `TimeExpired` —
    /// every attempt is signed with a fresh `Date`, so the local clock is off —,
    /// `InvalidArgument`, `TopicNotExist`, `MessageNotExist` on an ack or a decision, 413,
    /// ...); the 5xx statuses that state a fixed property of the server (501 Not Implemented,
    /// 505 HTTP Version Not Supported, 506, 508, 510, 511); undecodable answers,
    /// cancellations and [`FailureKind::Other`].
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Connect | Self::NotSent | Self::ConnectionLost | Self::Timeout => true,
            Self::Status { status, code } => status_is_transient(*status, code.as_ref()),
            Self::Tls | Self::InvalidResponse | Self::Cancelled | Self::Other => false,
        }
    }

    /// Whether the service asked the client to slow down (`Throttling`, `QpsLimitExceeded`,
    /// status 429 or 503).
    pub fn is_throttling(&self) -> bool {
        match self {
            Self::Status { status, code } => {
                matches!(status, 429 | 503)
                    || matches!(
                        code,
                        Some(ErrorCode::Throttling | ErrorCode::QpsLimitExceeded)
                    )
            }
            _ => false,
        }
    }

    /// Whether the request may have reached the server (and may have been processed).
    ///
    /// Only [`FailureKind::Connect`], [`FailureKind::Tls`] and [`FailureKind::NotSent`] prove
    /// that it did not.
    pub fn request_may_have_reached_server(&self) -> bool {
        !matches!(self, Self::Connect | Self::Tls | Self::NotSent)
    }

    /// Whether the server may have acted on the request: it may have reached the server
    /// ([`request_may_have_reached_server`](Self::request_may_have_reached_server)) and its
    /// answer, if any, does not say it was refused as a whole. An answer with a 1xx–4xx status
    /// (a 4xx is a refusal; 429 is throttling) or a throttling 503 / `Throttling` /
    /// `QpsLimitExceeded` says the request was not carried out; a connection lost after
    /// sending, a timeout, an undecodable answer or another 5xx leave it open.
    ///
    /// This decides whether a resent ack, commit or rollback may meet the effect of an earlier
    /// attempt: only then is a per-handle `MessageNotExist`/`ReceiptHandleError` read as "the
    /// earlier attempt settled it".
    ///
    /// ```
    /// use mq_proto::ErrorCode;
    /// use mq_proto::machine::FailureKind;
    ///
    /// assert!(FailureKind::Timeout.may_have_taken_effect());
    /// assert!(FailureKind::status(500, Some(ErrorCode::InternalError)).may_have_taken_effect());
    /// assert!(!FailureKind::status(503, Some(ErrorCode::Throttling)).may_have_taken_effect());
    /// assert!(!FailureKind::status(429, None).may_have_taken_effect());
    /// assert!(!FailureKind::status(403, Some(ErrorCode::AccessDenied)).may_have_taken_effect());
    /// assert!(!FailureKind::Connect.may_have_taken_effect());
    /// ```
    pub fn may_have_taken_effect(&self) -> bool {
        match self {
            Self::Status { status, .. } => *status >= 500 && !self.is_throttling(),
            other => other.request_may_have_reached_server(),
        }
    }
}

/// [`FailureKind::is_transient`] of an error status: the code, when it says, before the
/// status.
fn status_is_transient(status: u16, code: Option<&ErrorCode>) -> bool {
    match code {
        Some(ErrorCode::Throttling | ErrorCode::QpsLimitExceeded) => return true,
        Some(ErrorCode::Other(c)) if c == "RequestTimeout" => return true,
        // The `Date` is more than 15 minutes from the server's clock; every attempt is signed
        // with the current local time, so a resend is just as late.
        Some(ErrorCode::TimeExpired) => return false,
        _ => {}
    }
    match status {
        // Request Timeout (from the service or a proxy), Too Many Requests.
        408 | 429 => true,
        // Not Implemented, HTTP Version Not Supported, Variant Also Negotiates, Loop
        // Detected, Not Extended, Network Authentication Required: the server (or a proxy)
        // states a fixed property; no resend changes it.
        501 | 505 | 506 | 508 | 510 | 511 => false,
        500..=599 => true,
        _ => matches!(
            code,
            Some(ErrorCode::InternalError | ErrorCode::InternalServerError)
        ),
    }
}

/// How a backoff delay is randomised (all variants are capped by
/// [`RetryConfig::max_backoff`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Jitter {
    /// No randomness: `initial · multiplierⁿ`.
    None,
    /// "Full jitter": uniform in `[0, initial · multiplierⁿ]`.
    #[default]
    Full,
    /// "Decorrelated jitter": uniform in `[initial, previous · multiplier]`.
    Decorrelated,
}

/// Retry policy: attempts, backoff and time budget.
///
/// ```
/// use std::time::Duration;
/// use mq_proto::machine::RetryConfig;
///
/// let c = RetryConfig::default()
///     .with_max_attempts(5)
///     .with_initial_backoff(Duration::from_millis(50))
///     .with_budget(Duration::from_secs(10));
/// assert_eq!(c.max_attempts(), 5);
/// assert_eq!(RetryConfig::disabled().max_attempts(), 1);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct RetryConfig {
    max_attempts: u32,
    initial_backoff: Duration,
    max_backoff: Duration,
    multiplier: f64,
    jitter: Jitter,
    budget: Duration,
    publish_at_least_once: bool,
}

impl Default for RetryConfig {
    /// 3 attempts, 100 ms initial backoff doubling up to 5 s, full jitter, 30 s budget,
    /// at-most-once publish.
    fn default() -> Self {
        Self {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            multiplier: 2.0,
            jitter: Jitter::Full,
            budget: Duration::from_secs(30),
            publish_at_least_once: false,
        }
    }
}

impl RetryConfig {
    /// A policy that never retries (one attempt).
    pub fn disabled() -> Self {
        Self::default().with_max_attempts(1)
    }

    /// Attempts per request, the first included (0 is treated as 1).
    #[must_use]
    pub fn with_max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = n.max(1);
        self
    }

    /// Delay before the first retry (before jitter).
    #[must_use]
    pub fn with_initial_backoff(mut self, d: Duration) -> Self {
        self.initial_backoff = d;
        self
    }

    /// Upper bound of any single delay.
    #[must_use]
    pub fn with_max_backoff(mut self, d: Duration) -> Self {
        self.max_backoff = d;
        self
    }

    /// Growth factor per failure; values below 1 or not finite are treated as 1.
    #[must_use]
    pub fn with_multiplier(mut self, m: f64) -> Self {
        self.multiplier = if m.is_finite() && m >= 1.0 { m } else { 1.0 };
        self
    }

    /// How delays are randomised.
    #[must_use]
    pub fn with_jitter(mut self, jitter: Jitter) -> Self {
        self.jitter = jitter;
        self
    }

    /// Total time a request may take from its first attempt; no retry starts after it.
    #[must_use]
    pub fn with_budget(mut self, d: Duration) -> Self {
        self.budget = d;
        self
    }

    /// Retry publishes even when the failed attempt may have reached the server (possible
    /// duplicates: at-least-once). Off by default: publishes are then retried only when the
    /// request was provably not sent or was refused by a throttling answer (`Throttling`,
    /// `QpsLimitExceeded`, 429): either way nothing was stored.
    #[must_use]
    pub fn with_publish_at_least_once(mut self, on: bool) -> Self {
        self.publish_at_least_once = on;
        self
    }

    /// Attempts per request, the first included.
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// Delay before the first retry (before jitter).
    pub fn initial_backoff(&self) -> Duration {
        self.initial_backoff
    }

    /// Upper bound of any single delay.
    pub fn max_backoff(&self) -> Duration {
        self.max_backoff
    }

    /// Growth factor per failure.
    pub fn multiplier(&self) -> f64 {
        self.multiplier
    }

    /// How delays are randomised.
    pub fn jitter(&self) -> Jitter {
        self.jitter
    }

    /// Total time budget of a request.
    pub fn budget(&self) -> Duration {
        self.budget
    }

    /// Whether publishes are retried at-least-once.
    pub fn publish_at_least_once(&self) -> bool {
        self.publish_at_least_once
    }
}

/// Whether resending a request is harmless.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Idempotency {
    /// Consume, ack, commit and rollback: safe to resend.
    ///
    /// A resent ack (or commit/rollback) whose first attempt did reach the server may be
    /// answered with a per-handle `MessageNotExist`/`ReceiptHandleError` for the handles that
    /// attempt already settled; the consumer and checker machines treat those answers as
    /// success for a resent request.
    Idempotent,
    /// Publish: a resend may store the message twice.
    NonIdempotent,
}

/// Smallest delay [`Backoff`] ever returns, so that a failure never triggers a resend at the
/// same instant.
pub const MIN_BACKOFF: Duration = Duration::from_millis(1);

/// Capped exponential backoff with seeded jitter, without an attempt limit.
///
/// Used directly by loops that never give up (the consumer's receive loop) and by
/// [`RetryState`] for single requests.
///
/// ```
/// use std::time::Duration;
/// use mq_proto::machine::{Backoff, Jitter, RetryConfig};
///
/// let config = RetryConfig::default().with_jitter(Jitter::None);
/// let mut b = Backoff::new(&config, 7);
/// assert_eq!(b.next_delay(), Duration::from_millis(100));
/// assert_eq!(b.next_delay(), Duration::from_millis(200));
/// b.reset();
/// assert_eq!(b.next_delay(), Duration::from_millis(100));
/// ```
#[derive(Clone, Debug)]
pub struct Backoff {
    initial_ns: u64,
    max_ns: u64,
    multiplier: f64,
    jitter: Jitter,
    rng: fastrand::Rng,
    failures: u32,
    prev_ns: u64,
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// `a · b` for a non-negative finite `b`, saturating at `cap`.
fn scale(a: u64, b: f64, cap: u64) -> u64 {
    // Precision loss is irrelevant for delays; the float is finite and ≥ 0 here.
    #[allow(clippy::cast_precision_loss)]
    let v = a as f64 * b;
    if !v.is_finite() || v >= cap as f64 {
        cap
    } else {
        // v is in [0, cap): the cast cannot truncate meaningfully.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let r = v as u64;
        r.min(cap)
    }
}

impl Backoff {
    /// A backoff following `config`, with jitter drawn from a RNG seeded with `seed`.
    pub fn new(config: &RetryConfig, seed: u64) -> Self {
        let max_ns = nanos(config.max_backoff);
        Self {
            initial_ns: nanos(config.initial_backoff).min(max_ns),
            max_ns,
            multiplier: config.multiplier,
            jitter: config.jitter,
            rng: fastrand::Rng::with_seed(seed),
            failures: 0,
            prev_ns: 0,
        }
    }

    /// Failures since the last [`reset`](Self::reset).
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// The delay after one more failure (at least [`MIN_BACKOFF`]).
    pub fn next_delay(&mut self) -> Duration {
        let exp = i32::try_from(self.failures).unwrap_or(i32::MAX);
        let ceiling = scale(self.initial_ns, self.multiplier.powi(exp), self.max_ns);
        let ns = match self.jitter {
            Jitter::None => ceiling,
            Jitter::Full => self.rng.u64(0..=ceiling),
            Jitter::Decorrelated => {
                let prev = if self.failures == 0 {
                    self.initial_ns
                } else {
                    self.prev_ns
                };
                let hi = scale(prev, self.multiplier, self.max_ns).max(self.initial_ns);
                self.rng.u64(self.initial_ns..=hi)
            }
        };
        self.failures = self.failures.saturating_add(1);
        self.prev_ns = ns;
        Duration::from_nanos(ns).max(MIN_BACKOFF)
    }

    /// Forgets past failures (call after a success).
    pub fn reset(&mut self) {
        self.failures = 0;
        self.prev_ns = 0;
    }
}

/// What to do after a failed attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetryDecision {
    /// Send the request again after this delay.
    Retry {
        /// Delay from the failure.
        after: Duration,
    },
    /// Report the failure; no more attempts.
    GiveUp,
}

/// Retry bookkeeping of one logical request (all its attempts).
///
/// ```
/// use std::time::{Duration, Instant};
/// use mq_proto::machine::{FailureKind, Idempotency, RetryConfig, RetryDecision, RetryState};
///
/// let start = Instant::now();
/// let mut publish = RetryState::new(RetryConfig::default(), Idempotency::NonIdempotent, 1, start);
/// // The request may have been stored: at-most-once publish does not resend it.
/// assert_eq!(publish.on_failure(start, &FailureKind::Timeout), RetryDecision::GiveUp);
///
/// let mut ack = RetryState::new(RetryConfig::default(), Idempotency::Idempotent, 1, start);
/// assert!(matches!(ack.on_failure(start, &FailureKind::Timeout), RetryDecision::Retry { .. }));
/// assert_eq!(ack.attempts(), 2);
/// ```
#[derive(Clone, Debug)]
pub struct RetryState {
    config: RetryConfig,
    idempotency: Idempotency,
    backoff: Backoff,
    deadline: Option<Instant>,
    attempts: u32,
    may_have_reached_server: bool,
    may_have_taken_effect: bool,
}

impl RetryState {
    /// State for a request whose first attempt starts at `start`.
    pub fn new(config: RetryConfig, idempotency: Idempotency, seed: u64, start: Instant) -> Self {
        let backoff = Backoff::new(&config, seed);
        let deadline = start.checked_add(config.budget);
        Self {
            config,
            idempotency,
            backoff,
            deadline,
            attempts: 1,
            may_have_reached_server: false,
            may_have_taken_effect: false,
        }
    }

    /// Attempts started so far, the first included.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// Whether an earlier failed attempt may have reached the server (so a resend may meet
    /// the effects of that attempt).
    pub fn earlier_attempt_may_have_reached_server(&self) -> bool {
        self.may_have_reached_server
    }

    /// Whether an earlier failed attempt may have taken effect at the server
    /// ([`FailureKind::may_have_taken_effect`]): only then may a resend meet its effects.
    pub fn earlier_attempt_may_have_taken_effect(&self) -> bool {
        self.may_have_taken_effect
    }

    /// The instant after which no retry starts (`None` if the budget overflows `Instant`).
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// The policy in use.
    pub fn config(&self) -> &RetryConfig {
        &self.config
    }

    /// Decides about the attempt that just failed at `now`.
    ///
    /// Gives up when the failure is not transient, when a non-idempotent request may have
    /// taken effect ([`FailureKind::may_have_taken_effect`]: it reached the server and was
    /// not refused by a throttling answer; unless [`RetryConfig::with_publish_at_least_once`]), when the
    /// attempts are used up, or when the retry would start after the budget. On `Retry` the
    /// attempt counter is incremented.
    pub fn on_failure(&mut self, now: Instant, failure: &FailureKind) -> RetryDecision {
        if failure.request_may_have_reached_server() {
            self.may_have_reached_server = true;
        }
        if failure.may_have_taken_effect() {
            self.may_have_taken_effect = true;
        }
        if !failure.is_transient() {
            return RetryDecision::GiveUp;
        }
        // A publish is resent only when the failed attempt cannot have stored it: not sent,
        // or refused as a whole by a throttling answer (the service did not carry it out).
        if self.idempotency == Idempotency::NonIdempotent
            && failure.may_have_taken_effect()
            && !self.config.publish_at_least_once
        {
            return RetryDecision::GiveUp;
        }
        if self.attempts >= self.config.max_attempts {
            return RetryDecision::GiveUp;
        }
        let after = self.backoff.next_delay();
        if let Some(deadline) = self.deadline {
            match now.checked_add(after) {
                Some(at) if at <= deadline => {}
                _ => return RetryDecision::GiveUp,
            }
        }
        self.attempts += 1;
        RetryDecision::Retry { after }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tests need some `Instant`; only the test itself reads the clock.
    #[allow(clippy::disallowed_methods)]
    fn start() -> Instant {
        Instant::now()
    }

    fn st(status: u16, code: Option<ErrorCode>) -> FailureKind {
        FailureKind::status(status, code)
    }

    /// The whole classification, row by row: (failure, can a repeat succeed?, may this
    /// attempt have reached the server?). RELIABILITY.md ("Which failures are retried")
    /// documents the same table.
    #[test]
    fn classification_table() {
        use ErrorCode as E;
        let other = |c: &str| Some(E::Other(c.into()));
        let table: Vec<(FailureKind, bool, bool)> = vec![
            // Below HTTP.
            (FailureKind::Connect, true, false),
            (FailureKind::Tls, false, false),
            (FailureKind::NotSent, true, false),
            (FailureKind::ConnectionLost, true, true),
            (FailureKind::Timeout, true, true),
            (FailureKind::InvalidResponse, false, true),
            (FailureKind::Cancelled, false, true),
            (FailureKind::Other, false, true),
            // Server faults and throttling.
            (st(500, Some(E::InternalError)), true, true),
            (st(500, Some(E::InternalServerError)), true, true),
            (st(500, None), true, true),
            (st(502, None), true, true),
            (st(502, Some(E::InternalError)), true, true),
            (st(503, None), true, true),
            (st(503, Some(E::InternalError)), true, true),
            (st(503, Some(E::Throttling)), true, true),
            (st(504, Some(E::InternalError)), true, true),
            (st(507, Some(E::InternalError)), true, true),
            (st(400, Some(E::Throttling)), true, true),
            (st(400, Some(E::QpsLimitExceeded)), true, true),
            (st(429, None), true, true),
            (st(429, other("HTTP429")), true, true),
            (st(400, other("RequestTimeout")), true, true),
            (st(503, other("RequestTimeout")), true, true),
            (st(408, other("HTTP408")), true, true),
            (st(408, None), true, true),
            // 5xx stating a fixed property of the server (the code is derived from the
            // status when the body has none).
            (st(501, Some(E::InternalError)), false, true),
            (st(505, Some(E::InternalError)), false, true),
            (st(505, None), false, true),
            (st(506, None), false, true),
            (st(508, None), false, true),
            (st(510, None), false, true),
            (st(511, Some(E::InternalError)), false, true),
            // Client errors: the same request gets the same answer.
            (st(408, Some(E::TimeExpired)), false, true),
            (st(403, Some(E::TimeExpired)), false, true),
            (st(400, Some(E::InvalidArgument)), false, true),
            (st(400, Some(E::MalformedXml)), false, true),
            (st(400, Some(E::InvalidDigest)), false, true),
            (st(400, Some(E::InvalidQueryString)), false, true),
            (st(400, Some(E::InvalidRequestUrl)), false, true),
            (st(400, Some(E::MissingReceiptHandle)), false, true),
            (st(400, Some(E::MissingAuthorizationHeader)), false, true),
            (st(400, Some(E::InvalidAuthorizationHeader)), false, true),
            (st(400, Some(E::MissingDateHeader)), false, true),
            (st(400, Some(E::InvalidDateHeader)), false, true),
            (st(403, Some(E::SignatureDoesNotMatch)), false, true),
            (st(403, Some(E::AccessDenied)), false, true),
            (st(403, Some(E::InvalidAccessKeyId)), false, true),
            (st(403, other("HTTPForbidden")), false, true),
            (st(404, Some(E::TopicNotExist)), false, true),
            (st(404, Some(E::SubscriptionNotExist)), false, true),
            (st(404, Some(E::MessageNotExist)), false, true),
            (st(404, Some(E::ReceiptHandleError)), false, true),
            (st(409, other("StateConflict")), false, true),
            (st(413, other("HTTP413")), false, true),
            (st(400, other("HTTP400")), false, true),
            (st(400, None), false, true),
            (st(302, None), false, true),
            // The service's word on its own fault wins over a 4xx status.
            (st(400, Some(E::InternalError)), true, true),
        ];
        for (f, transient, reached) in table {
            assert_eq!(f.is_transient(), transient, "{f:?}");
            assert_eq!(f.request_may_have_reached_server(), reached, "{f:?}");
        }
        assert!(st(429, None).is_throttling());
        assert!(st(503, None).is_throttling());
        assert!(st(400, Some(E::QpsLimitExceeded)).is_throttling());
        assert!(!st(500, None).is_throttling());
        assert!(!FailureKind::Timeout.is_throttling());
        assert!(!FailureKind::Tls.is_throttling());
    }

    #[test]
    fn backoff_grows_exponentially_and_caps() {
        let c = RetryConfig::default()
            .with_jitter(Jitter::None)
            .with_initial_backoff(Duration::from_millis(100))
            .with_max_backoff(Duration::from_millis(1000));
        let mut b = Backoff::new(&c, 0);
        let got: Vec<u128> = (0..7).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(got, vec![100, 200, 400, 800, 1000, 1000, 1000]);
        assert_eq!(b.failures(), 7);
        // Very many failures: no overflow, still capped.
        for _ in 0..10_000 {
            assert_eq!(b.next_delay(), Duration::from_millis(1000));
        }
    }

    #[test]
    fn full_jitter_stays_in_bounds() {
        let c = RetryConfig::default().with_max_backoff(Duration::from_secs(2));
        let mut b = Backoff::new(&c, 42);
        for n in 0..40u32 {
            let d = b.next_delay();
            let ceiling = (100u64 << n.min(20)).min(2000);
            assert!(d >= MIN_BACKOFF, "{d:?}");
            assert!(d <= Duration::from_millis(ceiling), "{n}: {d:?}");
        }
    }

    #[test]
    fn decorrelated_jitter_stays_in_bounds() {
        let c = RetryConfig::default()
            .with_jitter(Jitter::Decorrelated)
            .with_multiplier(3.0)
            .with_max_backoff(Duration::from_secs(3));
        let mut b = Backoff::new(&c, 9);
        let mut prev = Duration::from_millis(100);
        for _ in 0..200 {
            let d = b.next_delay();
            assert!(d >= Duration::from_millis(100));
            assert!(
                d <= (prev * 3)
                    .min(Duration::from_secs(3))
                    .max(Duration::from_millis(100))
            );
            prev = d;
        }
    }

    #[test]
    fn jitter_is_deterministic_per_seed() {
        let c = RetryConfig::default();
        let run = |seed| {
            let mut b = Backoff::new(&c, seed);
            (0..10).map(|_| b.next_delay()).collect::<Vec<_>>()
        };
        assert_eq!(run(5), run(5));
        assert_ne!(run(5), run(6));
    }

    #[test]
    fn zero_backoff_is_floored() {
        let c = RetryConfig::default()
            .with_initial_backoff(Duration::ZERO)
            .with_jitter(Jitter::None);
        let mut b = Backoff::new(&c, 1);
        assert_eq!(b.next_delay(), MIN_BACKOFF);
    }

    #[test]
    fn bad_multiplier_is_sanitised() {
        assert_eq!(
            RetryConfig::default()
                .with_multiplier(f64::NAN)
                .multiplier(),
            1.0
        );
        assert_eq!(
            RetryConfig::default().with_multiplier(0.5).multiplier(),
            1.0
        );
        assert_eq!(
            RetryConfig::default().with_max_attempts(0).max_attempts(),
            1
        );
    }

    #[test]
    fn attempts_are_limited() {
        let t0 = start();
        let mut r = RetryState::new(RetryConfig::default(), Idempotency::Idempotent, 3, t0);
        assert!(matches!(
            r.on_failure(t0, &FailureKind::Timeout),
            RetryDecision::Retry { .. }
        ));
        assert!(matches!(
            r.on_failure(t0, &FailureKind::Timeout),
            RetryDecision::Retry { .. }
        ));
        assert_eq!(r.attempts(), 3);
        assert_eq!(
            r.on_failure(t0, &FailureKind::Timeout),
            RetryDecision::GiveUp
        );
        let mut d = RetryState::new(RetryConfig::disabled(), Idempotency::Idempotent, 3, t0);
        assert_eq!(
            d.on_failure(t0, &FailureKind::Connect),
            RetryDecision::GiveUp
        );
    }

    #[test]
    fn non_transient_gives_up_at_once() {
        let t0 = start();
        let mut r = RetryState::new(RetryConfig::default(), Idempotency::Idempotent, 3, t0);
        let auth = st(403, Some(ErrorCode::SignatureDoesNotMatch));
        assert_eq!(r.on_failure(t0, &auth), RetryDecision::GiveUp);
        assert_eq!(r.attempts(), 1);
        // A refused certificate: not sent, yet never resent (a new handshake fails the same way).
        let mut tls = RetryState::new(RetryConfig::default(), Idempotency::Idempotent, 3, t0);
        assert_eq!(tls.on_failure(t0, &FailureKind::Tls), RetryDecision::GiveUp);
        assert_eq!(tls.attempts(), 1);
        assert!(!tls.earlier_attempt_may_have_reached_server());
    }

    #[test]
    fn budget_is_never_exceeded() {
        let t0 = start();
        let c = RetryConfig::default()
            .with_max_attempts(100)
            .with_jitter(Jitter::None)
            .with_initial_backoff(Duration::from_secs(1))
            .with_max_backoff(Duration::from_secs(1))
            .with_budget(Duration::from_millis(2500));
        let mut r = RetryState::new(c, Idempotency::Idempotent, 3, t0);
        let mut now = t0;
        let mut retries = 0;
        while let RetryDecision::Retry { after } = r.on_failure(now, &FailureKind::Timeout) {
            now += after;
            assert!(now <= t0 + Duration::from_millis(2500));
            retries += 1;
        }
        assert_eq!(retries, 2);
        // Late failure: no retry at all.
        let mut late = RetryState::new(RetryConfig::default(), Idempotency::Idempotent, 3, t0);
        let after_budget = t0 + Duration::from_secs(31);
        assert_eq!(
            late.on_failure(after_budget, &FailureKind::Connect),
            RetryDecision::GiveUp
        );
    }

    #[test]
    fn publish_is_retried_only_when_provably_not_stored() {
        let t0 = start();
        let new = |c: RetryConfig| RetryState::new(c, Idempotency::NonIdempotent, 1, t0);
        for f in [FailureKind::Connect, FailureKind::NotSent] {
            let mut r = new(RetryConfig::default());
            assert!(
                matches!(r.on_failure(t0, &f), RetryDecision::Retry { .. }),
                "{f:?}"
            );
            assert!(!r.earlier_attempt_may_have_reached_server());
        }
        // A throttling refusal did not store the message: resent even at most once.
        for f in [st(503, Some(ErrorCode::Throttling)), st(429, None)] {
            let mut r = new(RetryConfig::default());
            assert!(
                matches!(r.on_failure(t0, &f), RetryDecision::Retry { .. }),
                "{f:?}"
            );
        }
        for f in [
            FailureKind::ConnectionLost,
            FailureKind::Timeout,
            st(500, None),
        ] {
            let mut r = new(RetryConfig::default());
            assert_eq!(r.on_failure(t0, &f), RetryDecision::GiveUp, "{f:?}");
            let mut alo = new(RetryConfig::default().with_publish_at_least_once(true));
            assert!(
                matches!(alo.on_failure(t0, &f), RetryDecision::Retry { .. }),
                "{f:?}"
            );
            assert!(alo.earlier_attempt_may_have_reached_server());
        }
        // At-least-once does not make client errors retryable.
        let mut alo = new(RetryConfig::default().with_publish_at_least_once(true));
        assert_eq!(
            alo.on_failure(t0, &st(400, Some(ErrorCode::InvalidArgument))),
            RetryDecision::GiveUp
        );
    }
}

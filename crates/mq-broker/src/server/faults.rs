//! Fault injection (`--faults`): rules set through the admin API make protocol calls fail
//! the way the real service can — a protocol error document (`Throttling`,
//! `InternalError`, …, with its HTTP status), added latency, or a connection closed without
//! an answer — with a probability, for a number of calls, per operation. For testing the
//! retry logic of clients against the protocol's real error documents.
//!
//! A rule applies to requests that passed authentication and parsing (so the operation is
//! known) and is drawn before the backend sees them: a failed call changed nothing.

use mq_proto::ErrorCode;
use serde::Serialize;
use std::sync::Mutex;
use std::time::Duration;

/// What a rule does to a call it hits.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub(super) enum FaultAction {
    /// Answer with this protocol error (its HTTP status is the code's).
    Error {
        /// The `<Code>` sent.
        code: String,
    },
    /// Close the connection without answering.
    Reset,
    /// Only the rule's latency.
    Delay,
}

/// One rule.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(super) struct FaultRule {
    /// An operation name ([`mq_proto::server::Operation::name`]) or `any`.
    pub(super) operation: String,
    pub(super) action: FaultAction,
    /// Chance that a matching call is hit, 0..=1.
    pub(super) probability: f64,
    /// Added before the answer of a hit call, ms.
    pub(super) latency_ms: u64,
    /// Hits left; `None` = unlimited. A rule with none left is removed.
    pub(super) remaining: Option<u64>,
    /// Calls hit so far.
    pub(super) hits: u64,
}

/// What happens to one call.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Injected {
    pub(super) delay: Duration,
    pub(super) fail: Option<Fail>,
}

/// How a hit call fails.
#[derive(Debug, PartialEq)]
pub(super) enum Fail {
    Error(ErrorCode),
    Reset,
}

/// The fault rules of a server.
pub(super) struct Faults {
    enabled: bool,
    state: Mutex<(Vec<FaultRule>, fastrand::Rng)>,
}

impl Faults {
    pub(super) fn new(enabled: bool, seed: u64) -> Self {
        Self {
            enabled,
            state: Mutex::new((Vec::new(), fastrand::Rng::with_seed(seed))),
        }
    }

    pub(super) fn enabled(&self) -> bool {
        self.enabled
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (Vec<FaultRule>, fastrand::Rng)> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The rules in force.
    pub(super) fn rules(&self) -> Vec<FaultRule> {
        self.lock().0.clone()
    }

    /// Adds a rule; `false` (nothing added) when fault injection is off.
    pub(super) fn add(&self, rule: FaultRule) -> bool {
        if self.enabled {
            self.lock().0.push(rule);
        }
        self.enabled
    }

    /// Removes every rule.
    pub(super) fn clear(&self) {
        self.lock().0.clear();
    }

    /// Draws the rules for one call of `operation`: the latencies of the rules that hit
    /// add up; the first hit rule that fails the call decides how. A rule counts a hit (its
    /// `hits`, and one of its `count`) only when its answer is the one sent: once a rule
    /// fails the call, later failing rules are not drawn (latency-only rules still are: their
    /// delay is part of the answer).
    pub(super) fn draw(&self, operation: &str) -> Injected {
        let mut injected = Injected::default();
        if !self.enabled {
            return injected;
        }
        let mut state = self.lock();
        let (rules, rng) = &mut *state;
        for rule in rules.iter_mut() {
            if rule.operation != "any" && rule.operation != operation {
                continue;
            }
            let fails = !matches!(rule.action, FaultAction::Delay);
            if fails && injected.fail.is_some() {
                continue;
            }
            if rng.f64() >= rule.probability {
                continue;
            }
            rule.hits += 1;
            if let Some(left) = &mut rule.remaining {
                *left = left.saturating_sub(1);
            }
            injected.delay += Duration::from_millis(rule.latency_ms);
            match &rule.action {
                FaultAction::Error { code } => {
                    injected.fail = Some(Fail::Error(ErrorCode::parse(code)));
                }
                FaultAction::Reset => injected.fail = Some(Fail::Reset),
                FaultAction::Delay => {}
            }
        }
        rules.retain(|r| r.remaining != Some(0));
        injected
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(operation: &str, action: FaultAction, probability: f64) -> FaultRule {
        FaultRule {
            operation: operation.into(),
            action,
            probability,
            latency_ms: 5,
            remaining: Some(2),
            hits: 0,
        }
    }

    #[test]
    fn rules_match_by_operation_count_down_and_go() {
        let f = Faults::new(true, 7);
        let throttle = FaultAction::Error {
            code: "Throttling".into(),
        };
        assert!(f.add(rule("publish", throttle, 1.0)));
        assert_eq!(f.draw("consume"), Injected::default());
        for _ in 0..2 {
            let hit = f.draw("publish");
            assert_eq!(hit.fail, Some(Fail::Error(ErrorCode::Throttling)));
            assert_eq!(hit.delay, Duration::from_millis(5));
        }
        assert_eq!(
            f.draw("publish"),
            Injected::default(),
            "the rule is used up"
        );
        assert!(f.rules().is_empty());
    }

    #[test]
    fn a_rule_counts_only_the_calls_it_answered() {
        let f = Faults::new(true, 3);
        let error = |code: &str| FaultAction::Error { code: code.into() };
        let once = |action| FaultRule {
            remaining: Some(1),
            ..rule("publish", action, 1.0)
        };
        f.add(once(error("AccessDenied")));
        f.add(once(error("InternalError")));
        f.add(FaultRule {
            remaining: None,
            ..rule("publish", error("Throttling"), 1.0)
        });
        f.add(FaultRule {
            remaining: None,
            ..rule("publish", FaultAction::Delay, 1.0)
        });
        let codes: Vec<_> = (0..4).map(|_| f.draw("publish").fail).collect();
        assert_eq!(
            codes,
            [
                Some(Fail::Error(ErrorCode::AccessDenied)),
                Some(Fail::Error(ErrorCode::InternalError)),
                Some(Fail::Error(ErrorCode::Throttling)),
                Some(Fail::Error(ErrorCode::Throttling)),
            ]
        );
        let hits: Vec<_> = f.rules().iter().map(|r| r.hits).collect();
        assert_eq!(
            hits,
            [2, 4],
            "the unlimited error rule answered 2 calls; the delay, all 4"
        );
    }

    #[test]
    fn probability_zero_never_hits_and_off_adds_nothing() {
        let f = Faults::new(true, 1);
        f.add(rule("any", FaultAction::Reset, 0.0));
        for _ in 0..100 {
            assert_eq!(f.draw("ack").fail, None);
        }
        let off = Faults::new(false, 1);
        assert!(!off.add(rule("any", FaultAction::Reset, 1.0)));
        assert_eq!(off.draw("ack"), Injected::default());
    }

    #[test]
    fn a_half_probability_hits_about_half() {
        let f = Faults::new(true, 42);
        f.add(FaultRule {
            remaining: None,
            ..rule("any", FaultAction::Reset, 0.5)
        });
        let hits = (0..1000).filter(|_| f.draw("ack").fail.is_some()).count();
        assert!((400..600).contains(&hits), "{hits}");
    }
}

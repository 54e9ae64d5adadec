//! The polling slot shared by the consumer and checker machines: at most one poll in
//! flight, pacing of empty answers, backoff after failures.

use std::time::{Duration, Instant};

use super::Received;
use super::retry::{Backoff, FailureKind};
use crate::ops::ErrorCode;
use crate::types::BatchSize;

/// One outstanding poll (receive or half-message consume) and when the next may start.
#[derive(Debug)]
pub(super) struct PollSlot {
    in_flight: Option<(u64, Instant)>,
    not_before: Option<Instant>,
    backoff: Backoff,
    min_empty_interval: Duration,
}

impl PollSlot {
    pub(super) fn new(backoff: Backoff, min_empty_interval: Duration) -> Self {
        Self {
            in_flight: None,
            not_before: None,
            backoff,
            min_empty_interval,
        }
    }

    /// The id of the poll in flight, if any.
    pub(super) fn in_flight(&self) -> Option<u64> {
        self.in_flight.map(|(id, _)| id)
    }

    /// Starts a poll when none is in flight, pacing allows it at `now` and `room` > 0;
    /// returns its id (from `next_id`) and batch size (at most `room` and `max_batch`).
    pub(super) fn try_start(
        &mut self,
        now: Instant,
        room: usize,
        max_batch: BatchSize,
        next_id: impl FnOnce() -> u64,
    ) -> Option<(u64, BatchSize)> {
        if self.in_flight.is_some() || self.not_before.is_some_and(|t| t > now) {
            return None;
        }
        self.not_before = None;
        if room == 0 {
            return None;
        }
        let n = u8::try_from(room).unwrap_or(u8::MAX);
        let batch = BatchSize::new(n.min(max_batch.get())).unwrap_or(BatchSize::MIN);
        let id = next_id();
        self.in_flight = Some((id, now));
        Some((id, batch))
    }

    /// Records the answer to poll `id`: `None` for an answer to no poll in flight; otherwise
    /// the result, with a 404 `MessageNotExist` turned into an empty answer. An empty answer
    /// paces the next poll; a failure backs it off (unless `stopping`).
    pub(super) fn finish(
        &mut self,
        now: Instant,
        id: u64,
        result: Result<Received, FailureKind>,
        stopping: bool,
    ) -> Option<Result<Received, FailureKind>> {
        let (sent_id, sent_at) = self.in_flight?;
        if sent_id != id {
            return None;
        }
        self.in_flight = None;
        let result = match result {
            Err(FailureKind::Status {
                code: Some(ErrorCode::MessageNotExist),
                ..
            }) => Ok(Received::default()),
            other => other,
        };
        match &result {
            Ok(received) => {
                self.backoff.reset();
                let pace = sent_at.checked_add(self.min_empty_interval);
                if let Some(t) = pace.filter(|t| received.entries.is_empty() && *t > now) {
                    self.not_before = Some(t);
                }
            }
            Err(_) => {
                let delay = self.backoff.next_delay();
                if !stopping {
                    self.not_before = now.checked_add(delay);
                }
            }
        }
        Some(result)
    }

    /// Timer input: a pacing or backoff wait that has passed ends.
    pub(super) fn on_timeout(&mut self, now: Instant) {
        if self.not_before.is_some_and(|t| t <= now) {
            self.not_before = None;
        }
    }

    /// No more waiting for a next poll (shutdown).
    pub(super) fn stop(&mut self) {
        self.not_before = None;
    }

    /// When the next poll may start, if the machine is waiting for that.
    pub(super) fn wake_at(&self, stopping: bool) -> Option<Instant> {
        if stopping || self.in_flight.is_some() {
            None
        } else {
            self.not_before
        }
    }
}

//! Pure state machines: retry/backoff, consumer loop, transaction checker.

//! The time the application acts on. `core` takes time as an argument; this is where the
//! server gets it, so tests can move it instead of sleeping.

use std::sync::Mutex;

use chrono::{DateTime, Utc};

/// Where "now" comes from: every handler, worker and background loop asks it.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> DateTime<Utc>;
}

/// The system's clock: what every process runs on.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// The system's clock moved ahead by however much a test advanced it. It keeps running, so
/// leases, retries and polling behave as in production; `advance` makes time pass at once.
#[derive(Debug, Default)]
pub struct TestClock {
    offset: Mutex<chrono::Duration>,
}

impl TestClock {
    /// Moves this clock `by` ahead.
    pub fn advance(&self, by: std::time::Duration) {
        let by = chrono::Duration::from_std(by).expect("a duration a clock can move by");
        *self.offset.lock().expect("clock lock poisoned") += by;
    }
}

impl Clock for TestClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now() + *self.offset.lock().expect("clock lock poisoned")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_test_clock_moves_ahead_and_keeps_running() {
        let clock = TestClock::default();
        let before = Utc::now();
        clock.advance(std::time::Duration::from_secs(10));
        let now = clock.now();
        assert!(now >= before + chrono::Duration::seconds(10));
        assert!(clock.now() >= now);
    }
}

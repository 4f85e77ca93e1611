//! The wall clock a service reads where time decides what it answers (how
//! fresh a cached response is, whether a token has expired), injected so a
//! test can set it. Elapsed time (timeouts, rates) is tokio's and stays so.

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

/// A source of the current time; [`Clock::system`] outside tests.
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> SystemTime + Send + Sync>);

impl Clock {
    /// The system's wall clock.
    pub fn system() -> Self {
        Self(Arc::new(SystemTime::now))
    }

    /// A clock that reads `now` (a test's, which it may move).
    pub fn from_fn(now: impl Fn() -> SystemTime + Send + Sync + 'static) -> Self {
        Self(Arc::new(now))
    }

    pub fn now(&self) -> SystemTime {
        (self.0)()
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::system()
    }
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Clock")
    }
}

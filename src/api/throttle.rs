//! The authentication throttle: after [`MAX_FAILURES`] failed authentications within
//! [`FAILURE_WINDOW`] from one client address, or against one key uuid, every request from
//! that address or for that uuid is answered 429 for [`COOLDOWN`], without looking at the
//! credential. A 64-character secret cannot be guessed online anyway; the throttle keeps
//! guessing from costing us LMDB lookups and hashing, and keeps brute force visible in logs.
//!
//! Decisions: a success does not reset an address's count (an attacker holding one valid key
//! must not launder guesses at another); a blocked uuid refuses even its right secret for the
//! cool-down (the price: someone who knows a uuid can hold its owner off for that long, which
//! is logged). Missing credentials (401 without a header) are not failures: that is how every
//! client learns it must authenticate.
//!
//! Must never: grow without bound (a table cap, expired entries pruned first), or take a lock
//! on the hot path while no client is failing (an atomic count gates it).
//!
//! Anonymous traffic (web actions and API routes, served without a key) is throttled here too,
//! per client address: a token bucket of [`ANONYMOUS_BURST`] requests refilled at
//! [`ANONYMOUS_PER_SECOND`], so one flooder is answered 429 while every other address and
//! every authenticated caller goes on. What the flooder's accepted requests cost their owner
//! is then bounded by the namespace's own limits (admission), as for any invoke.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failures tolerated per subject within the window.
pub const MAX_FAILURES: u32 = 10;
/// The window failures are counted in.
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// How long a subject is refused once over the limit.
pub const COOLDOWN: Duration = Duration::from_secs(30);
/// Subjects tracked at most: ~100 bytes each, so a few MB at worst even when a botnet of
/// addresses is failing at once.
const MAX_TRACKED: usize = 65_536;

/// Anonymous requests one client address may make in a burst (a page and its assets, a
/// client's retries), and the rate its allowance refills at: 100 a second is about a tenth of
/// one core's worth of warm activations, so a handful of flooding addresses cannot starve the
/// host while a page with dozens of calls never meets the limit.
pub const ANONYMOUS_BURST: u32 = 3_000;
pub const ANONYMOUS_PER_SECOND: u32 = 100;

/// Who failed: a client address or a key uuid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Subject {
    Ip(IpAddr),
    Key(uuid::Uuid),
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    window_start: Instant,
    blocked_until: Option<Instant>,
}

/// Failure counts per subject.
#[derive(Debug)]
pub struct AuthThrottle {
    max_failures: u32,
    window: Duration,
    cooldown: Duration,
    tracked: AtomicUsize,
    entries: Mutex<HashMap<Subject, Entry>>,
    anonymous: AnonymousLimit,
}

/// A token bucket per client address for requests made without a key.
#[derive(Debug)]
pub struct AnonymousLimit {
    burst: f64,
    per_second: f64,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl AnonymousLimit {
    pub fn new(burst: u32, per_second: u32) -> Self {
        Self {
            burst: f64::from(burst.max(1)),
            per_second: f64::from(per_second.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one request from `ip`'s allowance; `Err(wait)` when it is spent, with how long
    /// until the next request is allowed. An unknown address (a Unix socket) is not limited.
    pub fn take(&self, ip: Option<IpAddr>) -> Result<(), Duration> {
        let Some(ip) = ip else { return Ok(()) };
        let now = Instant::now();
        let mut map = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_TRACKED && !map.contains_key(&ip) {
            // A full bucket is the same as no entry: drop those first.
            let full = |b: &Bucket| self.refilled(b, now) >= self.burst;
            map.retain(|_, b| !full(b));
            if map.len() >= MAX_TRACKED {
                tracing::warn!(tracked = map.len(), "anonymous throttle table full; cleared");
                map.clear();
            }
        }
        let b = map.entry(ip).or_insert(Bucket { tokens: self.burst, at: now });
        b.tokens = self.refilled(b, now);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            return Ok(());
        }
        let wait = Duration::from_secs_f64((1.0 - b.tokens) / self.per_second);
        tracing::debug!(%ip, "anonymous request over the address's allowance");
        Err(wait)
    }

    fn refilled(&self, b: &Bucket, now: Instant) -> f64 {
        let secs = now.duration_since(b.at).as_secs_f64();
        (b.tokens + secs * self.per_second).min(self.burst)
    }
}

impl Default for AuthThrottle {
    fn default() -> Self {
        Self::new(MAX_FAILURES, FAILURE_WINDOW, COOLDOWN)
    }
}

impl AuthThrottle {
    pub fn new(max_failures: u32, window: Duration, cooldown: Duration) -> Self {
        Self {
            max_failures,
            window,
            cooldown,
            tracked: AtomicUsize::new(0),
            entries: Mutex::new(HashMap::new()),
            anonymous: AnonymousLimit::new(ANONYMOUS_BURST, ANONYMOUS_PER_SECOND),
        }
    }

    /// The same throttle with another allowance for anonymous requests.
    pub fn with_anonymous(mut self, limit: AnonymousLimit) -> Self {
        self.anonymous = limit;
        self
    }

    /// Takes one anonymous request from `ip`'s allowance (see [`AnonymousLimit::take`]).
    pub fn anonymous(&self, ip: Option<IpAddr>) -> Result<(), Duration> {
        self.anonymous.take(ip)
    }

    /// How long the first blocked subject among `subjects` remains refused.
    pub fn blocked(&self, subjects: &[Subject]) -> Option<Duration> {
        if self.tracked.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let now = Instant::now();
        let map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        subjects.iter().find_map(|s| {
            map.get(s)
                .and_then(|e| e.blocked_until)
                .and_then(|until| until.checked_duration_since(now))
                .filter(|d| !d.is_zero())
        })
    }

    /// Counts a failed authentication against each subject.
    pub fn failed(&self, subjects: &[Subject]) {
        let now = Instant::now();
        let mut map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_TRACKED {
            map.retain(|_, e| !self.expired(e, now));
            if map.len() >= MAX_TRACKED {
                tracing::warn!(tracked = map.len(), "authentication throttle table full; cleared");
                map.clear();
            }
        }
        for s in subjects {
            let e = map.entry(*s).or_insert(Entry {
                failures: 0,
                window_start: now,
                blocked_until: None,
            });
            if self.expired(e, now) {
                *e = Entry { failures: 0, window_start: now, blocked_until: None };
            }
            e.failures += 1;
            if e.failures >= self.max_failures && e.blocked_until.is_none() {
                e.blocked_until = Some(now + self.cooldown);
                tracing::warn!(subject = ?s, failures = e.failures, cooldown_s = self.cooldown.as_secs(), "too many failed authentications; refusing for the cool-down");
            }
        }
        self.tracked.store(map.len(), Ordering::Relaxed);
    }

    /// An entry whose window and cool-down are both over counts from zero again.
    fn expired(&self, e: &Entry, now: Instant) -> bool {
        match e.blocked_until {
            Some(until) => now >= until,
            None => now.duration_since(e.window_start) >= self.window,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_after_the_limit_and_recovers_after_the_cooldown() {
        let t = AuthThrottle::new(3, Duration::from_secs(60), Duration::from_millis(150));
        let ip = Subject::Ip("10.0.0.1".parse().unwrap());
        let other = Subject::Ip("10.0.0.2".parse().unwrap());
        let key = Subject::Key(uuid::Uuid::new_v4());
        assert!(t.blocked(&[ip]).is_none());
        t.failed(&[ip, key]);
        t.failed(&[ip, key]);
        assert!(t.blocked(&[ip]).is_none(), "under the limit");
        t.failed(&[ip, key]);
        assert!(t.blocked(&[ip]).is_some());
        assert!(t.blocked(&[other, key]).is_some(), "the key is blocked from any address");
        assert!(t.blocked(&[other]).is_none(), "another address is not");
        std::thread::sleep(Duration::from_millis(200));
        assert!(t.blocked(&[ip, key]).is_none(), "cool-down over");
        t.failed(&[ip]);
        assert!(t.blocked(&[ip]).is_none(), "counting starts again after the cool-down");
    }

    #[test]
    fn anonymous_allowance_per_address() {
        let t = AnonymousLimit::new(3, 20);
        let a = Some("10.0.0.1".parse().unwrap());
        let b = Some("10.0.0.2".parse().unwrap());
        for _ in 0..3 {
            assert!(t.take(a).is_ok());
        }
        let wait = t.take(a).unwrap_err();
        assert!(wait <= Duration::from_millis(50), "{wait:?}");
        assert!(t.take(b).is_ok(), "another address has its own allowance");
        assert!(t.take(None).is_ok(), "no address, no limit");
        std::thread::sleep(Duration::from_millis(60));
        assert!(t.take(a).is_ok(), "refilled");
    }

    #[test]
    fn the_table_is_bounded() {
        let t = AuthThrottle::new(3, Duration::from_secs(60), Duration::from_secs(60));
        for i in 0..(MAX_TRACKED as u32 + 10) {
            t.failed(&[Subject::Ip(IpAddr::from(i.to_be_bytes()))]);
        }
        assert!(t.tracked.load(Ordering::Relaxed) <= MAX_TRACKED);
    }
}

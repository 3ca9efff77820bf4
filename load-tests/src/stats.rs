//! What the sockets observe while the run goes on: counters, latency histograms and error counts,
//! shared by every socket task of the process.
//!
//! Counters are atomics. Histograms sit behind one mutex, held for a single `record`: a
//! histogram per socket would cost ~100 KiB each, which at 9,000 sockets is most of a gigabyte.
//! Every time is microseconds on one monotonic clock whose zero is [`Stats::new`].
//!
//! The measurement window: a message counts as *measured* when it was **sent** inside
//! `[window_start, window_end)`, whenever its ack or delivery arrives (so the drain after the
//! window still completes the window's messages, and warm-up messages never count).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// Highest latency a histogram holds (1 hour, in µs); anything above is clamped to it.
const HIGHEST_US: u64 = 3_600_000_000;
/// Three significant figures: 1.234 ms is told from 1.235 ms.
const SIGFIGS: u8 = 3;

pub fn new_histogram() -> Histogram<u64> {
    // Bounds are constants that hdrhistogram accepts; a failure here is a programming error.
    Histogram::new_with_bounds(1, HIGHEST_US, SIGFIGS).expect("valid histogram bounds")
}

pub struct Histograms {
    /// TCP connect to Socket.IO CONNECT ack, per socket.
    pub connect: Histogram<u64>,
    /// Send to `{ok:true}` ack, measured messages only.
    pub ack: Histogram<u64>,
    /// Send to the tutor's `message_received`, measured messages only.
    pub deliver: Histogram<u64>,
    /// How late each measured send left compared with its schedule: the generator's own health.
    pub lag: Histogram<u64>,
}

/// Plain counters; every field is a count of events since the start of the process.
#[derive(Default)]
pub struct Counters {
    pub connected: AtomicU64,
    pub connect_failed: AtomicU64,
    pub joined: AtomicU64,
    pub join_failed: AtomicU64,
    /// Sockets whose setup is over, successfully or not; the connect phase waits for all of them.
    pub setup_done: AtomicU64,
    /// When the last successful connect completed (µs), to compute the connect rate.
    pub last_connect_us: AtomicU64,
    pub sent: AtomicU64,
    pub acked_ok: AtomicU64,
    pub ack_failed: AtomicU64,
    pub delivered: AtomicU64,
    pub sent_window: AtomicU64,
    pub acked_ok_window: AtomicU64,
    pub ack_failed_window: AtomicU64,
    pub delivered_window: AtomicU64,
    /// Per chat, delivered seqs that jumped forward by more than one (sum of the skipped seqs).
    pub seq_gaps: AtomicU64,
    /// Per chat, delivered seqs at or below one already seen (duplicates or reordering).
    pub seq_repeats: AtomicU64,
    /// `message_received` events that this run did not send (another process, another run).
    pub foreign: AtomicU64,
    /// Bytes of the message objects in every `message_received` (their JSON, as delivered).
    pub delivered_json_bytes: AtomicU64,
    /// Sum of all error counts, for the progress line.
    pub errors: AtomicU64,
}

pub struct Stats {
    /// Zero of the run clock.
    base: Instant,
    window_start_us: AtomicU64,
    window_end_us: AtomicU64,
    pub counters: Counters,
    errors: Mutex<BTreeMap<String, u64>>,
    /// The first detailed cause seen per error key, to tell *why* (e.g. the io error text).
    examples: Mutex<BTreeMap<String, String>>,
    histograms: Mutex<Histograms>,
}

impl Default for Stats {
    fn default() -> Self {
        Self::new()
    }
}

impl Stats {
    pub fn new() -> Self {
        Stats {
            base: Instant::now(),
            window_start_us: AtomicU64::new(u64::MAX),
            window_end_us: AtomicU64::new(u64::MAX),
            counters: Counters::default(),
            errors: Mutex::new(BTreeMap::new()),
            examples: Mutex::new(BTreeMap::new()),
            histograms: Mutex::new(Histograms {
                connect: new_histogram(),
                ack: new_histogram(),
                deliver: new_histogram(),
                lag: new_histogram(),
            }),
        }
    }

    pub fn now_us(&self) -> u64 {
        self.us_at(Instant::now())
    }

    pub fn us_at(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.base).as_micros() as u64
    }

    pub fn set_window(&self, start: Instant, end: Instant) {
        self.window_start_us.store(self.us_at(start), Relaxed);
        self.window_end_us.store(self.us_at(end), Relaxed);
    }

    /// Ends the window early (the run was interrupted).
    pub fn cut_window(&self, at: Instant) {
        self.window_end_us.fetch_min(self.us_at(at), Relaxed);
    }

    /// Length of the measurement window as it finally was (zero if it never started).
    pub fn window(&self) -> Duration {
        let start = self.window_start_us.load(Relaxed);
        let end = self.window_end_us.load(Relaxed);
        if start == u64::MAX || end <= start {
            return Duration::ZERO;
        }
        Duration::from_micros(end - start)
    }

    pub fn in_window(&self, at_us: u64) -> bool {
        at_us >= self.window_start_us.load(Relaxed) && at_us < self.window_end_us.load(Relaxed)
    }

    pub fn error(&self, key: impl Into<String>) {
        self.counters.errors.fetch_add(1, Relaxed);
        *self.lock_errors().entry(key.into()).or_insert(0) += 1;
    }

    /// Counts an error and keeps `detail` if it is the first of its key.
    pub fn error_with_detail(&self, key: String, detail: impl FnOnce() -> String) {
        {
            let mut examples = self.examples.lock().unwrap_or_else(|p| p.into_inner());
            if !examples.contains_key(&key) {
                examples.insert(key.clone(), detail());
            }
        }
        self.error(key);
    }

    pub fn errors(&self) -> BTreeMap<String, u64> {
        self.lock_errors().clone()
    }

    pub fn examples(&self) -> BTreeMap<String, String> {
        self.examples.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn connected(&self, took: Duration) {
        let c = &self.counters;
        c.connected.fetch_add(1, Relaxed);
        c.last_connect_us.fetch_max(self.now_us(), Relaxed);
        record(&mut self.lock_histograms().connect, took.as_micros() as u64);
    }

    pub fn connect_failed(&self, key: String, detail: impl FnOnce() -> String) {
        self.counters.connect_failed.fetch_add(1, Relaxed);
        self.error_with_detail(key, detail);
    }

    pub fn joined(&self) {
        self.counters.joined.fetch_add(1, Relaxed);
    }

    pub fn join_failed(&self, code: &str) {
        self.counters.join_failed.fetch_add(1, Relaxed);
        self.error(format!("join:{code}"));
    }

    pub fn setup_done(&self) {
        self.counters.setup_done.fetch_add(1, Relaxed);
    }

    /// A message left `lag` after its scheduled time.
    pub fn sent(&self, measured: bool, lag: Duration) {
        self.counters.sent.fetch_add(1, Relaxed);
        if measured {
            self.counters.sent_window.fetch_add(1, Relaxed);
            record(&mut self.lock_histograms().lag, lag.as_micros() as u64);
        }
    }

    /// The ack of a message sent at `sent_us` arrived now with `result`.
    pub fn acked(&self, sent_us: u64, measured: bool, result: Result<(), String>) {
        let c = &self.counters;
        match result {
            Ok(()) => {
                c.acked_ok.fetch_add(1, Relaxed);
                if measured {
                    c.acked_ok_window.fetch_add(1, Relaxed);
                    let latency = self.now_us().saturating_sub(sent_us);
                    record(&mut self.lock_histograms().ack, latency);
                }
            }
            Err(code) => {
                c.ack_failed.fetch_add(1, Relaxed);
                if measured {
                    c.ack_failed_window.fetch_add(1, Relaxed);
                }
                self.error(format!("ack:{code}"));
            }
        }
    }

    /// A message sent at `sent_us` was delivered now.
    pub fn delivered(&self, sent_us: u64) {
        let c = &self.counters;
        c.delivered.fetch_add(1, Relaxed);
        if self.in_window(sent_us) {
            c.delivered_window.fetch_add(1, Relaxed);
            let latency = self.now_us().saturating_sub(sent_us);
            record(&mut self.lock_histograms().deliver, latency);
        }
    }

    /// A copy of the histograms, taken once at the end.
    pub fn histograms(&self) -> Histograms {
        let h = self.lock_histograms();
        Histograms { connect: h.connect.clone(), ack: h.ack.clone(), deliver: h.deliver.clone(), lag: h.lag.clone() }
    }

    // A panic while holding one of these locks cannot leave a count half-updated, so a poisoned
    // lock is still good data.
    fn lock_errors(&self) -> MutexGuard<'_, BTreeMap<String, u64>> {
        self.errors.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_histograms(&self) -> MutexGuard<'_, Histograms> {
        self.histograms.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn record(h: &mut Histogram<u64>, us: u64) {
    h.saturating_record(us.clamp(1, HIGHEST_US));
}

/// Per-chat sequence check on the receiving side: every delivered seq should be the previous + 1.
#[derive(Default)]
pub struct SeqTracker {
    /// Highest seq seen per chat id.
    last: std::collections::HashMap<String, u64>,
}

/// What a delivered seq says about the stream of its chat.
#[derive(Debug, PartialEq, Eq)]
pub enum SeqCheck {
    /// The first seq seen for the chat, or exactly the next one.
    InOrder,
    /// `n` seqs were skipped.
    Gap(u64),
    /// Seen before, or older than one seen before.
    Repeat,
}

impl SeqTracker {
    pub fn check(&mut self, chat_id: &str, seq: u64) -> SeqCheck {
        match self.last.get_mut(chat_id) {
            None => {
                self.last.insert(chat_id.to_string(), seq);
                SeqCheck::InOrder
            }
            Some(last) if seq == *last + 1 => {
                *last = seq;
                SeqCheck::InOrder
            }
            Some(last) if seq > *last => {
                let gap = seq - *last - 1;
                *last = seq;
                SeqCheck::Gap(gap)
            }
            Some(_) => SeqCheck::Repeat,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_messages_sent_inside_the_window_are_measured() {
        let stats = Stats::new();
        let start = stats.base + Duration::from_secs(2);
        stats.set_window(start, start + Duration::from_secs(10));
        assert!(!stats.in_window(1_999_999));
        assert!(stats.in_window(2_000_000));
        assert!(stats.in_window(11_999_999));
        assert!(!stats.in_window(12_000_000));
        assert_eq!(stats.window(), Duration::from_secs(10));

        stats.sent(false, Duration::ZERO);
        stats.sent(true, Duration::from_micros(250));
        stats.acked(2_000_000, true, Ok(()));
        stats.acked(0, false, Err("rate_limited".into()));
        stats.delivered(3_000_000);
        stats.delivered(100);
        let c = &stats.counters;
        assert_eq!(c.sent.load(Relaxed), 2);
        assert_eq!(c.sent_window.load(Relaxed), 1);
        assert_eq!(c.acked_ok_window.load(Relaxed), 1);
        assert_eq!(c.ack_failed.load(Relaxed), 1);
        assert_eq!(c.ack_failed_window.load(Relaxed), 0);
        assert_eq!(c.delivered.load(Relaxed), 2);
        assert_eq!(c.delivered_window.load(Relaxed), 1);
        assert_eq!(stats.errors().get("ack:rate_limited"), Some(&1));
        assert_eq!(stats.histograms().deliver.len(), 1);
        assert_eq!(stats.histograms().lag.len(), 1);
    }

    #[test]
    fn a_cut_window_only_shrinks() {
        let stats = Stats::new();
        let start = stats.base + Duration::from_secs(1);
        stats.set_window(start, start + Duration::from_secs(10));
        stats.cut_window(start + Duration::from_secs(4));
        assert_eq!(stats.window(), Duration::from_secs(4));
        stats.cut_window(start + Duration::from_secs(8));
        assert_eq!(stats.window(), Duration::from_secs(4));
        assert_eq!(Stats::new().window(), Duration::ZERO);
    }

    #[test]
    fn seq_tracker_finds_gaps_and_repeats_per_chat() {
        let mut t = SeqTracker::default();
        assert_eq!(t.check("a", 5), SeqCheck::InOrder);
        assert_eq!(t.check("a", 6), SeqCheck::InOrder);
        assert_eq!(t.check("b", 1), SeqCheck::InOrder);
        assert_eq!(t.check("a", 9), SeqCheck::Gap(2));
        assert_eq!(t.check("a", 9), SeqCheck::Repeat);
        assert_eq!(t.check("a", 7), SeqCheck::Repeat);
        assert_eq!(t.check("a", 10), SeqCheck::InOrder);
    }
}

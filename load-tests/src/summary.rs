//! The result of a run: one serializable [`Summary`], printed for people or as JSON, and merged
//! across processes that ran side by side.
//!
//! The JSON carries the recorded histogram buckets, so `coursechat-load merge` computes exact
//! percentiles over all processes instead of averaging per-process percentiles (which is wrong).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::stats::new_histogram;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Summary {
    /// One entry per process (several after a merge).
    pub runs: Vec<RunId>,
    pub setup: Setup,
    pub fixtures: FixtureSummary,
    pub connect: ConnectSummary,
    pub messages: MessageSummary,
    pub send_to_ack: Latency,
    pub send_to_deliver: Latency,
    /// How late sends left compared with their schedule. Large values mean the generator itself
    /// could not keep up (CPU starved), and the offered rate was lower than asked.
    #[serde(default)]
    pub send_lag: Latency,
    /// Error counter → count. Keys are `kind:code`, e.g. `ack:rate_limited`, `error_event:not_enrolled`,
    /// `connect_error:invalid_token`, `disconnect:eof`.
    pub errors: BTreeMap<String, u64>,
    /// The first detailed cause seen for some error keys.
    #[serde(default)]
    pub error_examples: BTreeMap<String, String>,
    pub histograms: HistogramDump,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunId {
    pub url: String,
    pub prefix: String,
    pub shard: u32,
    /// Ctrl-C ended the run before its planned end.
    pub stopped_early: bool,
}

/// What was asked for.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Setup {
    pub students: u64,
    pub tutors: u64,
    pub sockets: u64,
    pub target_rate: f64,
    pub target_connect_rate: f64,
    pub warmup_s: f64,
    pub duration_s: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FixtureSummary {
    pub seconds: f64,
    pub users: u64,
    pub courses: u64,
    pub enrollments: u64,
    pub chats_created: u64,
    pub chats_existing: u64,
    /// Answers that worked but are not what the contract says.
    pub deviations: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConnectSummary {
    pub attempted: u64,
    pub connected: u64,
    pub failed: u64,
    /// From the first attempt to the last successful Socket.IO CONNECT.
    pub seconds: f64,
    pub per_second: f64,
    pub joined: u64,
    pub join_failed: u64,
    /// TCP connect to Socket.IO CONNECT ack.
    pub latency: Latency,
}

/// Counts of messages *sent inside the measurement window*, however late their ack or delivery.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MessageSummary {
    pub window_s: f64,
    pub sent: u64,
    pub sent_per_second: f64,
    pub acked_ok: u64,
    pub ack_failed: u64,
    /// Sent, but neither ack nor failure came back before the end of the drain.
    pub unanswered: u64,
    pub delivered: u64,
    pub delivered_per_second: f64,
    /// Acked `ok` but never delivered to the tutor (before the end of the drain).
    pub undelivered: u64,
    /// Whole run, all phases: seqs skipped in a chat's delivered stream.
    pub seq_gaps: u64,
    /// Whole run, all phases: seqs delivered twice or out of order.
    pub seq_repeats: u64,
    /// Deliveries this run did not send.
    pub foreign: u64,
    /// Whole run, all phases: bytes of the delivered messages' JSON (the `message` objects).
    #[serde(default)]
    pub delivered_json_bytes: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Latency {
    pub samples: u64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
}

impl Latency {
    pub fn of(h: &Histogram<u64>) -> Latency {
        if h.is_empty() {
            return Latency::default();
        }
        Latency {
            samples: h.len(),
            p50_ms: Some(ms(h.value_at_quantile(0.50))),
            p99_ms: Some(ms(h.value_at_quantile(0.99))),
            max_ms: Some(ms(h.max())),
        }
    }
}

/// µs → ms, rounded to 0.01 ms.
fn ms(us: u64) -> f64 {
    (us as f64 / 10.0).round() / 100.0
}

/// Recorded histogram buckets as `[value_us, count]`, enough to rebuild the histogram exactly.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct HistogramDump {
    pub connect_us: Vec<[u64; 2]>,
    pub ack_us: Vec<[u64; 2]>,
    pub deliver_us: Vec<[u64; 2]>,
    #[serde(default)]
    pub lag_us: Vec<[u64; 2]>,
}

pub fn dump(h: &Histogram<u64>) -> Vec<[u64; 2]> {
    h.iter_recorded().map(|v| [v.value_iterated_to(), v.count_at_value()]).collect()
}

pub fn undump(buckets: &[[u64; 2]]) -> Histogram<u64> {
    let mut h = new_histogram();
    for [value, count] in buckets {
        h.saturating_record_n(*value, *count);
    }
    h
}

/// Combines the summaries of processes that ran at the same time against the same server:
/// counts and rates add up, durations take the longest, latencies come from the merged histograms.
pub fn merge(parts: &[Summary]) -> Option<Summary> {
    let first = parts.first()?;
    let mut out = first.clone();
    let mut connect = undump(&first.histograms.connect_us);
    let mut ack = undump(&first.histograms.ack_us);
    let mut deliver = undump(&first.histograms.deliver_us);
    let mut lag = undump(&first.histograms.lag_us);
    let mut deviations: BTreeSet<String> = first.fixtures.deviations.iter().cloned().collect();
    for p in &parts[1..] {
        out.runs.extend(p.runs.iter().cloned());

        let s = &mut out.setup;
        s.students += p.setup.students;
        s.tutors += p.setup.tutors;
        s.sockets += p.setup.sockets;
        s.target_rate += p.setup.target_rate;
        s.target_connect_rate += p.setup.target_connect_rate;
        s.warmup_s = s.warmup_s.max(p.setup.warmup_s);
        s.duration_s = s.duration_s.max(p.setup.duration_s);

        let f = &mut out.fixtures;
        f.seconds = f.seconds.max(p.fixtures.seconds);
        f.users += p.fixtures.users;
        f.courses += p.fixtures.courses;
        f.enrollments += p.fixtures.enrollments;
        f.chats_created += p.fixtures.chats_created;
        f.chats_existing += p.fixtures.chats_existing;
        deviations.extend(p.fixtures.deviations.iter().cloned());

        let c = &mut out.connect;
        c.attempted += p.connect.attempted;
        c.connected += p.connect.connected;
        c.failed += p.connect.failed;
        c.seconds = c.seconds.max(p.connect.seconds);
        c.per_second += p.connect.per_second;
        c.joined += p.connect.joined;
        c.join_failed += p.connect.join_failed;

        let m = &mut out.messages;
        m.window_s = m.window_s.max(p.messages.window_s);
        m.sent += p.messages.sent;
        m.sent_per_second += p.messages.sent_per_second;
        m.acked_ok += p.messages.acked_ok;
        m.ack_failed += p.messages.ack_failed;
        m.unanswered += p.messages.unanswered;
        m.delivered += p.messages.delivered;
        m.delivered_per_second += p.messages.delivered_per_second;
        m.undelivered += p.messages.undelivered;
        m.seq_gaps += p.messages.seq_gaps;
        m.seq_repeats += p.messages.seq_repeats;
        m.foreign += p.messages.foreign;
        m.delivered_json_bytes += p.messages.delivered_json_bytes;

        for (key, count) in &p.errors {
            *out.errors.entry(key.clone()).or_insert(0) += count;
        }
        for (key, example) in &p.error_examples {
            out.error_examples.entry(key.clone()).or_insert_with(|| example.clone());
        }
        // Same bounds on both sides, so `add` cannot fail.
        let _ = connect.add(undump(&p.histograms.connect_us));
        let _ = ack.add(undump(&p.histograms.ack_us));
        let _ = deliver.add(undump(&p.histograms.deliver_us));
        let _ = lag.add(undump(&p.histograms.lag_us));
    }
    out.fixtures.deviations = deviations.into_iter().collect();
    out.connect.latency = Latency::of(&connect);
    out.send_to_ack = Latency::of(&ack);
    out.send_to_deliver = Latency::of(&deliver);
    out.send_lag = Latency::of(&lag);
    out.histograms = HistogramDump {
        connect_us: dump(&connect),
        ack_us: dump(&ack),
        deliver_us: dump(&deliver),
        lag_us: dump(&lag),
    };
    Some(out)
}

fn fmt_ms(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_string(), |v| format!("{v:.2} ms"))
}

fn fmt_latency(l: &Latency) -> String {
    format!("p50 {}  p99 {}  max {}  ({} samples)", fmt_ms(l.p50_ms), fmt_ms(l.p99_ms), fmt_ms(l.max_ms), l.samples)
}

/// The human-readable report.
pub fn render(s: &Summary) -> String {
    let mut o = String::new();
    // Writing to a String cannot fail.
    let _ = write_report(&mut o, s);
    o
}

fn write_report(o: &mut String, s: &Summary) -> std::fmt::Result {
    let (u, c, m) = (&s.setup, &s.connect, &s.messages);
    match s.runs.as_slice() {
        [run] => writeln!(
            o,
            "coursechat-load  {}  prefix {}  shard {}{}",
            run.url,
            run.prefix,
            run.shard,
            if run.stopped_early { "  (stopped early)" } else { "" }
        )?,
        runs => {
            let shards: Vec<String> = runs.iter().map(|r| format!("{}/{}", r.prefix, r.shard)).collect();
            let early = runs.iter().filter(|r| r.stopped_early).count();
            writeln!(
                o,
                "coursechat-load  merged {} processes: {}{}",
                runs.len(),
                shards.join(", "),
                if early > 0 { format!("  ({early} stopped early)") } else { String::new() }
            )?;
        }
    }
    let f = &s.fixtures;
    writeln!(
        o,
        "fixtures      {} users, {} courses, {} enrollments, {} chats ({} created, {} existing) in {:.2} s",
        f.users,
        f.courses,
        f.enrollments,
        f.chats_created + f.chats_existing,
        f.chats_created,
        f.chats_existing,
        f.seconds
    )?;
    for d in &f.deviations {
        writeln!(o, "  contract?   {d}")?;
    }
    writeln!(
        o,
        "connect       {}/{} sockets in {:.2} s = {:.1} sockets/s (target {:.0}/s), {} failed",
        c.connected, c.attempted, c.seconds, c.per_second, u.target_connect_rate, c.failed
    )?;
    writeln!(o, "  latency     {}", fmt_latency(&c.latency))?;
    writeln!(o, "  join_chat   {} ok, {} failed", c.joined, c.join_failed)?;
    writeln!(
            o,
            "window        {:.2} s measured after {:.2} s warm-up; {} students, {} tutors, target {:.1} msg/s ({:.2} msg/s per student)",
            m.window_s,
            u.warmup_s,
            u.students,
            u.tutors,
            u.target_rate,
            if u.students > 0 { u.target_rate / u.students as f64 } else { 0.0 }
        )?;
    writeln!(
        o,
        "messages      sent {} ({:.1}/s)  acked ok {}  failed {}  unanswered {}",
        m.sent, m.sent_per_second, m.acked_ok, m.ack_failed, m.unanswered
    )?;
    writeln!(
        o,
        "  delivered   {} ({:.1} msgs/s)  undelivered {}  seq gaps {}  seq repeats {}{}",
        m.delivered,
        m.delivered_per_second,
        m.undelivered,
        m.seq_gaps,
        m.seq_repeats,
        if m.foreign > 0 { format!("  foreign {}", m.foreign) } else { String::new() }
    )?;
    writeln!(o, "send→ack      {}", fmt_latency(&s.send_to_ack))?;
    writeln!(o, "send→deliver  {}", fmt_latency(&s.send_to_deliver))?;
    writeln!(o, "send lag      {}", fmt_latency(&s.send_lag))?;
    if s.errors.is_empty() {
        writeln!(o, "errors        none")?;
    } else {
        writeln!(o, "errors        {} in all phases:", s.errors.values().sum::<u64>())?;
        for (key, count) in &s.errors {
            writeln!(o, "  {count:>10}  {key}")?;
            if let Some(example) = s.error_examples.get(key) {
                writeln!(o, "              e.g. {example}")?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(shard: u32, ack_values: &[u64], sent: u64) -> Summary {
        let mut ack = new_histogram();
        for v in ack_values {
            ack.record(*v).unwrap();
        }
        Summary {
            runs: vec![RunId { url: "http://127.0.0.1:8080".into(), prefix: "p".into(), shard, stopped_early: false }],
            setup: Setup {
                students: 10,
                tutors: 10,
                sockets: 20,
                target_rate: 50.0,
                target_connect_rate: 100.0,
                warmup_s: 1.0,
                duration_s: 10.0,
            },
            fixtures: FixtureSummary {
                seconds: 0.5,
                users: 20,
                courses: 10,
                enrollments: 10,
                chats_created: 10,
                chats_existing: 0,
                deviations: vec![],
            },
            connect: ConnectSummary {
                attempted: 20,
                connected: 20,
                failed: 0,
                seconds: 0.2,
                per_second: 100.0,
                joined: 10,
                join_failed: 0,
                latency: Latency::default(),
            },
            messages: MessageSummary {
                window_s: 10.0,
                sent,
                sent_per_second: sent as f64 / 10.0,
                acked_ok: sent,
                ack_failed: 0,
                unanswered: 0,
                delivered: sent,
                delivered_per_second: sent as f64 / 10.0,
                undelivered: 0,
                seq_gaps: 0,
                seq_repeats: 0,
                foreign: 0,
                delivered_json_bytes: 0,
            },
            send_to_ack: Latency::of(&ack),
            send_to_deliver: Latency::default(),
            send_lag: Latency::default(),
            errors: BTreeMap::from([("ack:rate_limited".to_string(), 2)]),
            error_examples: BTreeMap::new(),
            histograms: HistogramDump { ack_us: dump(&ack), ..HistogramDump::default() },
        }
    }

    #[test]
    fn latencies_are_milliseconds_to_a_hundredth() {
        let mut h = new_histogram();
        h.record(1234).unwrap();
        let l = Latency::of(&h);
        assert_eq!(l.samples, 1);
        assert_eq!(l.p50_ms, Some(1.23));
        assert_eq!(Latency::of(&new_histogram()).p99_ms, None);
    }

    #[test]
    fn a_dumped_histogram_rebuilds_to_the_same_percentiles() {
        let mut h = new_histogram();
        for v in 1..=10_000u64 {
            h.record(v * 37).unwrap();
        }
        let back = undump(&dump(&h));
        assert_eq!(back.len(), h.len());
        for q in [0.5, 0.9, 0.99, 1.0] {
            assert_eq!(back.value_at_quantile(q), h.value_at_quantile(q));
        }
    }

    #[test]
    fn merge_adds_counts_and_rates_and_recomputes_percentiles() {
        let a = summary(0, &[1000; 99], 100);
        let b = summary(1, &[9000; 99], 300);
        let m = merge(&[a, b]).unwrap();
        assert_eq!(m.runs.len(), 2);
        assert_eq!(m.messages.sent, 400);
        assert_eq!(m.messages.delivered_per_second, 40.0);
        assert_eq!(m.setup.sockets, 40);
        assert_eq!(m.errors.get("ack:rate_limited"), Some(&4));
        assert_eq!(m.send_to_ack.samples, 198);
        assert_eq!(m.send_to_ack.p50_ms, Some(1.0));
        // hdrhistogram reports the top of the bucket: 9000 µs is 9000..=9007 at 3 significant figures.
        assert!((m.send_to_ack.max_ms.unwrap() - 9.0).abs() < 0.02);
        assert!(merge(&[]).is_none());
    }

    #[test]
    fn summary_round_trips_through_json_and_renders() {
        let s = summary(0, &[500, 1500], 10);
        let json = serde_json::to_string(&s).unwrap();
        let back: Summary = serde_json::from_str(&json).unwrap();
        assert_eq!(back.send_to_ack.samples, 2);
        let text = render(&back);
        assert!(text.contains("send→ack      p50 0.50 ms"), "{text}");
        assert!(text.contains("ack:rate_limited"), "{text}");
    }
}

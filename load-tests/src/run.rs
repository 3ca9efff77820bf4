//! One run, phase by phase, each bounded in time:
//!
//! 1. **fixtures**: users, courses, enrollments and chats through REST (bounded retries);
//! 2. **connect**: sockets opened at `--connect-rate`, each within `--connect-timeout`; students
//!    join their chat;
//! 3. **send**: `--warmup` then `--duration` seconds of sending at `--rate` (open loop);
//! 4. **drain**: up to `--drain` seconds for the last acks and deliveries;
//! 5. **close**: every socket says goodbye; the summary is computed.
//!
//! Ctrl-C ends the current phase and moves on to the summary with what was measured so far.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rand::distr::{Alphanumeric, SampleString};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::cli::{parse_urls, RunArgs, Url};
use crate::connection::Target;
use crate::fixtures::{self, Tokens};
use crate::plan::{self, Plan};
use crate::rest::Rest;
use crate::socket::{self, Part, Phase, Shared};
use crate::stats::Stats;
use crate::summary::{self, Summary};
use crate::token::{Minter, Role};

pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// Lead time between the end of the connect phase and the first send, so the start instant is
/// in the future for every socket when it learns it.
const START_LEAD: Duration = Duration::from_millis(200);
/// How long closing sockets may take before their tasks are aborted.
const CLOSE_GRACE: Duration = Duration::from_secs(5);
/// Longest drain after Ctrl-C.
const INTERRUPTED_DRAIN: Duration = Duration::from_secs(2);
/// Descriptors needed beyond the sockets (runtime, stdio, REST pool).
const SPARE_FILES: u64 = 64;

/// Progress and warnings go to stderr, so stdout holds only the summary.
macro_rules! note {
    ($($arg:tt)*) => { eprintln!("[coursechat-load] {}", format!($($arg)*)) };
}

pub async fn run(args: RunArgs) -> Result<Summary, Error> {
    let secret = args.jwt_secret.clone().ok_or("--jwt-secret (or CHAT_JWT_SECRET) is required")?;
    for warning in args.validate()? {
        note!("warning: {warning}");
    }
    let nodes = parse_urls(&args.url)?;
    let bases = nodes.iter().map(Url::base).collect::<Vec<_>>().join(",");
    let plan = Plan {
        prefix: args.prefix.clone().unwrap_or_else(|| format!("lt{}", Alphanumeric.sample_string(&mut rand::rng(), 6))),
        shard: args.shard,
        students: args.pairs,
        per_tutor: args.students_per_tutor as usize,
    };
    check_open_files(plan.sockets() as u64 + args.http_concurrency as u64 + SPARE_FILES)?;

    // Every node resolved once (no DNS per socket).
    let mut addrs = Vec::with_capacity(nodes.len());
    for url in &nodes {
        let addr = tokio::net::lookup_host(&url.authority)
            .await
            .map_err(|e| format!("cannot resolve {}: {e}", url.authority))?
            .find(|a| args.allow_remote || a.ip().is_loopback())
            .ok_or_else(|| format!("{} resolves to no loopback address", url.authority))?;
        addrs.push(addr);
    }
    let against = nodes.iter().zip(&addrs).map(|(u, a)| format!("{} ({a})", u.base())).collect::<Vec<_>>();
    note!(
        "{} students, {} tutors ({} sockets) against {}; prefix {} shard {}",
        plan.students,
        plan.tutors(),
        plan.sockets(),
        against.join(", "),
        plan.prefix,
        plan.shard
    );
    if nodes.len() > 1 {
        note!("{} nodes: fixtures through the first; each chat's student and tutor on different nodes", nodes.len());
    }

    // Tokens outlive the longest possible run by an hour.
    let planned = plan.sockets() as f64 / args.connect_rate
        + 2.0 * args.connect_timeout
        + args.warmup
        + args.duration
        + args.drain
        + start_delay(args.start_at).as_secs_f64();
    let minter = Minter::new(secret.as_bytes(), unix_now().as_secs(), planned.ceil() as u64 + 3600);
    let tokens = mint_all(&minter, &plan)?;

    // 1. Fixtures (all through the first node: the others see them through the cluster's
    // shared state, as they would behind a balancer).
    let rest = Rest::new(&nodes[0].base(), args.source_ip);
    let fixtures = fixtures::set_up(&rest, &plan, &tokens, args.http_concurrency).await?;
    note!(
        "fixtures ready in {:.2} s ({} chats created, {} existing)",
        fixtures.seconds,
        fixtures.chats_created,
        fixtures.chats_existing
    );
    for d in &fixtures.deviations {
        note!("contract deviation: {d}");
    }

    // 2. Connect.
    let stats = Arc::new(Stats::new());
    let (phase_tx, phase_rx) = watch::channel(Phase::Connecting);
    let targets: Vec<Arc<Target>> = nodes
        .iter()
        .zip(&addrs)
        .map(|(url, &addr)| {
            Arc::new(Target {
                addr,
                authority: url.authority.clone(),
                source_ip: args.source_ip,
                origin: args.origin.clone(),
            })
        })
        .collect();
    let shared = Shared {
        target: targets[0].clone(),
        stats: stats.clone(),
        phase: phase_rx,
        nonce: Alphanumeric.sample_string(&mut rand::rng(), 10).into(),
        content_size: args.content_size,
        timeout: Duration::from_secs_f64(args.connect_timeout),
    };
    let progress = spawn_progress(stats.clone(), phase_tx.subscribe(), args.progress, plan.sockets());
    let mut interrupts = spawn_interrupts();
    let mut stopped_early = false;

    // (what the socket does, its token, the node it connects to)
    let mut parts: Vec<(Part, Arc<str>, usize)> = Vec::with_capacity(plan.sockets());
    // Tutors first, so that every chat has its receiver before its student appears.
    for t in 0..plan.tutors() {
        parts.push((Part::Tutor, tokens.tutors[t].clone(), plan.tutor_node(t, nodes.len())));
    }
    for (i, chat_id) in fixtures.chat_ids.iter().enumerate() {
        parts.push((
            Part::Student { index: i, chat_id: chat_id.clone(), schedule: plan::schedule(i, plan.students, args.rate) },
            tokens.students[i].clone(),
            plan.student_node(i, nodes.len()),
        ));
    }
    let connect_started = Instant::now();
    let mut sockets = JoinSet::new();
    let mut attempted = 0u64;
    for (k, (part, token, node)) in parts.into_iter().enumerate() {
        let due = connect_started + Duration::from_secs_f64(k as f64 / args.connect_rate);
        tokio::select! {
            _ = tokio::time::sleep_until(due.into()) => {}
            _ = interrupts.wait_for(|n| *n >= 1) => { stopped_early = true; break; }
        }
        sockets.spawn(socket::run(part, token, Shared { target: targets[node].clone(), ..shared.clone() }));
        attempted += 1;
    }
    // Every socket ends its setup within its own timeouts; this bound is only a backstop.
    let setup_deadline = Instant::now() + Duration::from_secs_f64(2.0 * args.connect_timeout) + Duration::from_secs(1);
    while !stopped_early && stats.counters.setup_done.load(Relaxed) < attempted && Instant::now() < setup_deadline {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(20)) => {}
            _ = interrupts.wait_for(|n| *n >= 1) => stopped_early = true,
        }
    }
    let connect_seconds = match stats.counters.last_connect_us.load(Relaxed) {
        0 => 0.0,
        last => last.saturating_sub(stats.us_at(connect_started)) as f64 / 1e6,
    };
    let connected = stats.counters.connected.load(Relaxed);
    note!("{connected}/{attempted} sockets connected, {} students joined", stats.counters.joined.load(Relaxed));

    // 3. Send.
    if !stopped_early && connected > 0 {
        if args.start_at.is_some() && start_delay(args.start_at).is_zero() {
            note!("warning: --start-at is already past; starting now");
        }
        let start = Instant::now() + START_LEAD.max(start_delay(args.start_at));
        let window_start = start + Duration::from_secs_f64(args.warmup);
        let end = window_start + Duration::from_secs_f64(args.duration);
        stats.set_window(window_start, end);
        phase_tx.send_replace(Phase::Sending { start, end });
        tokio::select! {
            _ = tokio::time::sleep_until(end.into()) => {}
            _ = interrupts.wait_for(|n| *n >= 1) => {
                stopped_early = true;
                stats.cut_window(Instant::now());
            }
        }
        phase_tx.send_replace(Phase::Draining);

        // 4. Drain (shortened after an interrupt, skipped after a second one).
        let mut drain = Duration::from_secs_f64(args.drain);
        if stopped_early {
            drain = drain.min(INTERRUPTED_DRAIN);
        }
        let drain_deadline = Instant::now() + drain;
        while !drained(&stats) && Instant::now() < drain_deadline {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(20)) => {}
                _ = interrupts.wait_for(|n| *n >= 2) => break,
            }
        }
    }

    // 5. Close.
    let summary = build_summary(&args, &bases, &plan, &fixtures, &stats, attempted, connect_seconds, stopped_early);
    phase_tx.send_replace(Phase::Closing);
    let _ = tokio::time::timeout(CLOSE_GRACE, async { while sockets.join_next().await.is_some() {} }).await;
    sockets.abort_all();
    progress.abort();
    Ok(summary)
}

/// Counts Ctrl-C presses: the first ends the current phase and goes to the summary, the second
/// skips the drain, the third exits at once.
fn spawn_interrupts() -> watch::Receiver<u32> {
    let (tx, rx) = watch::channel(0u32);
    tokio::spawn(async move {
        while tokio::signal::ctrl_c().await.is_ok() {
            tx.send_modify(|n| *n += 1);
            match *tx.borrow() {
                1 => note!("interrupted: finishing with what was measured (Ctrl-C again to skip the drain)"),
                2 => note!("interrupted again: skipping the drain (Ctrl-C again to exit at once)"),
                _ => std::process::exit(130),
            }
        }
    });
    rx
}

/// Every sent message has its ack, and every acked message its delivery.
fn drained(stats: &Stats) -> bool {
    let c = &stats.counters;
    let answered = c.acked_ok.load(Relaxed) + c.ack_failed.load(Relaxed);
    answered >= c.sent.load(Relaxed) && c.delivered.load(Relaxed) >= c.acked_ok.load(Relaxed)
}

fn mint_all(minter: &Minter, plan: &Plan) -> Result<Tokens, Error> {
    let admin = minter.mint(&plan.admin_id(), Role::Admin, "Load Admin")?.into();
    let students = (0..plan.students)
        .map(|i| minter.mint(&plan.student_id(i), Role::User, &fixtures::student_name(plan, i)).map(Arc::from))
        .collect::<Result<_, _>>()?;
    let tutors = (0..plan.tutors())
        .map(|t| minter.mint(&plan.tutor_id(t), Role::Tutor, &fixtures::tutor_name(plan, t)).map(Arc::from))
        .collect::<Result<_, _>>()?;
    Ok(Tokens { admin, students, tutors })
}

#[allow(clippy::too_many_arguments)]
fn build_summary(
    args: &RunArgs,
    base: &str,
    plan: &Plan,
    fixtures: &fixtures::Fixtures,
    stats: &Stats,
    attempted: u64,
    connect_seconds: f64,
    stopped_early: bool,
) -> Summary {
    let c = &stats.counters;
    let window = stats.window().as_secs_f64();
    let per_second = |n: u64| if window > 0.0 { n as f64 / window } else { 0.0 };
    let h = stats.histograms();
    let connected = c.connected.load(Relaxed);
    let sent = c.sent_window.load(Relaxed);
    let acked_ok = c.acked_ok_window.load(Relaxed);
    let ack_failed = c.ack_failed_window.load(Relaxed);
    let delivered = c.delivered_window.load(Relaxed);
    Summary {
        runs: vec![summary::RunId {
            url: base.to_string(),
            prefix: plan.prefix.clone(),
            shard: plan.shard,
            stopped_early,
        }],
        setup: summary::Setup {
            students: plan.students as u64,
            tutors: plan.tutors() as u64,
            sockets: plan.sockets() as u64,
            target_rate: args.rate,
            target_connect_rate: args.connect_rate,
            warmup_s: args.warmup,
            duration_s: args.duration,
        },
        fixtures: summary::FixtureSummary {
            seconds: fixtures.seconds,
            users: plan.sockets() as u64,
            courses: plan.tutors() as u64,
            enrollments: plan.students as u64,
            chats_created: fixtures.chats_created as u64,
            chats_existing: fixtures.chats_existing as u64,
            deviations: fixtures.deviations.iter().cloned().collect(),
        },
        connect: summary::ConnectSummary {
            attempted,
            connected,
            failed: c.connect_failed.load(Relaxed),
            seconds: connect_seconds,
            per_second: if connect_seconds > 0.0 { connected as f64 / connect_seconds } else { 0.0 },
            joined: c.joined.load(Relaxed),
            join_failed: c.join_failed.load(Relaxed),
            latency: summary::Latency::of(&h.connect),
        },
        messages: summary::MessageSummary {
            window_s: window,
            sent,
            sent_per_second: per_second(sent),
            acked_ok,
            ack_failed,
            unanswered: sent.saturating_sub(acked_ok + ack_failed),
            delivered,
            delivered_per_second: per_second(delivered),
            undelivered: acked_ok.saturating_sub(delivered),
            seq_gaps: c.seq_gaps.load(Relaxed),
            delivered_json_bytes: c.delivered_json_bytes.load(Relaxed),
            seq_repeats: c.seq_repeats.load(Relaxed),
            foreign: c.foreign.load(Relaxed),
        },
        send_to_ack: summary::Latency::of(&h.ack),
        send_to_deliver: summary::Latency::of(&h.deliver),
        send_lag: summary::Latency::of(&h.lag),
        errors: stats.errors(),
        error_examples: stats.examples(),
        histograms: summary::HistogramDump {
            connect_us: summary::dump(&h.connect),
            ack_us: summary::dump(&h.ack),
            deliver_us: summary::dump(&h.deliver),
            lag_us: summary::dump(&h.lag),
        },
    }
}

/// Prints one line every `every` seconds on stderr while the run goes on.
fn spawn_progress(
    stats: Arc<Stats>,
    phase: watch::Receiver<Phase>,
    every: f64,
    sockets: usize,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        if every <= 0.0 {
            return;
        }
        let mut tick = tokio::time::interval(Duration::from_secs_f64(every));
        tick.tick().await;
        loop {
            tick.tick().await;
            let c = &stats.counters;
            let current = *phase.borrow();
            match current {
                Phase::Connecting => note!(
                    "connecting: {}/{sockets} connected, {} failed, {} joined",
                    c.connected.load(Relaxed),
                    c.connect_failed.load(Relaxed),
                    c.joined.load(Relaxed)
                ),
                Phase::Sending { .. } | Phase::Draining => note!(
                    "{}: sent {}  acked {}  delivered {}  errors {}",
                    if current == Phase::Draining { "draining" } else { "sending" },
                    c.sent.load(Relaxed),
                    c.acked_ok.load(Relaxed) + c.ack_failed.load(Relaxed),
                    c.delivered.load(Relaxed),
                    c.errors.load(Relaxed)
                ),
                Phase::Closing => return,
            }
        }
    })
}

fn unix_now() -> Duration {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default()
}

/// How long until `--start-at` (zero when unset or past, with a note in the latter case).
fn start_delay(start_at: Option<f64>) -> Duration {
    let Some(at) = start_at else {
        return Duration::ZERO;
    };
    let now = unix_now().as_secs_f64();
    if at <= now {
        return Duration::ZERO;
    }
    Duration::from_secs_f64(at - now)
}

/// Refuses a run that would run out of file descriptors half-way (Linux only; elsewhere the
/// check is skipped).
fn check_open_files(needed: u64) -> Result<(), Error> {
    let Ok(limits) = std::fs::read_to_string("/proc/self/limits") else {
        return Ok(());
    };
    let soft = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse::<u64>().ok());
    match soft {
        Some(soft) if soft < needed => Err(format!(
            "this run needs about {needed} open files but the limit is {soft}: raise it (ulimit -n {needed}) \
             or split the run over several processes (--shard)"
        )
        .into()),
        _ => Ok(()),
    }
}

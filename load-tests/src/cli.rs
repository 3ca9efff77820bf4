//! Command line: every knob of a run, its default, and the checks that refuse a bad one before
//! anything touches the network (notably: only loopback targets unless `--allow-remote`).

use std::net::IpAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use hyper::Uri;

use crate::plan;

#[derive(Debug, Parser)]
#[command(
    name = "coursechat-load",
    version,
    about = "Load generator for coursechat: sets up fixtures through the admin API, opens N authenticated \
             Socket.IO sockets in student/tutor pairs, sends at a target rate and reports connect rate, \
             delivered msgs/s, send→ack and send→deliver latencies and errors.",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Merge the `--json` summaries of processes that ran side by side into one report
    /// (exact percentiles over all of them).
    Merge {
        /// JSON summary files written by `coursechat-load --json > FILE`.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Print the merged summary as JSON on stdout (the report goes to stderr).
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Base URL of the server (plain http; the WebSocket goes to /socket.io/ on the same host).
    /// A comma-separated list names the nodes of one cluster: the fixtures go to the first, and
    /// each chat's student and tutor connect to different nodes (student i to node i mod n, its
    /// tutor to the next one), so every delivery crosses between nodes.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,

    /// HS256 secret the server verifies tokens with; the generator mints every token itself.
    #[arg(long, env = "CHAT_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,

    /// Number of students, each in one chat with a tutor. With --students-per-tutor 1 (the
    /// default) that is N student/tutor pairs, 2N sockets.
    #[arg(long, default_value_t = 50)]
    pub pairs: usize,

    /// Students sharing one tutor (and its course); sockets = pairs + ceil(pairs / this).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub students_per_tutor: u32,

    /// Total messages per second sent by all students of this process together.
    #[arg(long, default_value_t = 100.0)]
    pub rate: f64,

    /// Seconds of measured sending (after the warm-up).
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,

    /// Seconds of sending at the target rate before measuring starts.
    #[arg(long, default_value_t = 2.0)]
    pub warmup: f64,

    /// Seconds to wait after the last send for outstanding acks and deliveries.
    #[arg(long, default_value_t = 5.0)]
    pub drain: f64,

    /// Sockets opened per second (paced, so the server does not see a SYN flood).
    #[arg(long, default_value_t = 200.0)]
    pub connect_rate: f64,

    /// Seconds allowed for one socket's connect handshake, and for its join_chat ack.
    #[arg(long, default_value_t = 10.0)]
    pub connect_timeout: f64,

    /// Prefix of every user, course and chat id of the run ([A-Za-z0-9_-], at most 32 chars).
    /// Default: `lt` and 6 random characters, so repeated runs never clash.
    #[arg(long)]
    pub prefix: Option<String>,

    /// Shard number of this process in a multi-process run (part of every id, so processes
    /// sharing a --prefix never share a user).
    #[arg(long, default_value_t = 0)]
    pub shard: u32,

    /// Start sending at this Unix time (seconds, fractions allowed) instead of as soon as every
    /// socket is connected: gives processes of one run the same measurement window.
    #[arg(long)]
    pub start_at: Option<f64>,

    /// Size of each message's content in bytes (ASCII; at least 28, at most 4000).
    #[arg(long, default_value_t = 64)]
    pub content_size: usize,

    /// Fixture REST calls in flight at once.
    #[arg(long, default_value_t = 16)]
    pub http_concurrency: usize,

    /// Local address to connect from (e.g. 127.0.0.2), to get past ~28k ephemeral ports per
    /// source address when many processes connect to one server port.
    #[arg(long)]
    pub source_ip: Option<IpAddr>,

    /// Origin header sent with the WebSocket upgrade (for servers with CHAT_ALLOWED_ORIGINS).
    #[arg(long)]
    pub origin: Option<String>,

    /// Allow a --url whose host is not loopback (127.0.0.0/8, localhost, ::1).
    #[arg(long)]
    pub allow_remote: bool,

    /// Seconds between progress lines on stderr (0: none).
    #[arg(long, default_value_t = 5.0)]
    pub progress: f64,

    /// Print the summary as JSON on stdout (the human report then goes to stderr).
    #[arg(long)]
    pub json: bool,
}

/// `--url` taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    /// `host:port`, as given (IPv6 in brackets): the Host header and what is resolved.
    pub authority: String,
    /// Host without brackets.
    pub host: String,
    pub port: u16,
}

impl Url {
    pub fn base(&self) -> String {
        format!("http://{}", self.authority)
    }
}

pub fn parse_url(url: &str) -> Result<Url, String> {
    let uri: Uri = url.parse().map_err(|e| format!("--url {url:?}: {e}"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some(other) => return Err(format!("--url {url:?}: only http is supported, not {other}")),
        None => return Err(format!("--url {url:?}: needs a scheme, e.g. http://127.0.0.1:8080")),
    }
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err(format!("--url {url:?}: give the server's base URL, without a path"));
    }
    let authority = uri.authority().ok_or_else(|| format!("--url {url:?}: no host"))?;
    if authority.as_str().contains('@') {
        return Err(format!("--url {url:?}: credentials in the URL are not supported"));
    }
    let port = authority.port_u16().unwrap_or(80);
    let host = authority.host().trim_start_matches('[').trim_end_matches(']').to_string();
    let host_part = authority.host();
    Ok(Url { authority: format!("{host_part}:{port}"), host, port })
}

/// `--url` as a list of nodes (comma-separated, at least one, no repeats).
pub fn parse_urls(urls: &str) -> Result<Vec<Url>, String> {
    let mut nodes: Vec<Url> = Vec::new();
    for part in urls.split(',').map(str::trim) {
        if part.is_empty() {
            return Err(format!("--url {urls:?}: an empty entry in the list"));
        }
        let url = parse_url(part)?;
        if nodes.contains(&url) {
            return Err(format!("--url {urls:?}: {} is listed twice", url.base()));
        }
        nodes.push(url);
    }
    Ok(nodes)
}

/// Whether `host` (no brackets) names this machine: `localhost`, 127.0.0.0/8 or ::1.
pub fn is_loopback_host(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost") || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

impl RunArgs {
    /// Checks that do not need the network. Returns warnings worth printing.
    pub fn validate(&self) -> Result<Vec<String>, String> {
        let mut warnings = Vec::new();
        for url in parse_urls(&self.url)? {
            if !self.allow_remote && !is_loopback_host(&url.host) {
                return Err(format!("--url host {:?} is not loopback; refusing without --allow-remote", url.host));
            }
        }
        if self.source_ip.is_some_and(|ip| !ip.is_loopback()) && !self.allow_remote {
            return Err("--source-ip must be a loopback address without --allow-remote".into());
        }
        if let Some(prefix) = &self.prefix {
            if !plan::valid_prefix(prefix) {
                return Err(format!("--prefix {prefix:?}: use 1..={} characters of [A-Za-z0-9_-]", plan::MAX_PREFIX));
            }
        }
        if self.pairs == 0 {
            return Err("--pairs must be at least 1".into());
        }
        positive("--rate", self.rate)?;
        positive("--connect-rate", self.connect_rate)?;
        positive("--connect-timeout", self.connect_timeout)?;
        positive("--duration", self.duration)?;
        non_negative("--warmup", self.warmup)?;
        non_negative("--drain", self.drain)?;
        non_negative("--progress", self.progress)?;
        if let Some(at) = self.start_at {
            non_negative("--start-at", at)?;
        }
        if !(crate::probe::MIN_CONTENT..=4000).contains(&self.content_size) {
            return Err(format!("--content-size must be within {}..=4000", crate::probe::MIN_CONTENT));
        }
        if self.http_concurrency == 0 {
            return Err("--http-concurrency must be at least 1".into());
        }
        let per_student = self.rate / self.pairs as f64;
        if per_student > 10.0 {
            warnings.push(format!(
                "{per_student:.1} msg/s per student exceeds the server's default rate limit (10/s per user, \
                 burst 20): expect ack:rate_limited errors; use more --pairs or a lower --rate"
            ));
        }
        if self.rate > 0.0 && (self.pairs as f64 / self.rate) > self.duration {
            warnings.push(format!(
                "each student sends once every {:.1} s but the window is {:.1} s: some students will not send at all",
                self.pairs as f64 / self.rate,
                self.duration
            ));
        }
        Ok(warnings)
    }
}

fn positive(name: &str, v: f64) -> Result<(), String> {
    if v.is_finite() && v > 0.0 {
        Ok(())
    } else {
        Err(format!("{name} must be a positive number"))
    }
}

fn non_negative(name: &str, v: f64) -> Result<(), String> {
    if v.is_finite() && v >= 0.0 {
        Ok(())
    } else {
        Err(format!("{name} must be zero or more"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> RunArgs {
        let mut argv = vec!["coursechat-load", "--jwt-secret", "s"];
        argv.extend_from_slice(extra);
        Cli::try_parse_from(argv).unwrap().run
    }

    #[test]
    fn loopback_hosts_are_recognised() {
        for host in ["localhost", "LOCALHOST", "127.0.0.1", "127.3.2.1", "::1"] {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in ["10.0.0.1", "example.com", "0.0.0.0", "::", "::ffff:127.0.0.1", "localhost.example.com"] {
            assert!(!is_loopback_host(host), "{host}");
        }
    }

    #[test]
    fn urls_are_taken_apart() {
        let u = parse_url("http://127.0.0.1:8080").unwrap();
        assert_eq!((u.authority.as_str(), u.host.as_str(), u.port), ("127.0.0.1:8080", "127.0.0.1", 8080));
        assert_eq!(u.base(), "http://127.0.0.1:8080");
        let v6 = parse_url("http://[::1]:9000/").unwrap();
        assert_eq!((v6.authority.as_str(), v6.host.as_str()), ("[::1]:9000", "::1"));
        assert_eq!(parse_url("http://localhost").unwrap().authority, "localhost:80");
        assert!(parse_url("https://127.0.0.1").is_err());
        assert!(parse_url("127.0.0.1:8080").is_err());
        assert!(parse_url("http://127.0.0.1:8080/api").is_err());
        assert!(parse_url("http://u:p@127.0.0.1:8080").is_err());
    }

    #[test]
    fn a_url_list_names_the_nodes_in_order() {
        let nodes = parse_urls("http://127.0.0.1:9001, http://127.0.0.1:9002/").unwrap();
        let bases: Vec<_> = nodes.iter().map(Url::base).collect();
        assert_eq!(bases, ["http://127.0.0.1:9001", "http://127.0.0.1:9002"]);
        assert_eq!(parse_urls("http://localhost:1").unwrap().len(), 1);
        assert!(parse_urls("http://127.0.0.1:9001,").is_err());
        assert!(parse_urls("http://127.0.0.1:9001,http://127.0.0.1:9001").is_err());
        assert!(parse_urls("http://127.0.0.1:9001,ftp://127.0.0.1:9002").is_err());
        assert!(args(&["--url", "http://127.0.0.1:1,http://10.1.2.3:2"]).validate().is_err());
        assert!(args(&["--url", "http://127.0.0.1:1,http://127.0.0.2:2"]).validate().is_ok());
    }

    #[test]
    fn remote_targets_are_refused_unless_allowed() {
        assert!(args(&["--url", "http://10.1.2.3:8080"]).validate().is_err());
        assert!(args(&["--url", "http://10.1.2.3:8080", "--allow-remote"]).validate().is_ok());
        assert!(args(&["--url", "http://localhost:8080"]).validate().is_ok());
        assert!(args(&["--source-ip", "10.0.0.2"]).validate().is_err());
        assert!(args(&["--source-ip", "127.0.0.2"]).validate().is_ok());
    }

    #[test]
    fn bad_numbers_and_prefixes_are_refused() {
        assert!(args(&["--rate", "0"]).validate().is_err());
        assert!(args(&["--pairs", "0"]).validate().is_err());
        assert!(args(&["--duration=-1"]).validate().is_err());
        assert!(args(&["--prefix", "has space"]).validate().is_err());
        assert!(args(&["--content-size", "5"]).validate().is_err());
        assert!(Cli::try_parse_from(["coursechat-load", "--students-per-tutor", "0"]).is_err());
    }

    #[test]
    fn warns_when_students_would_hit_the_rate_limit() {
        let warnings = args(&["--pairs", "10", "--rate", "200"]).validate().unwrap();
        assert!(warnings.iter().any(|w| w.contains("rate limit")), "{warnings:?}");
        assert!(args(&["--pairs", "50", "--rate", "100"]).validate().unwrap().is_empty());
    }

    #[test]
    fn merge_is_a_subcommand() {
        let cli = Cli::try_parse_from(["coursechat-load", "merge", "a.json", "b.json"]).unwrap();
        assert!(matches!(cli.command, Some(Command::Merge { ref files, .. }) if files.len() == 2));
    }
}

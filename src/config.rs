//! Every setting: its flag, its environment variable and its default (CONTRACT "Running").

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "coursechat", version, about = "A Socket.IO-compatible real-time chat edge for course platforms")]
#[command(args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// `coursechat` with no subcommand serves, with these settings.
    #[command(flatten)]
    pub serve: ServeConfig,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the chat edge (the default).
    Serve(ServeConfig),
}

impl Cli {
    pub fn into_serve(self) -> ServeConfig {
        match self.command {
            Some(Command::Serve(c)) => c,
            None => self.serve,
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct ServeConfig {
    /// Address to listen on.
    #[arg(long, env = "CHAT_ADDR", default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,
    /// HS256 secret for JWTs (required unless --demo or CHAT_JWT_PUBLIC_KEY).
    #[arg(long, env = "CHAT_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// PEM public key (the key itself, or a path to it) for RS256/ES256 tokens.
    #[arg(long, env = "CHAT_JWT_PUBLIC_KEY", hide_env_values = true)]
    pub jwt_public_key: Option<String>,
    /// Algorithm for CHAT_JWT_PUBLIC_KEY: RS256 or ES256.
    #[arg(long, env = "CHAT_JWT_ALGORITHM", default_value = "RS256")]
    pub jwt_algorithm: String,
    /// Required `iss` claim, when set.
    #[arg(long, env = "CHAT_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,
    /// Required `aud` claim, when set.
    #[arg(long, env = "CHAT_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,
    /// Clock leeway for exp/nbf, in seconds.
    #[arg(long, env = "CHAT_JWT_LEEWAY", default_value_t = 5)]
    pub jwt_leeway: u64,
    /// Directory of the embedded store and the durable queue.
    #[arg(long, env = "CHAT_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// Redis URL: unset runs the in-process engine (single node).
    #[arg(long, env = "CHAT_REDIS_URL")]
    pub redis_url: Option<String>,
    /// MongoDB URL: unset uses the embedded store.
    #[arg(long, env = "CHAT_MONGODB_URL")]
    pub mongodb_url: Option<String>,
    /// This node's id in logs, the audit log and metrics (default: random).
    #[arg(long, env = "CHAT_NODE_ID")]
    pub node_id: Option<String>,
    /// Comma list of allowed browser origins (websocket Origin check and CORS). Unset: any
    /// origin may open a socket and REST sends no CORS headers (same origin only).
    #[arg(long, env = "CHAT_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Vec<String>,
    /// Built web client to serve at `/`.
    #[arg(long, env = "CHAT_WEB_DIR")]
    pub web_dir: Option<PathBuf>,
    /// Key that signs attachment urls (derived from the JWT secret when unset).
    #[arg(long, env = "CHAT_SIGNING_KEY", hide_env_values = true)]
    pub signing_key: Option<String>,
    /// File for the audit log (JSON lines); unset: stdout under the `audit` target.
    #[arg(long, env = "CHAT_AUDIT_LOG")]
    pub audit_log: Option<PathBuf>,
    /// Seconds to drain sockets on SIGTERM.
    #[arg(long, env = "CHAT_DRAIN_SECONDS", default_value_t = 10)]
    pub drain_seconds: u64,
    /// Seed demo data and enable the development token endpoints.
    #[arg(long, env = "CHAT_DEMO")]
    pub demo: bool,
    /// Log format: text or json.
    #[arg(long, env = "CHAT_LOG_FORMAT", default_value = "text")]
    pub log_format: String,
    /// Threads running the sockets' tasks; 0: one fewer than the cores, at least one (the
    /// queue's committer and the store's writer have threads of their own).
    #[arg(long, env = "CHAT_WORKER_THREADS", default_value_t = 0)]
    pub worker_threads: usize,

    #[command(flatten)]
    pub limits: Limits,
    #[command(flatten)]
    pub redis: RedisSettings,
}

/// Settings of the Redis engine (used only with `CHAT_REDIS_URL`).
#[derive(Debug, Clone, Args)]
pub struct RedisSettings {
    /// Prefix of every Redis key and channel, so several deployments can share one Redis.
    #[arg(long, env = "CHAT_REDIS_PREFIX", default_value = "coursechat:")]
    pub redis_prefix: String,
    /// Durable queue streams; a chat's keys and its stream share one hash slot. Fixed for the
    /// life of a deployment's data (changing it moves chats to other slots).
    #[arg(long, env = "CHAT_REDIS_SHARDS", default_value_t = 16)]
    pub redis_shards: u32,
    /// Messages per chat kept in Redis for recovery and the first history page.
    #[arg(long, env = "CHAT_REDIS_RECENT", default_value_t = 100)]
    pub redis_recent: u32,
    /// Days an idle chat's recent messages stay in Redis.
    #[arg(long, env = "CHAT_REDIS_RECENT_DAYS", default_value_t = 7)]
    pub redis_recent_days: u32,
    /// Connections in the node's Redis pool (besides its one subscriber connection).
    #[arg(long, env = "CHAT_REDIS_POOL", default_value_t = 16)]
    pub redis_pool: usize,
    /// Longest wait for a pooled connection or a Redis reply before a call fails `unavailable`, ms.
    #[arg(long, env = "CHAT_REDIS_TIMEOUT_MS", default_value_t = 1000)]
    pub redis_timeout_ms: u64,
    /// Replicas that must have each send before it is acked (Redis `WAIT`); 0 relies on the
    /// primary's own durability (AOF with `appendfsync always`). See docs/REDIS.md.
    #[arg(long, env = "CHAT_REDIS_WAIT_REPLICAS", default_value_t = 0)]
    pub redis_wait_replicas: u32,
    /// Seconds without a heartbeat after which a node counts as dead and its sockets are
    /// removed from presence by the others.
    #[arg(long, env = "CHAT_NODE_DEAD_AFTER", default_value_t = 10)]
    pub node_dead_after: u64,
}

#[derive(Debug, Clone, Args)]
pub struct Limits {
    /// Largest websocket frame accepted, in bytes (also Engine.IO maxPayload).
    #[arg(long, env = "CHAT_MAX_FRAME_BYTES", default_value_t = 65536)]
    pub max_frame_bytes: usize,
    /// Longest message content, in Unicode code points after trimming.
    #[arg(long, env = "CHAT_MAX_CONTENT_CHARS", default_value_t = 4000)]
    pub max_content_chars: usize,
    /// Messages per second per user.
    #[arg(long, env = "CHAT_MESSAGE_RATE", default_value_t = 10)]
    pub message_rate: u32,
    /// Message burst per user.
    #[arg(long, env = "CHAT_MESSAGE_BURST", default_value_t = 20)]
    pub message_burst: u32,
    /// Typing events per second per socket.
    #[arg(long, env = "CHAT_TYPING_RATE", default_value_t = 20)]
    pub typing_rate: u32,
    /// Frames waiting for one socket before it counts as a slow consumer and is disconnected.
    #[arg(long, env = "CHAT_SOCKET_QUEUE", default_value_t = 256)]
    pub socket_queue: usize,
    /// Most open connections (sockets and HTTP) at once.
    #[arg(long, env = "CHAT_MAX_CONNECTIONS", default_value_t = 100_000)]
    pub max_connections: usize,
    /// Engine.IO ping interval, ms.
    #[arg(long, env = "CHAT_PING_INTERVAL_MS", default_value_t = 25_000)]
    pub ping_interval_ms: u64,
    /// Engine.IO ping timeout, ms.
    #[arg(long, env = "CHAT_PING_TIMEOUT_MS", default_value_t = 20_000)]
    pub ping_timeout_ms: u64,
    /// Time a new socket has to send its Socket.IO CONNECT, ms.
    #[arg(long, env = "CHAT_CONNECT_TIMEOUT_MS", default_value_t = 45_000)]
    pub connect_timeout_ms: u64,
    /// Grace period before a user whose last socket closed is announced offline, ms.
    #[arg(long, env = "CHAT_PRESENCE_GRACE_MS", default_value_t = 5_000)]
    pub presence_grace_ms: u64,
    /// A typing state expires after this long without renewal, ms.
    #[arg(long, env = "CHAT_TYPING_TTL_MS", default_value_t = 6_000)]
    pub typing_ttl_ms: u64,
    /// How long a clientMsgId is remembered for deduplication, hours.
    #[arg(long, env = "CHAT_IDEMPOTENCY_HOURS", default_value_t = 24)]
    pub idempotency_hours: u64,
    /// Largest attachment, bytes.
    #[arg(long, env = "CHAT_MAX_ATTACHMENT_BYTES", default_value_t = 10 * 1024 * 1024)]
    pub max_attachment_bytes: usize,
    /// Attachment types allowed (as sniffed from the bytes), comma list.
    #[arg(
        long,
        env = "CHAT_ATTACHMENT_TYPES",
        value_delimiter = ',',
        default_value = "image/png,image/jpeg,image/gif,image/webp,application/pdf,text/plain"
    )]
    pub attachment_types: Vec<String>,
    /// How long a signed attachment url stays valid, seconds.
    #[arg(long, env = "CHAT_ATTACHMENT_URL_TTL", default_value_t = 3600)]
    pub attachment_url_ttl: u64,
    /// Most messages the write-behind writer persists in one batch.
    #[arg(long, env = "CHAT_WRITER_BATCH", default_value_t = 500)]
    pub writer_batch: usize,
    /// After a partial batch, how long the writer lets the next one gather, ms.
    #[arg(long, env = "CHAT_WRITER_FLUSH_MS", default_value_t = 20)]
    pub writer_flush_ms: u64,
    /// Page cache of the embedded databases, MiB: three quarters for the store (`store.redb`),
    /// one quarter for the queue's index (`queue.redb`).
    #[arg(long, env = "CHAT_CACHE_MB", default_value_t = 64)]
    pub cache_mb: usize,
}

impl Limits {
    /// The page cache of `store.redb`, bytes.
    pub fn store_cache_bytes(&self) -> usize {
        self.cache_mb.max(4) * 1024 * 1024 / 4 * 3
    }
    /// The page cache of `queue.redb`, bytes.
    pub fn queue_cache_bytes(&self) -> usize {
        self.cache_mb.max(4) * 1024 * 1024 / 4
    }
    pub fn ping_interval(&self) -> Duration {
        Duration::from_millis(self.ping_interval_ms)
    }
    pub fn ping_timeout(&self) -> Duration {
        Duration::from_millis(self.ping_timeout_ms)
    }
}

impl ServeConfig {
    /// Origins are compared without a trailing slash.
    pub fn origin_allowed(&self, origin: &str) -> bool {
        self.allowed_origins.is_empty()
            || self.allowed_origins.iter().any(|o| o.trim().trim_end_matches('/') == origin.trim_end_matches('/'))
    }

    /// The runtime's worker threads: as configured, else one fewer than the cores (at least one).
    /// On two cores one worker spent 7% less CPU per message than two, at 2k to 16k msg/s: the
    /// committer thread takes a core's share, and two workers kept waking each other to steal.
    pub fn worker_threads(&self) -> usize {
        match self.worker_threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get().saturating_sub(1)).max(1),
            n => n,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serve_is_the_default_subcommand() {
        let cli = Cli::try_parse_from(["coursechat", "--demo", "--addr", "127.0.0.1:9"]).unwrap();
        let c = cli.into_serve();
        assert!(c.demo);
        assert_eq!(c.addr.port(), 9);
        let cli = Cli::try_parse_from(["coursechat", "serve", "--data-dir", "/tmp/x"]).unwrap();
        assert_eq!(cli.into_serve().data_dir, PathBuf::from("/tmp/x"));
    }
}

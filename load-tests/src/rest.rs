//! A small JSON-over-HTTP/1.1 client for the contract's REST API, with the retry policy a fixture
//! loader needs: `429` (honouring `Retry-After`), `503` and connection failures are retried a few
//! times with backoff; every other answer is returned as is.
//!
//! Built on hyper's pooled client (keep-alive, no TLS: the generator only speaks to plain `http://`).

use std::fmt;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;
use tokio::task::JoinSet;

/// Attempts per request, the first included.
const ATTEMPTS: u32 = 6;
/// Upper bound of one backoff sleep, whatever `Retry-After` says, so fixture setup stays bounded.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Bound on one attempt, connect to last body byte.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(15);

/// One REST call to make.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: Method,
    pub path: String,
    pub token: Arc<str>,
    pub body: Option<Vec<u8>>,
}

/// The answer to a [`Call`], whatever its status.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub body: Bytes,
}

impl Answer {
    /// The contract's `{"error":{"code":..}}`, if the body holds one.
    pub fn error_code(&self) -> Option<String> {
        #[derive(Deserialize)]
        struct Envelope {
            error: Code,
        }
        #[derive(Deserialize)]
        struct Code {
            code: String,
        }
        serde_json::from_slice::<Envelope>(&self.body).ok().map(|e| e.error.code)
    }
}

#[derive(Debug)]
pub enum RestError {
    /// The request could not be built (bad path or token bytes).
    Build(String),
    /// No answer after every attempt.
    Transport { call: String, cause: String },
}

impl fmt::Display for RestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RestError::Build(e) => write!(f, "cannot build request: {e}"),
            RestError::Transport { call, cause } => {
                write!(f, "{call}: no answer after {ATTEMPTS} attempts: {cause}")
            }
        }
    }
}

impl std::error::Error for RestError {}

#[derive(Clone)]
pub struct Rest {
    client: Client<HttpConnector, Full<Bytes>>,
    /// `http://host:port`, without a trailing slash.
    base: String,
}

impl Rest {
    pub fn new(base: &str, source_ip: Option<IpAddr>) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_local_address(source_ip);
        connector.set_connect_timeout(Some(ATTEMPT_TIMEOUT));
        let client = Client::builder(TokioExecutor::new()).pool_idle_timeout(Duration::from_secs(30)).build(connector);
        Rest { client, base: base.trim_end_matches('/').to_string() }
    }

    /// Sends one call, retrying what is worth retrying.
    pub async fn send(&self, call: &Call) -> Result<Answer, RestError> {
        let name = format!("{} {}", call.method, call.path);
        let mut last_cause = String::new();
        for attempt in 0..ATTEMPTS {
            let backoff = Duration::from_millis(100 << attempt).min(MAX_BACKOFF);
            match tokio::time::timeout(ATTEMPT_TIMEOUT, self.attempt(call)).await {
                Ok(Ok(AnswerWithRetry(answer, retry_after))) => {
                    let retry =
                        matches!(answer.status, StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE);
                    if !retry || attempt + 1 == ATTEMPTS {
                        return Ok(answer);
                    }
                    last_cause = format!("status {}", answer.status);
                    tokio::time::sleep(retry_after.unwrap_or(backoff).min(MAX_BACKOFF)).await;
                }
                Ok(Err(AttemptError::Build(e))) => return Err(RestError::Build(e)),
                Ok(Err(AttemptError::Transport(e))) => {
                    last_cause = e;
                    tokio::time::sleep(backoff).await;
                }
                Err(_) => {
                    last_cause = format!("timed out after {ATTEMPT_TIMEOUT:?}");
                }
            }
        }
        Err(RestError::Transport { call: name, cause: last_cause })
    }

    async fn attempt(&self, call: &Call) -> Result<AnswerWithRetry, AttemptError> {
        let uri = format!("{}{}", self.base, call.path);
        let mut builder = Request::builder().method(call.method.clone()).uri(uri);
        let auth =
            HeaderValue::from_str(&format!("Bearer {}", call.token)).map_err(|e| AttemptError::Build(e.to_string()))?;
        builder = builder.header(AUTHORIZATION, auth);
        let body = match &call.body {
            Some(b) => {
                builder = builder.header(CONTENT_TYPE, "application/json");
                Full::new(Bytes::from(b.clone()))
            }
            None => Full::new(Bytes::new()),
        };
        let request = builder.body(body).map_err(|e| AttemptError::Build(e.to_string()))?;
        let response = self.client.request(request).await.map_err(|e| AttemptError::Transport(error_chain(&e)))?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body =
            response.into_body().collect().await.map_err(|e| AttemptError::Transport(error_chain(&e)))?.to_bytes();
        Ok(AnswerWithRetry(Answer { status, body }, retry_after))
    }

    /// Sends every call with at most `concurrency` in flight and returns the answers in call
    /// order. Stops early (and says so) on the first call that gets no answer at all.
    pub async fn send_all(&self, calls: &Arc<Vec<Call>>, concurrency: usize) -> Result<Vec<Answer>, RestError> {
        let next = Arc::new(AtomicUsize::new(0));
        let failed = Arc::new(AtomicBool::new(false));
        let mut workers = JoinSet::new();
        for _ in 0..concurrency.clamp(1, calls.len().max(1)) {
            let (rest, calls, next, failed) = (self.clone(), calls.clone(), next.clone(), failed.clone());
            workers.spawn(async move {
                let mut done = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= calls.len() || failed.load(Ordering::Relaxed) {
                        return Ok(done);
                    }
                    match rest.send(&calls[i]).await {
                        Ok(answer) => done.push((i, answer)),
                        Err(e) => {
                            failed.store(true, Ordering::Relaxed);
                            return Err(e);
                        }
                    }
                }
            });
        }
        let mut answers: Vec<Option<Answer>> = (0..calls.len()).map(|_| None).collect();
        let mut first_error = None;
        while let Some(joined) = workers.join_next().await {
            match joined {
                Ok(Ok(done)) => {
                    for (i, answer) in done {
                        answers[i] = Some(answer);
                    }
                }
                Ok(Err(e)) => {
                    first_error.get_or_insert(e);
                }
                Err(e) => {
                    first_error
                        .get_or_insert(RestError::Transport { call: "fixture worker".into(), cause: e.to_string() });
                }
            }
        }
        if let Some(e) = first_error {
            return Err(e);
        }
        answers
            .into_iter()
            .map(|a| {
                a.ok_or_else(|| RestError::Transport {
                    call: "fixture worker".into(),
                    cause: "call left unanswered".into(),
                })
            })
            .collect()
    }
}

/// An answer and the delay its `Retry-After` asked for.
struct AnswerWithRetry(Answer, Option<Duration>);

enum AttemptError {
    Build(String),
    Transport(String),
}

/// `e: cause: cause`, because hyper's top-level messages ("client error (Connect)") hide the reason.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

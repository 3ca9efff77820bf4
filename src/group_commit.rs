//! Group commit for a redb database: one writer thread turns many concurrent writes into one
//! fsync'd transaction.
//!
//! redb allows one write transaction at a time and each `Durability::Immediate` commit costs an
//! fsync. A send must not be acked before its commit, so committing each send alone would cap
//! throughput at the disk's fsync rate. Instead every write is a job on a bounded queue; the
//! thread takes all jobs waiting (up to [`MAX_JOBS_PER_COMMIT`]), runs them in one transaction,
//! commits once, then runs each job's completion in submission order. Completions run on this
//! thread, so work that must follow the commit in order (publishing messages in seq order) goes
//! there.
//!
//! A write may also be lazy ([`GroupCommit::write_lazily`]): it commits without an fsync of its
//! own and becomes durable with the next durable commit, for records that can be rebuilt if a
//! crash takes them (the queue's index of released messages).

use std::sync::Arc;

use redb::{Database, Durability, WriteTransaction};
use tokio::sync::{mpsc, oneshot};

/// How many jobs share one transaction at most; bounds the latency one commit adds to the others.
const MAX_JOBS_PER_COMMIT: usize = 512;
/// Jobs waiting for the writer thread. When full, submitters wait (back-pressure), they are not
/// refused: the queue drains at the disk's pace.
const QUEUE_BOUND: usize = 4096;

type Completion = Box<dyn FnOnce(Result<(), CommitFailed>) + Send>;
type Run = Box<dyn FnOnce(&WriteTransaction) -> Result<Completion, redb::Error> + Send>;

struct Job {
    run: Run,
    /// Whether the commit must be fsync'd before this job's caller hears back.
    durable: bool,
}

/// A write that did not become durable: the database failed, or the writer is gone.
#[derive(Debug, Clone, thiserror::Error)]
#[error("durable write failed: {0}")]
pub struct CommitFailed(pub Arc<str>);

impl From<redb::Error> for CommitFailed {
    fn from(e: redb::Error) -> Self {
        CommitFailed(e.to_string().into())
    }
}

#[derive(Clone)]
pub struct GroupCommit {
    jobs: mpsc::Sender<Job>,
    /// Which database this writer serves, for metrics and logs.
    name: &'static str,
}

impl GroupCommit {
    /// Starts the writer thread for `db`. The thread ends when every handle is dropped.
    pub fn start(db: Arc<Database>, name: &'static str) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel(QUEUE_BOUND);
        std::thread::Builder::new().name(format!("commit-{name}")).spawn(move || writer_loop(&db, rx, name))?;
        Ok(GroupCommit { jobs: tx, name })
    }

    /// Runs `f` inside a durable write transaction and returns its value once committed.
    pub async fn write<T, F>(&self, f: F) -> Result<T, CommitFailed>
    where
        T: Send + 'static,
        F: FnOnce(&WriteTransaction) -> Result<T, redb::Error> + Send + 'static,
    {
        self.submit(f, |_| {}, true).await
    }

    /// Runs `f` inside a write transaction committed without an fsync of its own: visible at
    /// once, durable with the next durable commit (a crash before then may lose it).
    pub async fn write_lazily<T, F>(&self, f: F) -> Result<T, CommitFailed>
    where
        T: Send + 'static,
        F: FnOnce(&WriteTransaction) -> Result<T, redb::Error> + Send + 'static,
    {
        self.submit(f, |_| {}, false).await
    }

    /// Like [`write`](Self::write), and runs `after` on the writer thread right after the commit,
    /// in the order the jobs were submitted, before the caller is woken.
    pub async fn write_then<T, F, A>(&self, f: F, after: A) -> Result<T, CommitFailed>
    where
        T: Send + 'static,
        F: FnOnce(&WriteTransaction) -> Result<T, redb::Error> + Send + 'static,
        A: FnOnce(&T) + Send + 'static,
    {
        self.submit(f, after, true).await
    }

    async fn submit<T, F, A>(&self, f: F, after: A, durable: bool) -> Result<T, CommitFailed>
    where
        T: Send + 'static,
        F: FnOnce(&WriteTransaction) -> Result<T, redb::Error> + Send + 'static,
        A: FnOnce(&T) + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let run = Box::new(move |txn: &WriteTransaction| {
            let value = f(txn)?;
            Ok(Box::new(move |committed: Result<(), CommitFailed>| match committed {
                Ok(()) => {
                    after(&value);
                    let _ = reply.send(Ok(value));
                }
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            }) as Completion)
        });
        if self.jobs.send(Job { run, durable }).await.is_err() {
            return Err(CommitFailed(format!("{} writer stopped", self.name).into()));
        }
        answer.await.unwrap_or_else(|_| Err(CommitFailed(format!("{} write aborted", self.name).into())))
    }
}

/// Waits for the first job, then takes every job already waiting, up to `max`, into `jobs`;
/// false once every sender is gone. The batching of every group commit.
pub fn gather<T>(rx: &mut mpsc::Receiver<T>, max: usize, jobs: &mut Vec<T>) -> bool {
    let Some(first) = rx.blocking_recv() else { return false };
    jobs.push(first);
    while jobs.len() < max {
        match rx.try_recv() {
            Ok(job) => jobs.push(job),
            Err(_) => break,
        }
    }
    true
}

fn writer_loop(db: &Database, mut rx: mpsc::Receiver<Job>, name: &'static str) {
    let mut jobs = Vec::with_capacity(64);
    while gather(&mut rx, MAX_JOBS_PER_COMMIT, &mut jobs) {
        metrics::histogram!("coursechat_group_commit_jobs", "db" => name).record(jobs.len() as f64);
        let started = std::time::Instant::now();
        commit_batch(db, &mut jobs, name);
        metrics::histogram!("coursechat_group_commit_seconds", "db" => name).record(started.elapsed().as_secs_f64());
    }
}

fn commit_batch(db: &Database, jobs: &mut Vec<Job>, name: &'static str) {
    let mut txn = match db.begin_write() {
        Ok(txn) => txn,
        Err(e) => {
            tracing::error!(db = name, error = %e, "cannot begin write transaction");
            jobs.clear(); // dropping a job drops its reply: the caller sees a failed write
            return;
        }
    };
    let durability = if jobs.iter().any(|j| j.durable) { Durability::Immediate } else { Durability::None };
    if let Err(e) = txn.set_durability(durability) {
        tracing::error!(db = name, error = %e, "cannot set durability");
        jobs.clear();
        return;
    }
    let mut completions = Vec::with_capacity(jobs.len());
    let mut failure = None;
    for job in jobs.drain(..) {
        if failure.is_some() {
            continue; // dropped: its caller sees a failed write
        }
        match (job.run)(&txn) {
            Ok(done) => completions.push(done),
            Err(e) => failure = Some(CommitFailed::from(e)),
        }
    }
    let outcome = match failure {
        Some(e) => {
            tracing::error!(db = name, error = %e, "write failed; transaction aborted");
            let _ = txn.abort();
            Err(e)
        }
        None => txn.commit().map_err(|e| CommitFailed(e.to_string().into())),
    };
    for done in completions {
        done(outcome.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redb::{ReadableDatabase, TableDefinition};

    const T: TableDefinition<u64, u64> = TableDefinition::new("t");

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writes_all_commit_and_share_transactions() {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(Database::create(dir.path().join("t.redb")).unwrap());
        let gc = GroupCommit::start(db.clone(), "test").unwrap();
        let mut tasks = Vec::new();
        for i in 0..200u64 {
            let gc = gc.clone();
            tasks.push(tokio::spawn(async move {
                gc.write(move |txn| {
                    let mut t = txn.open_table(T)?;
                    t.insert(i, i * 2)?;
                    Ok(i)
                })
                .await
            }));
        }
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        let read = db.begin_read().unwrap();
        let t = read.open_table(T).unwrap();
        assert_eq!(redb::ReadableTableMetadata::len(&t).unwrap(), 200);
    }
}

//! The embedded store: redb in the data dir, the default so `coursechat` runs on a bare machine.
//!
//! Why redb: a pure-Rust, single-file, ACID B-tree with MVCC readers and a well-defined fsync'd
//! commit (`Durability::Immediate`), actively maintained, and no C toolchain or background
//! compaction to tune (fjall's LSM would be the choice for write volumes far beyond one node).
//! Reads open a read transaction inline (they never wait for the writer); writes go through
//! [`GroupCommit`] so concurrent writers share one fsync.
//!
//! Records are JSON values under string or tuple keys, except messages, which are compact binary
//! records ([`message_record`](super::message_record)) under `(chat, seq)`; the secondary tables
//! are the indexes the queries need (tutor → courses, course → students, user → chats, the
//! one-chat-per-triple rule). A chat's last message, last seq and update time are read from its
//! messages, not kept in the chat's record: storing a batch of messages then writes only the
//! messages and the senders' read cursors.

use std::borrow::Borrow;
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use redb::{
    AccessGuard, Database, Key, ReadTransaction, ReadableDatabase, ReadableTable, StorageError, TableDefinition,
    WriteTransaction,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::message_record;
use super::{ChatCreation, Store, StoreError, StoreResult};
use crate::group_commit::{CommitFailed, GroupCommit};
use crate::model::time::Timestamp;
use crate::model::{Block, Chat, Course, Enrollment, Message, StoredAttachment, User};

const USERS: TableDefinition<&str, &[u8]> = TableDefinition::new("users");
const COURSES: TableDefinition<&str, &[u8]> = TableDefinition::new("courses");
/// (tutor, course): the courses a tutor teaches.
const TUTOR_COURSES: TableDefinition<(&str, &str), ()> = TableDefinition::new("tutor_courses");
/// (user, course) → enrollment.
const ENROLLMENTS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("enrollments");
/// (course, user): the students of a course.
const COURSE_STUDENTS: TableDefinition<(&str, &str), ()> = TableDefinition::new("course_students");
/// (blocker, blocked) → createdAt millis.
const BLOCKS: TableDefinition<(&str, &str), i64> = TableDefinition::new("blocks");
const CHATS: TableDefinition<&str, &[u8]> = TableDefinition::new("chats");
/// (student, tutor, course) → chat id: at most one chat per triple.
const CHAT_KEYS: TableDefinition<(&str, &str, &str), &str> = TableDefinition::new("chat_keys");
/// (user, chat): the chats a user takes part in.
const USER_CHATS: TableDefinition<(&str, &str), ()> = TableDefinition::new("user_chats");
/// (chat, seq) → message ([`message_record`]).
const MESSAGES: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("messages");
/// (chat, user) → highest seq read.
const READ_CURSORS: TableDefinition<(&str, &str), u64> = TableDefinition::new("read_cursors");
/// attachment id → its record; the bytes are a file of that name under `attachments/`.
const ATTACHMENTS: TableDefinition<&str, &[u8]> = TableDefinition::new("attachments");

/// Every id is `[A-Za-z0-9_-]` or hex, all below this character, so `(id, "")..(id, MAX)` spans
/// exactly the entries whose first key part is `id`.
const KEY_MAX: &str = "\u{7f}";

/// The page cache [`EmbeddedStore::open`] gives `store.redb`.
pub const DEFAULT_CACHE_BYTES: usize = 48 * 1024 * 1024;

pub struct EmbeddedStore {
    db: Arc<Database>,
    writer: GroupCommit,
    /// Where attachment bytes live, one file per attachment.
    files: std::path::PathBuf,
}

impl EmbeddedStore {
    /// Opens (or creates) `store.redb` in `dir`.
    pub fn open(dir: &Path) -> StoreResult<Self> {
        Self::open_with_cache(dir, DEFAULT_CACHE_BYTES)
    }

    /// Opens (or creates) `store.redb` in `dir` with `cache_bytes` of page cache (redb's own
    /// default is 1 GiB, which a busy node fills and keeps).
    pub fn open_with_cache(dir: &Path, cache_bytes: usize) -> StoreResult<Self> {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::Unavailable(format!("{}: {e}", dir.display())))?;
        let path = dir.join("store.redb");
        let db = Database::builder()
            .set_cache_size(cache_bytes)
            .create(&path)
            .map_err(|e| StoreError::Unavailable(format!("{}: {e}", path.display())))?;
        let txn = db.begin_write().map_err(redb::Error::from)?;
        create_tables(&txn)?;
        txn.commit().map_err(redb::Error::from)?;
        let db = Arc::new(db);
        let writer = GroupCommit::start(db.clone(), "store").map_err(|e| StoreError::Unavailable(e.to_string()))?;
        let files = dir.join("attachments");
        std::fs::create_dir_all(&files).map_err(|e| StoreError::Unavailable(format!("{}: {e}", files.display())))?;
        Ok(EmbeddedStore { db, writer, files })
    }

    fn read<T>(&self, f: impl FnOnce(&ReadTransaction) -> StoreResult<T>) -> StoreResult<T> {
        let txn = self.db.begin_read().map_err(redb::Error::from)?;
        f(&txn)
    }

    /// Runs `f` as one job of the group writer: answered once its commit is durable.
    async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&WriteTransaction) -> Result<T, redb::Error> + Send + 'static,
    ) -> StoreResult<T> {
        Ok(self.writer.write(f).await?)
    }
}

fn create_tables(txn: &WriteTransaction) -> Result<(), redb::Error> {
    txn.open_table(USERS)?;
    txn.open_table(COURSES)?;
    txn.open_table(TUTOR_COURSES)?;
    txn.open_table(ENROLLMENTS)?;
    txn.open_table(COURSE_STUDENTS)?;
    txn.open_table(BLOCKS)?;
    txn.open_table(CHATS)?;
    txn.open_table(CHAT_KEYS)?;
    txn.open_table(USER_CHATS)?;
    txn.open_table(MESSAGES)?;
    txn.open_table(READ_CURSORS)?;
    txn.open_table(ATTACHMENTS)?;
    Ok(())
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Our records are plain structs with string keys: serializing them cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> StoreResult<T> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// Decoding inside a write job, where errors must be `redb::Error` to abort the transaction.
fn decode_in_txn<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, redb::Error> {
    serde_json::from_slice(bytes).map_err(|e| redb::Error::Corrupted(e.to_string()))
}

/// A table of JSON records, under any key.
type Records<K> = TableDefinition<'static, K, &'static [u8]>;
/// A key of two ids, `(a, b)`: what the indexes and the per-pair tables are keyed by.
type Pair = (&'static str, &'static str);

/// The record under `key` in `table`, if any.
fn get_json<'k, K: Key + 'static, T: DeserializeOwned>(
    txn: &ReadTransaction,
    table: Records<K>,
    key: impl Borrow<K::SelfType<'k>>,
) -> StoreResult<Option<T>> {
    get_json_from(&txn.open_table(table)?, key)
}

/// [`get_json`] on a table already open.
fn get_json_from<'k, K: Key + 'static, T: DeserializeOwned>(
    table: &impl ReadableTable<K, &'static [u8]>,
    key: impl Borrow<K::SelfType<'k>>,
) -> StoreResult<Option<T>> {
    table.get(key)?.map(|v| decode(v.value())).transpose()
}

/// [`get_json_from`] inside a write job.
fn get_json_in_txn<'k, K: Key + 'static, T: DeserializeOwned>(
    table: &impl ReadableTable<K, &'static [u8]>,
    key: impl Borrow<K::SelfType<'k>>,
) -> Result<Option<T>, redb::Error> {
    table.get(key)?.map(|v| decode_in_txn(v.value())).transpose()
}

/// Stores `value` under `key` in `table`, replacing what was there.
fn put_json<'k, K: Key + 'static>(
    txn: &WriteTransaction,
    table: Records<K>,
    key: impl Borrow<K::SelfType<'k>>,
    value: &impl Serialize,
) -> Result<(), redb::Error> {
    txn.open_table(table)?.insert(key, encode(value).as_slice())?;
    Ok(())
}

/// The keys `(id, _)` of a [`Pair`]-keyed table: all of them and no others (see [`KEY_MAX`]).
fn prefix(id: &str) -> Range<(&str, &str)> {
    (id, "")..(id, KEY_MAX)
}

/// The records of a range of entries, decoded, in the range's order.
fn decode_values<'t, K: Key + 'static, T: DeserializeOwned>(
    entries: impl Iterator<Item = Result<(AccessGuard<'t, K>, AccessGuard<'t, &'static [u8]>), StorageError>>,
) -> StoreResult<Vec<T>> {
    entries.map(|entry| decode(entry?.1.value())).collect()
}

/// Messages of a range of [`MESSAGES`] entries, in the range's order.
fn decode_messages<'t>(
    entries: impl Iterator<
        Item = Result<(AccessGuard<'t, (&'static str, u64)>, AccessGuard<'t, &'static [u8]>), StorageError>,
    >,
) -> StoreResult<Vec<Message>> {
    entries
        .map(|entry| {
            let (key, record) = entry?;
            let (chat, seq) = key.value();
            message_record::decode(chat, seq, record.value()).map_err(StoreError::Corrupt)
        })
        .collect()
}

/// `chat` with its last message, last seq and update time as its stored messages say.
fn with_last_message(
    messages: &impl ReadableTable<(&'static str, u64), &'static [u8]>,
    mut chat: Chat,
) -> StoreResult<Chat> {
    let range = messages.range((chat.id.as_str(), 0u64)..=(chat.id.as_str(), u64::MAX))?;
    if let Some(last) = decode_messages(range.rev().take(1))?.pop() {
        chat.last_seq = last.seq;
        chat.updated_at = last.created_at;
        chat.last_message = Some(last);
    }
    Ok(chat)
}

/// The records an index names for `id`: for each index entry `(id, b)`, the record under
/// `key(id, b)` in `records`, in index order; an entry whose record is gone is skipped.
fn indexed<K: Key + 'static, T: DeserializeOwned>(
    txn: &ReadTransaction,
    index: TableDefinition<Pair, ()>,
    id: &str,
    records: Records<K>,
    key: impl for<'a> Fn(&'a str, &'a str) -> K::SelfType<'a>,
) -> StoreResult<Vec<T>> {
    let index = txn.open_table(index)?;
    let records = txn.open_table(records)?;
    let mut out = Vec::new();
    for entry in index.range(prefix(id))? {
        let (entry, _) = entry?;
        let (a, b) = entry.value();
        if let Some(record) = get_json_from(&records, key(a, b))? {
            out.push(record);
        }
    }
    Ok(out)
}

// redb's errors, and the group writer's, are this store's business: `store/mod.rs` knows neither.

impl From<redb::Error> for StoreError {
    fn from(e: redb::Error) -> Self {
        StoreError::Unavailable(e.to_string())
    }
}

impl From<CommitFailed> for StoreError {
    fn from(e: CommitFailed) -> Self {
        StoreError::Unavailable(e.to_string())
    }
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::Unavailable(redb::Error::from(e).to_string())
            }
        }
    )*};
}
from_redb!(redb::TransactionError, redb::TableError, redb::StorageError, redb::CommitError);

#[async_trait]
impl Store for EmbeddedStore {
    fn kind(&self) -> &'static str {
        "embedded"
    }

    async fn ping(&self) -> StoreResult<()> {
        self.read(|txn| {
            txn.open_table(USERS)?;
            Ok(())
        })
    }

    async fn put_user(&self, user: &User) -> StoreResult<()> {
        let user = user.clone();
        self.write(move |txn| put_json(txn, USERS, user.id.as_str(), &user)).await
    }

    async fn user(&self, id: &str) -> StoreResult<Option<User>> {
        self.read(|txn| get_json(txn, USERS, id))
    }

    async fn put_course(&self, course: &Course) -> StoreResult<()> {
        let course = course.clone();
        self.write(move |txn| {
            let mut courses = txn.open_table(COURSES)?;
            let mut tutor_index = txn.open_table(TUTOR_COURSES)?;
            if let Some(old) = get_json_in_txn::<_, Course>(&courses, course.id.as_str())? {
                for tutor in &old.tutor_ids {
                    tutor_index.remove((tutor.as_str(), course.id.as_str()))?;
                }
            }
            for tutor in &course.tutor_ids {
                tutor_index.insert((tutor.as_str(), course.id.as_str()), ())?;
            }
            courses.insert(course.id.as_str(), encode(&course).as_slice())?;
            Ok(())
        })
        .await
    }

    async fn course(&self, id: &str) -> StoreResult<Option<Course>> {
        self.read(|txn| get_json(txn, COURSES, id))
    }

    async fn courses_by_tutor(&self, tutor_id: &str) -> StoreResult<Vec<Course>> {
        self.read(|txn| indexed(txn, TUTOR_COURSES, tutor_id, COURSES, |_tutor, course| course))
    }

    async fn put_enrollment(&self, enrollment: &Enrollment) -> StoreResult<Enrollment> {
        let e = enrollment.clone();
        self.write(move |txn| {
            let mut table = txn.open_table(ENROLLMENTS)?;
            let key = (e.user_id.as_str(), e.course_id.as_str());
            if let Some(existing) = get_json_in_txn(&table, key)? {
                return Ok(existing);
            }
            table.insert(key, encode(&e).as_slice())?;
            txn.open_table(COURSE_STUDENTS)?.insert((e.course_id.as_str(), e.user_id.as_str()), ())?;
            Ok(e)
        })
        .await
    }

    async fn delete_enrollment(&self, user_id: &str, course_id: &str) -> StoreResult<bool> {
        let (user, course) = (user_id.to_owned(), course_id.to_owned());
        self.write(move |txn| {
            let existed = txn.open_table(ENROLLMENTS)?.remove((user.as_str(), course.as_str()))?.is_some();
            txn.open_table(COURSE_STUDENTS)?.remove((course.as_str(), user.as_str()))?;
            Ok(existed)
        })
        .await
    }

    async fn enrollment(&self, user_id: &str, course_id: &str) -> StoreResult<Option<Enrollment>> {
        self.read(|txn| get_json(txn, ENROLLMENTS, (user_id, course_id)))
    }

    async fn enrollments_by_user(&self, user_id: &str) -> StoreResult<Vec<Enrollment>> {
        self.read(|txn| decode_values(txn.open_table(ENROLLMENTS)?.range(prefix(user_id))?))
    }

    async fn enrollments_by_course(&self, course_id: &str) -> StoreResult<Vec<Enrollment>> {
        self.read(|txn| indexed(txn, COURSE_STUDENTS, course_id, ENROLLMENTS, |course, user| (user, course)))
    }

    async fn put_block(&self, blocker: &str, blocked: &str, at: Timestamp) -> StoreResult<(Block, bool)> {
        let (blocker, blocked) = (blocker.to_owned(), blocked.to_owned());
        self.write(move |txn| {
            let mut table = txn.open_table(BLOCKS)?;
            let key = (blocker.as_str(), blocked.as_str());
            if let Some(existing) = table.get(key)? {
                let block = Block { user_id: blocked.clone(), created_at: Timestamp(existing.value()) };
                return Ok((block, false));
            }
            table.insert(key, at.millis())?;
            Ok((Block { user_id: blocked.clone(), created_at: at }, true))
        })
        .await
    }

    async fn delete_block(&self, blocker: &str, blocked: &str) -> StoreResult<bool> {
        let (blocker, blocked) = (blocker.to_owned(), blocked.to_owned());
        self.write(move |txn| Ok(txn.open_table(BLOCKS)?.remove((blocker.as_str(), blocked.as_str()))?.is_some())).await
    }

    async fn blocks(&self, blocker: &str) -> StoreResult<Vec<Block>> {
        self.read(|txn| {
            let table = txn.open_table(BLOCKS)?;
            let blocks = table.range(prefix(blocker))?.map(|entry| {
                let (key, at) = entry?;
                Ok(Block { user_id: key.value().1.to_owned(), created_at: Timestamp(at.value()) })
            });
            blocks.collect()
        })
    }

    async fn is_blocked(&self, blocker: &str, blocked: &str) -> StoreResult<bool> {
        self.read(|txn| Ok(txn.open_table(BLOCKS)?.get((blocker, blocked))?.is_some()))
    }

    async fn create_chat(&self, chat: &Chat) -> StoreResult<ChatCreation> {
        let chat = chat.clone();
        let creation = self
            .write(move |txn| {
                let mut keys = txn.open_table(CHAT_KEYS)?;
                let mut chats = txn.open_table(CHATS)?;
                let key = (chat.student_id.as_str(), chat.tutor_id.as_str(), chat.course_id.as_str());
                let existing_id = keys.get(key)?.map(|id| id.value().to_owned());
                if let Some(id) = existing_id {
                    if let Some(existing) = get_json_in_txn(&chats, id.as_str())? {
                        return Ok(ChatCreation { chat: existing, created: false });
                    }
                }
                keys.insert(key, chat.id.as_str())?;
                chats.insert(chat.id.as_str(), encode(&chat).as_slice())?;
                let mut by_user = txn.open_table(USER_CHATS)?;
                for user in chat.participants() {
                    by_user.insert((user, chat.id.as_str()), ())?;
                }
                Ok(ChatCreation { chat, created: true })
            })
            .await?;
        if creation.created {
            return Ok(creation);
        }
        // An existing chat: with its last message, which its record does not keep.
        let chat = self.chat(&creation.chat.id).await?.unwrap_or(creation.chat);
        Ok(ChatCreation { chat, created: false })
    }

    async fn chat(&self, id: &str) -> StoreResult<Option<Chat>> {
        self.read(|txn| {
            let messages = txn.open_table(MESSAGES)?;
            get_json(txn, CHATS, id)?.map(|chat| with_last_message(&messages, chat)).transpose()
        })
    }

    async fn chats_by_user(&self, user_id: &str) -> StoreResult<Vec<Chat>> {
        self.read(|txn| {
            let messages = txn.open_table(MESSAGES)?;
            let chats: Vec<Chat> = indexed(txn, USER_CHATS, user_id, CHATS, |_user, chat| chat)?;
            chats.into_iter().map(|chat| with_last_message(&messages, chat)).collect()
        })
    }

    async fn advance_read_cursor(&self, chat_id: &str, user_id: &str, seq: u64) -> StoreResult<u64> {
        let (chat, user) = (chat_id.to_owned(), user_id.to_owned());
        self.write(move |txn| {
            let mut table = txn.open_table(READ_CURSORS)?;
            let key = (chat.as_str(), user.as_str());
            let current = table.get(key)?.map(|v| v.value()).unwrap_or(0);
            if seq > current {
                table.insert(key, seq)?;
                Ok(seq)
            } else {
                Ok(current)
            }
        })
        .await
    }

    async fn read_cursor(&self, chat_id: &str, user_id: &str) -> StoreResult<u64> {
        self.read(|txn| Ok(txn.open_table(READ_CURSORS)?.get((chat_id, user_id))?.map(|v| v.value()).unwrap_or(0)))
    }

    async fn persist_messages(&self, batch: &[Message]) -> StoreResult<()> {
        let batch = batch.to_vec();
        self.write(move |txn| {
            let mut messages = txn.open_table(MESSAGES)?;
            let mut cursors = txn.open_table(READ_CURSORS)?;
            // Sending implies having read: each sender's newest message in this batch, per chat,
            // moves its cursor once. A message stored before (a batch delivered again after a
            // crash) is the same record under the same key, so it is simply written again.
            let mut newest: Vec<(&str, &str, u64)> = Vec::new();
            for m in &batch {
                messages.insert((m.chat_id.as_str(), m.seq), message_record::encode(m).as_slice())?;
                match newest.iter_mut().find(|(c, s, _)| *c == m.chat_id && *s == m.sender_id) {
                    Some((_, _, seq)) => *seq = (*seq).max(m.seq),
                    None => newest.push((&m.chat_id, &m.sender_id, m.seq)),
                }
            }
            for (chat, sender, seq) in newest {
                let cursor = cursors.get((chat, sender))?.map(|v| v.value()).unwrap_or(0);
                if seq > cursor {
                    cursors.insert((chat, sender), seq)?;
                }
            }
            Ok(())
        })
        .await
    }

    async fn messages_before(&self, chat_id: &str, before: Option<u64>, limit: usize) -> StoreResult<Vec<Message>> {
        let before = before.unwrap_or(u64::MAX);
        self.read(|txn| {
            let table = txn.open_table(MESSAGES)?;
            let mut out: Vec<Message> =
                decode_messages(table.range((chat_id, 0u64)..(chat_id, before))?.rev().take(limit))?;
            out.reverse();
            Ok(out)
        })
    }

    async fn put_attachment(&self, attachment: &StoredAttachment, bytes: Vec<u8>) -> StoreResult<()> {
        // The file first (written, fsync'd, renamed into place), then the record that points at it.
        let path = self.files.join(&attachment.id);
        let partial = self.files.join(format!("{}.partial", attachment.id));
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            use std::io::Write;
            let mut file = std::fs::File::create(&partial)?;
            file.write_all(&bytes)?;
            file.sync_all()?;
            std::fs::rename(&partial, &path)
        })
        .await
        .map_err(|e| StoreError::Unavailable(e.to_string()))?
        .map_err(|e| StoreError::Unavailable(format!("writing an attachment: {e}")))?;
        let record = attachment.clone();
        self.write(move |txn| put_json(txn, ATTACHMENTS, record.id.as_str(), &record)).await
    }

    async fn attachment(&self, id: &str) -> StoreResult<Option<StoredAttachment>> {
        self.read(|txn| get_json(txn, ATTACHMENTS, id))
    }

    async fn attachment_bytes(&self, id: &str) -> StoreResult<Option<Vec<u8>>> {
        if self.attachment(id).await?.is_none() {
            return Ok(None);
        }
        match tokio::fs::read(self.files.join(id)).await {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::Unavailable(e.to_string())),
        }
    }

    async fn messages_after(&self, chat_id: &str, after: u64, limit: usize) -> StoreResult<Vec<Message>> {
        self.read(|txn| {
            let table = txn.open_table(MESSAGES)?;
            if after == u64::MAX {
                return Ok(Vec::new());
            }
            decode_messages(table.range((chat_id, after + 1)..=(chat_id, u64::MAX))?.take(limit))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn embedded_store_passes_the_store_contract() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path()).unwrap();
        super::super::contract_tests::run_all(&store).await;
    }

    #[tokio::test]
    async fn data_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = EmbeddedStore::open(dir.path()).unwrap();
            store
                .put_user(&User { id: "u1".into(), name: "Ann".into(), role: crate::model::Role::User })
                .await
                .unwrap();
        }
        // The writer thread holds the database until its queue closes; give it a moment.
        let store = loop {
            match EmbeddedStore::open(dir.path()) {
                Ok(s) => break s,
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
            }
        };
        assert_eq!(store.user("u1").await.unwrap().unwrap().name, "Ann");
    }
}

//! The dedupe index of released messages, in `queue.redb`: each (chat, sender, clientMsgId)
//! hashed to 128 bits (SHA-256, truncated) → the message's seq and time. 32 bytes a message
//! instead of its JSON and three string keys; a resend of a released message finds its seq here
//! and the log reads the first message back from the store (rare: a resend after the store has
//! it).
//!
//! One table and no age index: pruning walks the table in key order, a slice per call from where
//! the last one stopped, and deletes what is older than the window. That keeps a release to one
//! insert a message (an age index doubled the writes and the file), at the price of a full walk
//! per `table size / PRUNE_SCAN` calls (a minute apart: 100,000 entries a minute, 144 M a day).

use std::ops::Bound;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, TableError, WriteTransaction};
use sha2::{Digest, Sha256};

use crate::engine::{EngineError, EngineResult};
use crate::model::Message;

/// key hash → (seq, createdAt millis).
const DEDUPE: TableDefinition<(u64, u64), (u64, i64)> = TableDefinition::new("dedupe_seq_at");
/// The index of the version before (key hash → seq, and an age index), moved into this one.
const PREVIOUS: TableDefinition<(u64, u64), u64> = TableDefinition::new("dedupe");
const PREVIOUS_AGE: TableDefinition<(i64, u64, u64), ()> = TableDefinition::new("dedupe_age");
/// The index of earlier versions ((chat, sender, clientMsgId) → first message JSON), moved
/// into this one at start.
const OLD_INDEX: TableDefinition<(&str, &str, &str), &[u8]> = TableDefinition::new("idempotency");
const OLD_AGE: TableDefinition<(i64, &str, &str, &str), ()> = TableDefinition::new("idempotency_age");

/// Entries one prune looks at.
pub const PRUNE_SCAN: usize = 100_000;

pub type KeyHash = (u64, u64);

pub fn key_hash(chat_id: &str, sender_id: &str, client_msg_id: &str) -> KeyHash {
    let mut h = Sha256::new();
    for part in [chat_id, sender_id, client_msg_id] {
        h.update((part.len() as u32).to_le_bytes());
        h.update(part.as_bytes());
    }
    let d = h.finalize();
    let half =
        |i: usize| u64::from_le_bytes([d[i], d[i + 1], d[i + 2], d[i + 3], d[i + 4], d[i + 5], d[i + 6], d[i + 7]]);
    (half(0), half(8))
}

/// Creates the table, and moves an earlier version's index into it (once).
pub fn open(index: &Database) -> EngineResult<()> {
    let txn = index.begin_write().map_err(EngineError::unavailable)?;
    txn.open_table(DEDUPE).map_err(EngineError::unavailable)?;
    let moved = move_previous(&txn).map_err(EngineError::unavailable)?
        + move_old_index(&txn).map_err(EngineError::unavailable)?;
    txn.commit().map_err(EngineError::unavailable)?;
    if moved > 0 {
        tracing::info!(entries = moved, "moved the dedupe index of an earlier version");
    }
    Ok(())
}

fn move_previous(txn: &WriteTransaction) -> Result<usize, redb::Error> {
    let mut moved = 0;
    {
        let age = match txn.open_table(PREVIOUS_AGE) {
            Ok(table) => table,
            Err(TableError::TableDoesNotExist(_)) => return Ok(0),
            Err(e) => return Err(e.into()),
        };
        let keys = txn.open_table(PREVIOUS)?;
        let mut into = txn.open_table(DEDUPE)?;
        for entry in age.iter()? {
            let (at, k0, k1) = entry?.0.value();
            if let Some(seq) = keys.get((k0, k1))? {
                into.insert((k0, k1), (seq.value(), at))?;
                moved += 1;
            }
        }
    }
    txn.delete_table(PREVIOUS)?;
    txn.delete_table(PREVIOUS_AGE)?;
    Ok(moved)
}

fn move_old_index(txn: &WriteTransaction) -> Result<usize, redb::Error> {
    let mut moved = Vec::new();
    {
        let old = match txn.open_table(OLD_INDEX) {
            Ok(table) => table,
            Err(TableError::TableDoesNotExist(_)) => return Ok(0),
            Err(e) => return Err(e.into()),
        };
        for entry in old.iter()? {
            let (_, json) = entry?;
            if let Ok(m) = serde_json::from_slice::<Message>(json.value()) {
                moved.push(m);
            }
        }
    }
    record(txn, &moved.iter().map(Entry::of).collect::<Vec<_>>())?;
    txn.delete_table(OLD_INDEX)?;
    txn.delete_table(OLD_AGE)?;
    Ok(moved.len())
}

/// The seq of the released message with this key, if any.
pub fn released_seq(index: &Database, key: KeyHash) -> EngineResult<Option<u64>> {
    let read = index.begin_read().map_err(EngineError::unavailable)?;
    let table = read.open_table(DEDUPE).map_err(EngineError::unavailable)?;
    Ok(table.get(key).map_err(EngineError::unavailable)?.map(|v| v.value().0))
}

/// One released message, as the index keeps it.
#[derive(Debug, Clone, Copy)]
pub struct Entry {
    pub key: KeyHash,
    pub seq: u64,
    /// createdAt, millis.
    pub at: i64,
}

impl Entry {
    pub fn of(m: &Message) -> Entry {
        Entry { key: key_hash(&m.chat_id, &m.sender_id, &m.client_msg_id), seq: m.seq, at: m.created_at.millis() }
    }
}

/// Indexes released messages.
pub fn record(txn: &WriteTransaction, released: &[Entry]) -> Result<(), redb::Error> {
    let mut table = txn.open_table(DEDUPE)?;
    for e in released {
        table.insert(e.key, (e.seq, e.at))?;
    }
    Ok(())
}

/// Where the next prune goes on: after this key (`None`: from the beginning).
pub type PruneCursor = Option<KeyHash>;

/// Looks at up to [`PRUNE_SCAN`] entries after `after` and deletes those created before
/// `cutoff` (millis); returns how many went and where to go on (the beginning again once a walk
/// reached the end).
pub fn prune(txn: &WriteTransaction, after: PruneCursor, cutoff: i64) -> Result<(usize, PruneCursor), redb::Error> {
    let mut table = txn.open_table(DEDUPE)?;
    let start = after.map_or(Bound::Unbounded, Bound::Excluded);
    let mut expired = Vec::new();
    let mut last = None;
    let mut seen = 0;
    for entry in table.range::<KeyHash>((start, Bound::Unbounded))?.take(PRUNE_SCAN) {
        let (key, value) = entry?;
        let key = key.value();
        if value.value().1 < cutoff {
            expired.push(key);
        }
        last = Some(key);
        seen += 1;
    }
    for key in &expired {
        table.remove(*key)?;
    }
    Ok((expired.len(), if seen == PRUNE_SCAN { last } else { None }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_differ_by_every_part_and_by_where_the_parts_split() {
        let a = key_hash("c1", "s1", "m1");
        assert_eq!(a, key_hash("c1", "s1", "m1"));
        assert_ne!(a, key_hash("c2", "s1", "m1"));
        assert_ne!(a, key_hash("c1", "s2", "m1"));
        assert_ne!(a, key_hash("c1", "s1", "m2"));
        assert_ne!(key_hash("ab", "c", "d"), key_hash("a", "bc", "d"), "lengths are part of the hash");
    }

    fn message(client_msg_id: &str, created_at: i64) -> Message {
        Message {
            id: "0".repeat(24),
            chat_id: "c".into(),
            seq: created_at as u64,
            sender_id: "s".into(),
            sender_type: crate::model::SenderType::User,
            kind: crate::model::MessageType::Text,
            content: String::new(),
            attachment: None,
            client_msg_id: client_msg_id.into(),
            created_at: crate::model::Timestamp(created_at),
        }
    }

    #[test]
    fn pruning_walks_the_index_and_forgets_only_what_is_older_than_the_window() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::create(dir.path().join("q.redb")).unwrap();
        open(&db).unwrap();
        let txn = db.begin_write().unwrap();
        let released: Vec<Message> = (0..10).map(|i| message(&format!("m{i}"), 1000 + i)).collect();
        record(&txn, &released.iter().map(Entry::of).collect::<Vec<_>>()).unwrap();
        txn.commit().unwrap();
        let txn = db.begin_write().unwrap();
        let (gone, next) = prune(&txn, None, 1005).unwrap();
        txn.commit().unwrap();
        assert_eq!((gone, next), (5, None), "a walk shorter than a slice starts again from the beginning");
        for i in 0..10 {
            let seq = released_seq(&db, key_hash("c", "s", &format!("m{i}"))).unwrap();
            assert_eq!(seq, (i >= 5).then_some(1000 + i as u64), "m{i}");
        }
    }

    #[test]
    fn the_previous_index_moves_into_this_one() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::create(dir.path().join("q.redb")).unwrap();
        let key = key_hash("c", "s", "m1");
        let txn = db.begin_write().unwrap();
        txn.open_table(PREVIOUS).unwrap().insert(key, 7).unwrap();
        txn.open_table(PREVIOUS_AGE).unwrap().insert((1234, key.0, key.1), ()).unwrap();
        txn.commit().unwrap();
        open(&db).unwrap();
        assert_eq!(released_seq(&db, key).unwrap(), Some(7));
        let read = db.begin_read().unwrap();
        assert!(matches!(read.open_table(PREVIOUS), Err(TableError::TableDoesNotExist(_))));
    }
}

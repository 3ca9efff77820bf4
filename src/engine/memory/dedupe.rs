//! The dedupe index of released messages, in `queue.redb`: each (chat, sender, clientMsgId)
//! hashed to 128 bits (SHA-256, truncated) → the message's seq, and an age index to prune it
//! after the idempotency window. 48 bytes a message instead of its JSON and three string keys;
//! a resend of a released message finds its seq here and the log reads the first message back
//! from the store (rare: a resend after the store has it).

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, TableError, WriteTransaction};
use sha2::{Digest, Sha256};

use crate::engine::{EngineError, EngineResult};
use crate::model::Message;

/// key hash → seq.
const DEDUPE: TableDefinition<(u64, u64), u64> = TableDefinition::new("dedupe");
/// (createdAt millis, key hash): the same keys in age order, for pruning.
const DEDUPE_AGE: TableDefinition<(i64, u64, u64), ()> = TableDefinition::new("dedupe_age");
/// The index of earlier versions ((chat, sender, clientMsgId) → first message JSON), moved
/// into this one at start.
const OLD_INDEX: TableDefinition<(&str, &str, &str), &[u8]> = TableDefinition::new("idempotency");
const OLD_AGE: TableDefinition<(i64, &str, &str, &str), ()> = TableDefinition::new("idempotency_age");

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

/// Creates the tables, and moves an earlier version's index into them (once).
pub fn open(index: &Database) -> EngineResult<()> {
    let txn = index.begin_write().map_err(EngineError::unavailable)?;
    txn.open_table(DEDUPE).map_err(EngineError::unavailable)?;
    txn.open_table(DEDUPE_AGE).map_err(EngineError::unavailable)?;
    let moved = move_old_index(&txn).map_err(EngineError::unavailable)?;
    txn.commit().map_err(EngineError::unavailable)?;
    if moved > 0 {
        tracing::info!(entries = moved, "moved the dedupe index of an earlier version");
    }
    Ok(())
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
    for m in &moved {
        record(txn, m)?;
    }
    txn.delete_table(OLD_INDEX)?;
    txn.delete_table(OLD_AGE)?;
    Ok(moved.len())
}

/// The seq of the released message with this key, if any.
pub fn released_seq(index: &Database, key: KeyHash) -> EngineResult<Option<u64>> {
    let read = index.begin_read().map_err(EngineError::unavailable)?;
    let table = read.open_table(DEDUPE).map_err(EngineError::unavailable)?;
    Ok(table.get(key).map_err(EngineError::unavailable)?.map(|v| v.value()))
}

/// Indexes a released message.
pub fn record(txn: &WriteTransaction, m: &Message) -> Result<(), redb::Error> {
    let key = key_hash(&m.chat_id, &m.sender_id, &m.client_msg_id);
    txn.open_table(DEDUPE)?.insert(key, m.seq)?;
    txn.open_table(DEDUPE_AGE)?.insert((m.created_at.millis(), key.0, key.1), ())?;
    Ok(())
}

/// Forgets up to 10,000 entries created before `cutoff` (millis); returns how many.
pub fn prune(txn: &WriteTransaction, cutoff: i64) -> Result<usize, redb::Error> {
    let mut age = txn.open_table(DEDUPE_AGE)?;
    let mut keys = txn.open_table(DEDUPE)?;
    let mut expired = Vec::new();
    for entry in age.range((i64::MIN, 0, 0)..(cutoff, 0, 0))?.take(10_000) {
        expired.push(entry?.0.value());
    }
    for (at, k0, k1) in &expired {
        keys.remove((*k0, *k1))?;
        age.remove((*at, *k0, *k1))?;
    }
    Ok(expired.len())
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
}

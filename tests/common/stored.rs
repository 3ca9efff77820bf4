//! What MongoDB holds, read with the driver: for tests that count stored messages.

use std::time::{Duration, Instant};

use bson::{doc, Document};
use futures_util::TryStreamExt;

/// `CHAT_TEST_MONGODB_URL`; without it the test is skipped, except in CI.
pub fn mongodb_base() -> Option<String> {
    match std::env::var("CHAT_TEST_MONGODB_URL") {
        Ok(url) => Some(url),
        Err(_) => {
            assert!(std::env::var("CI").is_err(), "CI must run the MongoDB suites: set CHAT_TEST_MONGODB_URL");
            eprintln!("skipped: CHAT_TEST_MONGODB_URL is not set (scripts/mongodb-for-tests run -- cargo test)");
            None
        }
    }
}

pub async fn messages(url: &str, db: &str) -> mongodb::Collection<Document> {
    let client = mongodb::Client::with_uri_str(url).await.unwrap();
    client.database(db).collection("messages")
}

/// (chat, seq) of every stored message, sorted.
pub async fn stored(coll: &mongodb::Collection<Document>) -> Vec<(String, i64)> {
    let cursor = coll.find(doc! {}).await.unwrap();
    let docs: Vec<Document> = cursor.try_collect().await.unwrap();
    let mut out: Vec<(String, i64)> =
        docs.iter().map(|d| (d.get_object_id("chat").unwrap().to_hex(), d.get_i64("seq").unwrap())).collect();
    out.sort();
    out
}

/// Waits until MongoDB holds `n` messages (the writer drains behind the acks).
pub async fn wait_for_count(coll: &mongodb::Collection<Document>, n: u64, within: Duration) -> u64 {
    let deadline = Instant::now() + within;
    loop {
        let count = coll.count_documents(doc! {}).await.unwrap_or(0);
        if count >= n || Instant::now() > deadline {
            return count;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub fn assert_contiguous(stored: &[(String, i64)], chats: &[(&str, i64)]) {
    for (chat, n) in chats {
        let seqs: Vec<i64> = stored.iter().filter(|(c, _)| c == chat).map(|(_, s)| *s).collect();
        assert_eq!(seqs, (1..=*n).collect::<Vec<_>>(), "chat {chat}: contiguous seqs, each once");
    }
}

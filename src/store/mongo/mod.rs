//! The MongoDB store: the shared history of record when several nodes serve one deployment.
//!
//! Documents follow the platform's models (see docs/STORE.md): `users`, `courses`,
//! `enrollments`, `blocks`, `chats` (participants with userType and joinedAt, course,
//! lastMessage, createdAt, updatedAt), `messages` (chat, seq, sender, senderType, content,
//! messageType, attachment, clientMsgId, createdAt) and `read_cursors` (one per participant and
//! chat, instead of a per-message `readBy` array that would cost a write per message per reader).
//!
//! Every query is served by an index created at start (idempotently). Writes are journaled
//! (`j: true`, and `w: majority` on a replica set). Every operation has a short deadline so a
//! store outage answers `unavailable` in seconds, never hangs a request.
//!
//! This file is the store's frame: connecting, the deadline, mapping driver errors to
//! [`StoreError`], and the indexes. `documents.rs` holds what is stored and its mapping to the
//! model; `queries.rs` holds [`Store`](super::Store) for [`MongoStore`].

mod documents;
mod queries;

use std::time::Duration;

use bson::{doc, Document};
use mongodb::error::{Error as MongoError, ErrorKind, WriteFailure};
use mongodb::options::{Acknowledgment, ClientOptions, IndexOptions, WriteConcern};
use mongodb::{Client, Collection, Database, IndexModel};

use self::documents::{ChatDoc, CourseDoc, EnrollmentDoc, MessageDoc, UserDoc};
use super::{StoreError, StoreResult};

/// The longest any single store operation may take before the caller answers `unavailable`.
const OPERATION_DEADLINE: Duration = Duration::from_secs(4);
/// MongoDB's duplicate-key error.
const DUPLICATE_KEY: i32 = 11000;

pub struct MongoStore {
    /// The database named by the URL's path: every collection, and the GridFS bucket, live in it.
    db: Database,
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

/// Runs one store operation under the deadline.
async fn within<T>(op: impl std::future::IntoFuture<Output = Result<T, MongoError>>) -> StoreResult<T> {
    match tokio::time::timeout(OPERATION_DEADLINE, op.into_future()).await {
        Ok(result) => result.map_err(unavailable),
        Err(_) => Err(StoreError::Unavailable("MongoDB did not answer in time".into())),
    }
}

fn is_duplicate_key(e: &MongoError) -> bool {
    match e.kind.as_ref() {
        ErrorKind::Write(WriteFailure::WriteError(w)) => w.code == DUPLICATE_KEY,
        ErrorKind::InsertMany(m) => {
            m.write_concern_error.is_none()
                && m.write_errors.as_ref().is_some_and(|errs| errs.iter().all(|w| w.code == DUPLICATE_KEY))
        }
        _ => false,
    }
}

impl MongoStore {
    /// Connects to `url` (database from its path, default `coursechat`) with short timeouts and
    /// journaled writes, and creates the indexes. Fails when the server cannot be reached.
    pub async fn connect(url: &str) -> StoreResult<Self> {
        let mut options = within(ClientOptions::parse(url)).await?;
        options.server_selection_timeout.get_or_insert(Duration::from_secs(2));
        options.connect_timeout.get_or_insert(Duration::from_secs(2));
        options.app_name.get_or_insert_with(|| "coursechat".to_owned());
        let db_name = options.default_database.clone().unwrap_or_else(|| "coursechat".to_owned());
        let explicit_w = options.write_concern.as_ref().and_then(|w| w.w.clone());
        let client = Client::with_options(options.clone()).map_err(unavailable)?;
        // Journaled always; majority when the deployment is a replica set (unless the URL says).
        let hello = within(client.database("admin").run_command(doc! { "hello": 1 })).await?;
        let w = explicit_w.or_else(|| hello.get_str("setName").ok().map(|_| Acknowledgment::Majority));
        let mut concern = WriteConcern::builder().journal(true).build();
        concern.w = w;
        options.write_concern = Some(concern);
        let client = Client::with_options(options).map_err(unavailable)?;
        let store = MongoStore { db: client.database(&db_name) };
        store.create_indexes().await?;
        Ok(store)
    }

    /// The database, for tests and tools.
    pub fn database(&self) -> &Database {
        &self.db
    }

    fn users(&self) -> Collection<UserDoc> {
        self.db.collection("users")
    }
    fn courses(&self) -> Collection<CourseDoc> {
        self.db.collection("courses")
    }
    fn enrollments(&self) -> Collection<EnrollmentDoc> {
        self.db.collection("enrollments")
    }
    fn blocks(&self) -> Collection<Document> {
        self.db.collection("blocks")
    }
    fn chats(&self) -> Collection<ChatDoc> {
        self.db.collection("chats")
    }
    fn messages(&self) -> Collection<MessageDoc> {
        self.db.collection("messages")
    }
    fn cursors(&self) -> Collection<Document> {
        self.db.collection("read_cursors")
    }

    async fn create_indexes(&self) -> StoreResult<()> {
        fn index(keys: Document, unique: bool, name: &str) -> IndexModel {
            let options = IndexOptions::builder().unique(unique).name(name.to_owned()).build();
            IndexModel::builder().keys(keys).options(options).build()
        }
        // `users` has no index but `_id`: create it here, so that several nodes' first writes do not
        // race to create it implicitly.
        if let Err(e) = within(self.db.create_collection("users")).await {
            if !e.to_string().contains("already exists") {
                return Err(e);
            }
        }
        within(self.messages().create_index(index(doc! {"chat": 1, "seq": 1}, true, "chat_seq"))).await?;
        within(self.messages().create_index(index(
            doc! {"chat": 1, "sender": 1, "clientMsgId": 1},
            true,
            "chat_sender_clientMsgId",
        )))
        .await?;
        within(self.chats().create_index(index(
            doc! {"participants.user": 1, "updatedAt": -1},
            false,
            "participant_recency",
        )))
        .await?;
        within(self.chats().create_index(index(
            doc! {"student": 1, "tutor": 1, "course": 1},
            true,
            "one_chat_per_triple",
        )))
        .await?;
        within(self.enrollments().create_index(index(doc! {"user": 1, "course": 1}, true, "user_course"))).await?;
        within(self.enrollments().create_index(index(doc! {"course": 1, "user": 1}, false, "course_user"))).await?;
        within(self.courses().create_index(index(doc! {"tutorIds": 1}, false, "tutors"))).await?;
        within(self.blocks().create_index(index(doc! {"blocker": 1, "blocked": 1}, true, "blocker_blocked"))).await?;
        within(self.cursors().create_index(index(doc! {"chat": 1, "user": 1}, true, "chat_user"))).await?;
        let attachments = self.db.collection::<Document>("attachments");
        within(attachments.create_index(index(doc! {"id": 1}, true, "attachment_id"))).await?;
        Ok(())
    }
}

/// `base` with its database path replaced by `db` (tests give each run its own database).
pub fn with_database(base: &str, db: &str) -> String {
    let (head, query) = base.split_once('?').map_or((base, None), |(h, q)| (h, Some(q)));
    let scheme_end = head.find("://").map_or(0, |i| i + 3);
    let host_end = head[scheme_end..].find('/').map_or(head.len(), |i| scheme_end + i);
    let mut url = format!("{}/{db}", &head[..host_end]);
    if let Some(q) = query {
        url.push('?');
        url.push_str(q);
    }
    url
}

#[cfg(test)]
pub mod tests {
    use bson::oid::ObjectId;
    use bson::Bson;

    use super::*;

    /// A store on a fresh database of the test MongoDB (`CHAT_TEST_MONGODB_URL`, as
    /// `scripts/mongodb-for-tests` provides it). Without one the MongoDB suites are skipped
    /// locally and fail in CI.
    pub async fn test_store() -> Option<MongoStore> {
        let Ok(base) = std::env::var("CHAT_TEST_MONGODB_URL") else {
            assert!(std::env::var("CI").is_err(), "CI must run the MongoDB suites: set CHAT_TEST_MONGODB_URL");
            eprintln!("skipped: CHAT_TEST_MONGODB_URL is not set (scripts/mongodb-for-tests run -- cargo test)");
            return None;
        };
        let db = format!("coursechat_test_{}", ObjectId::new().to_hex());
        let url = with_database(&base, &db);
        Some(MongoStore::connect(&url).await.expect("connect to the test MongoDB"))
    }

    #[test]
    fn database_names_replace_the_url_path() {
        assert_eq!(with_database("mongodb://h:1/", "x"), "mongodb://h:1/x");
        assert_eq!(with_database("mongodb://h:1", "x"), "mongodb://h:1/x");
        assert_eq!(with_database("mongodb://u:p@h:1/old?w=1", "x"), "mongodb://u:p@h:1/x?w=1");
    }

    #[tokio::test]
    async fn mongo_store_passes_the_store_contract() {
        let Some(store) = test_store().await else { return };
        super::super::contract_tests::run_all(&store).await;
        store.database().drop().await.unwrap();
    }

    /// The plan's winning stage, found anywhere in an `explain` answer.
    fn stages(plan: &Bson, out: &mut Vec<String>) {
        match plan {
            Bson::Document(d) => {
                if let Ok(stage) = d.get_str("stage") {
                    out.push(stage.to_owned());
                }
                for (k, v) in d {
                    if k != "rejectedPlans" {
                        stages(v, out);
                    }
                }
            }
            Bson::Array(a) => a.iter().for_each(|v| stages(v, out)),
            _ => {}
        }
    }

    #[tokio::test]
    async fn hot_queries_use_indexes_not_collection_scans() {
        let Some(store) = test_store().await else { return };
        // Some data, so the planner has something to choose over.
        let chat = ObjectId::new();
        let docs: Vec<Document> = (1..=50)
            .map(|seq| doc! {"chat": chat, "seq": seq as i64, "sender": "s", "clientMsgId": format!("c{seq}")})
            .collect();
        store.db.collection::<Document>("messages").insert_many(docs).await.unwrap();
        let explain = |collection: &str, filter: Document, sort: Document| {
            doc! {"explain": {"find": collection, "filter": filter, "sort": sort, "limit": 51}, "verbosity": "queryPlanner"}
        };
        let queries = [
            ("chat list", explain("chats", doc! {"participants.user": "s"}, doc! {"updatedAt": -1})),
            ("history page", explain("messages", doc! {"chat": chat, "seq": {"$lt": 40i64}}, doc! {"seq": -1})),
            ("missed", explain("messages", doc! {"chat": chat, "seq": {"$gt": 10i64}}, doc! {"seq": 1})),
            ("enrollment lookup", explain("enrollments", doc! {"user": "s", "course": "c"}, doc! {})),
            ("students of a course", explain("enrollments", doc! {"course": "c"}, doc! {"user": 1})),
            ("courses of a tutor", explain("courses", doc! {"tutorIds": "t"}, doc! {"_id": 1})),
            ("block lookup", explain("blocks", doc! {"blocker": "a", "blocked": "b"}, doc! {})),
            ("read cursor", explain("read_cursors", doc! {"chat": chat, "user": "s"}, doc! {})),
        ];
        for (name, command) in queries {
            let answer = store.db.run_command(command).await.unwrap();
            let mut found = Vec::new();
            stages(
                &Bson::Document(
                    answer.get_document("queryPlanner").unwrap().get_document("winningPlan").unwrap().clone(),
                ),
                &mut found,
            );
            assert!(found.iter().any(|s| s == "IXSCAN" || s == "IDHACK" || s == "EXPRESS_IXSCAN"), "{name}: {found:?}");
            assert!(!found.iter().any(|s| s == "COLLSCAN"), "{name} scans the collection: {found:?}");
        }
        store.database().drop().await.unwrap();
    }
}

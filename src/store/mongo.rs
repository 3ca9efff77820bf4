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

use std::time::Duration;

use async_trait::async_trait;
use bson::oid::ObjectId;
use bson::{doc, Bson, DateTime, Document};
use futures_util::TryStreamExt;
use mongodb::error::{Error as MongoError, ErrorKind, WriteFailure};
use mongodb::options::{Acknowledgment, ClientOptions, IndexOptions, ReturnDocument, WriteConcern};
use mongodb::{Client, Collection, Database, IndexModel};
use serde::{Deserialize, Serialize};

use super::{ChatCreation, Store, StoreError, StoreResult};
use crate::model::time::Timestamp;
use crate::model::{
    Attachment, Block, Chat, Course, Enrollment, Message, MessageType, Role, SenderType, StoredAttachment, User,
};

/// The longest any single store operation may take before the caller answers `unavailable`.
const OPERATION_DEADLINE: Duration = Duration::from_secs(4);
/// MongoDB's duplicate-key error.
const DUPLICATE_KEY: i32 = 11000;

pub struct MongoStore {
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

fn oid(id: &str) -> StoreResult<ObjectId> {
    ObjectId::parse_str(id).map_err(|e| StoreError::Corrupt(format!("{id:?} is not an ObjectId: {e}")))
}

fn date(t: Timestamp) -> DateTime {
    DateTime::from_millis(t.millis())
}

fn stamp(d: DateTime) -> Timestamp {
    Timestamp(d.timestamp_millis())
}

#[derive(Debug, Serialize, Deserialize)]
struct UserDoc {
    #[serde(rename = "_id")]
    id: String,
    name: String,
    role: Role,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CourseDoc {
    #[serde(rename = "_id")]
    id: String,
    title: String,
    tutor_ids: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct EnrollmentDoc {
    user: String,
    course: String,
    purchased_at: DateTime,
}

impl From<EnrollmentDoc> for Enrollment {
    fn from(d: EnrollmentDoc) -> Self {
        Enrollment { user_id: d.user, course_id: d.course, purchased_at: stamp(d.purchased_at) }
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct MessageDoc {
    #[serde(rename = "_id")]
    id: ObjectId,
    chat: ObjectId,
    seq: i64,
    sender: String,
    sender_type: SenderType,
    content: String,
    message_type: MessageType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    attachment: Option<Attachment>,
    client_msg_id: String,
    created_at: DateTime,
}

impl MessageDoc {
    fn from_message(m: &Message) -> StoreResult<Self> {
        Ok(MessageDoc {
            id: oid(&m.id)?,
            chat: oid(&m.chat_id)?,
            seq: m.seq as i64,
            sender: m.sender_id.clone(),
            sender_type: m.sender_type,
            content: m.content.clone(),
            message_type: m.kind,
            attachment: m.attachment.clone(),
            client_msg_id: m.client_msg_id.clone(),
            created_at: date(m.created_at),
        })
    }

    fn into_message(self) -> Message {
        Message {
            id: self.id.to_hex(),
            chat_id: self.chat.to_hex(),
            seq: self.seq.max(0) as u64,
            sender_id: self.sender,
            sender_type: self.sender_type,
            kind: self.message_type,
            content: self.content,
            attachment: self.attachment,
            client_msg_id: self.client_msg_id,
            created_at: stamp(self.created_at),
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ParticipantDoc {
    user: String,
    user_type: SenderType,
    joined_at: DateTime,
}

/// The seed's `lastMessage {content, sender, timestamp}`, with what a chat list needs besides.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LastMessageDoc {
    content: String,
    sender: String,
    timestamp: DateTime,
    id: ObjectId,
    seq: i64,
    sender_type: SenderType,
    message_type: MessageType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    attachment: Option<Attachment>,
    client_msg_id: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ChatDoc {
    #[serde(rename = "_id")]
    id: ObjectId,
    participants: Vec<ParticipantDoc>,
    course: String,
    /// Copies of the participants by role: the one-chat-per-(student, tutor, course) index.
    student: String,
    tutor: String,
    last_message: Option<LastMessageDoc>,
    last_seq: i64,
    created_at: DateTime,
    updated_at: DateTime,
}

impl ChatDoc {
    fn from_chat(c: &Chat) -> StoreResult<Self> {
        let joined = date(c.created_at);
        Ok(ChatDoc {
            id: oid(&c.id)?,
            participants: vec![
                ParticipantDoc { user: c.student_id.clone(), user_type: SenderType::User, joined_at: joined },
                ParticipantDoc { user: c.tutor_id.clone(), user_type: SenderType::Tutor, joined_at: joined },
            ],
            course: c.course_id.clone(),
            student: c.student_id.clone(),
            tutor: c.tutor_id.clone(),
            last_message: c.last_message.as_ref().map(last_message_doc).transpose()?,
            last_seq: c.last_seq as i64,
            created_at: date(c.created_at),
            updated_at: date(c.updated_at),
        })
    }

    fn into_chat(self) -> Chat {
        let chat_id = self.id.to_hex();
        Chat {
            last_message: self.last_message.map(|l| Message {
                id: l.id.to_hex(),
                chat_id: chat_id.clone(),
                seq: l.seq.max(0) as u64,
                sender_id: l.sender,
                sender_type: l.sender_type,
                kind: l.message_type,
                content: l.content,
                attachment: l.attachment,
                client_msg_id: l.client_msg_id,
                created_at: stamp(l.timestamp),
            }),
            id: chat_id,
            course_id: self.course,
            student_id: self.student,
            tutor_id: self.tutor,
            created_at: stamp(self.created_at),
            updated_at: stamp(self.updated_at),
            last_seq: self.last_seq.max(0) as u64,
        }
    }
}

fn last_message_doc(m: &Message) -> StoreResult<LastMessageDoc> {
    Ok(LastMessageDoc {
        content: m.content.clone(),
        sender: m.sender_id.clone(),
        timestamp: date(m.created_at),
        id: oid(&m.id)?,
        seq: m.seq as i64,
        sender_type: m.sender_type,
        message_type: m.kind,
        attachment: m.attachment.clone(),
        client_msg_id: m.client_msg_id.clone(),
    })
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

#[async_trait]
impl Store for MongoStore {
    fn kind(&self) -> &'static str {
        "mongodb"
    }

    async fn ping(&self) -> StoreResult<()> {
        within(self.db.run_command(doc! {"ping": 1})).await.map(|_| ())
    }

    async fn put_user(&self, user: &User) -> StoreResult<()> {
        let d = UserDoc { id: user.id.clone(), name: user.name.clone(), role: user.role };
        within(self.users().replace_one(doc! {"_id": &user.id}, d).upsert(true)).await.map(|_| ())
    }

    async fn user(&self, id: &str) -> StoreResult<Option<User>> {
        let d = within(self.users().find_one(doc! {"_id": id})).await?;
        Ok(d.map(|d| User { id: d.id, name: d.name, role: d.role }))
    }

    async fn put_course(&self, course: &Course) -> StoreResult<()> {
        let d = CourseDoc { id: course.id.clone(), title: course.title.clone(), tutor_ids: course.tutor_ids.clone() };
        within(self.courses().replace_one(doc! {"_id": &course.id}, d).upsert(true)).await.map(|_| ())
    }

    async fn course(&self, id: &str) -> StoreResult<Option<Course>> {
        let d = within(self.courses().find_one(doc! {"_id": id})).await?;
        Ok(d.map(|d| Course { id: d.id, title: d.title, tutor_ids: d.tutor_ids }))
    }

    async fn courses_by_tutor(&self, tutor_id: &str) -> StoreResult<Vec<Course>> {
        let cursor = within(self.courses().find(doc! {"tutorIds": tutor_id}).sort(doc! {"_id": 1})).await?;
        let docs: Vec<CourseDoc> = within(cursor.try_collect()).await?;
        Ok(docs.into_iter().map(|d| Course { id: d.id, title: d.title, tutor_ids: d.tutor_ids }).collect())
    }

    async fn put_enrollment(&self, enrollment: &Enrollment) -> StoreResult<Enrollment> {
        let filter = doc! {"user": &enrollment.user_id, "course": &enrollment.course_id};
        let update = doc! {"$setOnInsert": {"purchasedAt": date(enrollment.purchased_at)}};
        let stored = within(
            self.enrollments().find_one_and_update(filter, update).upsert(true).return_document(ReturnDocument::After),
        )
        .await?;
        stored.map(Enrollment::from).ok_or_else(|| StoreError::Unavailable("upsert returned nothing".into()))
    }

    async fn delete_enrollment(&self, user_id: &str, course_id: &str) -> StoreResult<bool> {
        let r = within(self.enrollments().delete_one(doc! {"user": user_id, "course": course_id})).await?;
        Ok(r.deleted_count > 0)
    }

    async fn enrollment(&self, user_id: &str, course_id: &str) -> StoreResult<Option<Enrollment>> {
        Ok(within(self.enrollments().find_one(doc! {"user": user_id, "course": course_id}))
            .await?
            .map(Enrollment::from))
    }

    async fn enrollments_by_user(&self, user_id: &str) -> StoreResult<Vec<Enrollment>> {
        let cursor = within(self.enrollments().find(doc! {"user": user_id}).sort(doc! {"course": 1})).await?;
        let docs: Vec<EnrollmentDoc> = within(cursor.try_collect()).await?;
        Ok(docs.into_iter().map(Enrollment::from).collect())
    }

    async fn enrollments_by_course(&self, course_id: &str) -> StoreResult<Vec<Enrollment>> {
        let cursor = within(self.enrollments().find(doc! {"course": course_id}).sort(doc! {"user": 1})).await?;
        let docs: Vec<EnrollmentDoc> = within(cursor.try_collect()).await?;
        Ok(docs.into_iter().map(Enrollment::from).collect())
    }

    async fn put_block(&self, blocker: &str, blocked: &str, at: Timestamp) -> StoreResult<(Block, bool)> {
        let filter = doc! {"blocker": blocker, "blocked": blocked};
        let update = doc! {"$setOnInsert": {"createdAt": date(at)}};
        let before = within(self.blocks().find_one_and_update(filter, update).upsert(true)).await?;
        match before {
            Some(existing) => {
                let created = existing.get_datetime("createdAt").map(|d| stamp(*d)).unwrap_or(at);
                Ok((Block { user_id: blocked.to_owned(), created_at: created }, false))
            }
            None => Ok((Block { user_id: blocked.to_owned(), created_at: at }, true)),
        }
    }

    async fn delete_block(&self, blocker: &str, blocked: &str) -> StoreResult<bool> {
        let r = within(self.blocks().delete_one(doc! {"blocker": blocker, "blocked": blocked})).await?;
        Ok(r.deleted_count > 0)
    }

    async fn blocks(&self, blocker: &str) -> StoreResult<Vec<Block>> {
        let cursor = within(self.blocks().find(doc! {"blocker": blocker}).sort(doc! {"blocked": 1})).await?;
        let docs: Vec<Document> = within(cursor.try_collect()).await?;
        Ok(docs
            .into_iter()
            .map(|d| Block {
                user_id: d.get_str("blocked").unwrap_or_default().to_owned(),
                created_at: d.get_datetime("createdAt").map(|t| stamp(*t)).unwrap_or_default(),
            })
            .collect())
    }

    async fn is_blocked(&self, blocker: &str, blocked: &str) -> StoreResult<bool> {
        Ok(within(self.blocks().find_one(doc! {"blocker": blocker, "blocked": blocked})).await?.is_some())
    }

    async fn create_chat(&self, chat: &Chat) -> StoreResult<ChatCreation> {
        let d = ChatDoc::from_chat(chat)?;
        match tokio::time::timeout(OPERATION_DEADLINE, self.chats().insert_one(d)).await {
            Ok(Ok(_)) => Ok(ChatCreation { chat: chat.clone(), created: true }),
            Ok(Err(e)) if is_duplicate_key(&e) => {
                let filter = doc! {"student": &chat.student_id, "tutor": &chat.tutor_id, "course": &chat.course_id};
                let existing = within(self.chats().find_one(filter)).await?;
                let existing = existing.ok_or_else(|| StoreError::Unavailable("duplicate chat vanished".into()))?;
                Ok(ChatCreation { chat: existing.into_chat(), created: false })
            }
            Ok(Err(e)) => Err(unavailable(e)),
            Err(_) => Err(StoreError::Unavailable("MongoDB did not answer in time".into())),
        }
    }

    async fn chat(&self, id: &str) -> StoreResult<Option<Chat>> {
        let Ok(id) = ObjectId::parse_str(id) else { return Ok(None) };
        Ok(within(self.chats().find_one(doc! {"_id": id})).await?.map(ChatDoc::into_chat))
    }

    async fn chats_by_user(&self, user_id: &str) -> StoreResult<Vec<Chat>> {
        let cursor =
            within(self.chats().find(doc! {"participants.user": user_id}).sort(doc! {"updatedAt": -1}).limit(1000))
                .await?;
        let docs: Vec<ChatDoc> = within(cursor.try_collect()).await?;
        Ok(docs.into_iter().map(ChatDoc::into_chat).collect())
    }

    async fn advance_read_cursor(&self, chat_id: &str, user_id: &str, seq: u64) -> StoreResult<u64> {
        let filter = doc! {"chat": oid(chat_id)?, "user": user_id};
        let update = doc! {"$max": {"seq": seq as i64}, "$set": {"updatedAt": DateTime::now()}};
        let after = within(
            self.cursors().find_one_and_update(filter, update).upsert(true).return_document(ReturnDocument::After),
        )
        .await?;
        Ok(after.and_then(|d| d.get_i64("seq").ok()).unwrap_or(0).max(0) as u64)
    }

    async fn read_cursor(&self, chat_id: &str, user_id: &str) -> StoreResult<u64> {
        let Ok(chat) = ObjectId::parse_str(chat_id) else { return Ok(0) };
        let d = within(self.cursors().find_one(doc! {"chat": chat, "user": user_id})).await?;
        Ok(d.and_then(|d| d.get_i64("seq").ok()).unwrap_or(0).max(0) as u64)
    }

    async fn persist_messages(&self, batch: &[Message]) -> StoreResult<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let docs = batch.iter().map(MessageDoc::from_message).collect::<StoreResult<Vec<_>>>()?;
        // Unordered: one duplicate (a retried batch) does not stop the others. A duplicate on
        // (chat, seq) means the message is already stored: it counts as stored.
        match tokio::time::timeout(OPERATION_DEADLINE, self.messages().insert_many(docs).ordered(false)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) if is_duplicate_key(&e) => {}
            Ok(Err(e)) => return Err(unavailable(e)),
            Err(_) => return Err(StoreError::Unavailable("MongoDB did not answer in time".into())),
        }
        // Each touched chat moves forward once, and only forward.
        let mut newest: Vec<&Message> = Vec::new();
        let mut senders: Vec<(&str, &str, u64)> = Vec::new();
        for m in batch {
            match newest.iter_mut().find(|n| n.chat_id == m.chat_id) {
                Some(n) if n.seq < m.seq => *n = m,
                Some(_) => {}
                None => newest.push(m),
            }
            match senders.iter_mut().find(|(c, s, _)| *c == m.chat_id && *s == m.sender_id) {
                Some(entry) => entry.2 = entry.2.max(m.seq),
                None => senders.push((&m.chat_id, &m.sender_id, m.seq)),
            }
        }
        for m in newest {
            let last = bson::to_bson(&last_message_doc(m)?).map_err(unavailable)?;
            let filter = doc! {"_id": oid(&m.chat_id)?, "lastSeq": {"$lt": m.seq as i64}};
            let update = doc! {"$set": {"lastMessage": last, "lastSeq": m.seq as i64, "updatedAt": date(m.created_at)}};
            within(self.chats().update_one(filter, update)).await?;
        }
        for (chat, sender, seq) in senders {
            self.advance_read_cursor(chat, sender, seq).await?;
        }
        Ok(())
    }

    async fn messages_before(&self, chat_id: &str, before: Option<u64>, limit: usize) -> StoreResult<Vec<Message>> {
        let mut filter = doc! {"chat": oid(chat_id)?};
        if let Some(before) = before {
            filter.insert("seq", doc! {"$lt": before.min(i64::MAX as u64) as i64});
        }
        let cursor = within(self.messages().find(filter).sort(doc! {"seq": -1}).limit(limit as i64)).await?;
        let docs: Vec<MessageDoc> = within(cursor.try_collect()).await?;
        let mut out: Vec<Message> = docs.into_iter().map(MessageDoc::into_message).collect();
        out.reverse();
        Ok(out)
    }

    async fn put_attachment(&self, attachment: &StoredAttachment, bytes: Vec<u8>) -> StoreResult<()> {
        use futures_util::io::AsyncWriteExt;
        let id = oid(&attachment.id)?;
        let bucket = self.db.gridfs_bucket(None);
        let upload = async {
            let mut stream = bucket.open_upload_stream(&attachment.name).id(Bson::ObjectId(id)).await?;
            stream.write_all(&bytes).await.map_err(|e| MongoError::custom(e.to_string()))?;
            stream.close().await.map_err(|e| MongoError::custom(e.to_string()))?;
            Ok::<(), MongoError>(())
        };
        match tokio::time::timeout(OPERATION_DEADLINE * 4, upload).await {
            Ok(result) => result.map_err(unavailable)?,
            Err(_) => return Err(StoreError::Unavailable("MongoDB did not take the attachment in time".into())),
        }
        let record = bson::to_document(attachment).map_err(unavailable)?;
        within(
            self.db.collection::<Document>("attachments").replace_one(doc! {"id": &attachment.id}, record).upsert(true),
        )
        .await
        .map(|_| ())
    }

    async fn attachment(&self, id: &str) -> StoreResult<Option<StoredAttachment>> {
        let d = within(self.db.collection::<Document>("attachments").find_one(doc! {"id": id})).await?;
        d.map(|d| bson::from_document(d).map_err(|e| StoreError::Corrupt(e.to_string()))).transpose()
    }

    async fn attachment_bytes(&self, id: &str) -> StoreResult<Option<Vec<u8>>> {
        use futures_util::io::AsyncReadExt;
        if self.attachment(id).await?.is_none() {
            return Ok(None);
        }
        let bucket = self.db.gridfs_bucket(None);
        let download = async {
            let mut stream = bucket.open_download_stream(Bson::ObjectId(oid(id)?)).await.map_err(unavailable)?;
            let mut bytes = Vec::new();
            stream.read_to_end(&mut bytes).await.map_err(unavailable)?;
            Ok::<_, StoreError>(bytes)
        };
        match tokio::time::timeout(OPERATION_DEADLINE * 4, download).await {
            Ok(result) => result.map(Some),
            Err(_) => Err(StoreError::Unavailable("MongoDB did not answer in time".into())),
        }
    }

    async fn messages_after(&self, chat_id: &str, after: u64, limit: usize) -> StoreResult<Vec<Message>> {
        let filter = doc! {"chat": oid(chat_id)?, "seq": {"$gt": Bson::Int64(after.min(i64::MAX as u64) as i64)}};
        let cursor = within(self.messages().find(filter).sort(doc! {"seq": 1}).limit(limit as i64)).await?;
        let docs: Vec<MessageDoc> = within(cursor.try_collect()).await?;
        Ok(docs.into_iter().map(MessageDoc::into_message).collect())
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

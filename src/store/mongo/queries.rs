//! The MongoDB store's queries: [`Store`] for [`MongoStore`].
//!
//! What each [`Store`] method asks of the collections: filters, sorts, upserts, and which
//! driver errors are answers (a duplicate key on `create_chat` or a retried batch) rather than
//! failures. Every operation runs under the deadline ([`within`], or [`OPERATION_DEADLINE`]
//! directly where the error must be looked at; four times that for GridFS bytes), and every
//! filter is served by an index that [`MongoStore::connect`] created. What the documents look
//! like is `documents.rs`'s business, so this file reads as the queries alone.

use std::collections::HashMap;

use async_trait::async_trait;
use bson::oid::ObjectId;
use bson::{doc, Bson, DateTime, Document};
use futures_util::{StreamExt, TryStreamExt};
use mongodb::error::Error as MongoError;
use mongodb::options::ReturnDocument;

use super::documents::{
    block_from_doc, cursor_seq, date, last_message_doc, oid, stamp, ChatDoc, CourseDoc, EnrollmentDoc, MessageDoc,
    UserDoc,
};
use super::{is_duplicate_key, unavailable, within, MongoStore, OPERATION_DEADLINE};
use crate::model::time::Timestamp;
use crate::model::{Block, Chat, Course, Enrollment, Message, StoredAttachment, User};
use crate::store::{ChatCreation, Store, StoreError, StoreResult};

/// Updates of one persisted batch (chats' last message, senders' read cursors) in flight at
/// once; the driver's pool (10 connections by default) bounds it too.
const PERSIST_CONCURRENCY: usize = 16;

#[async_trait]
impl Store for MongoStore {
    fn kind(&self) -> &'static str {
        "mongodb"
    }

    async fn ping(&self) -> StoreResult<()> {
        within(self.db.run_command(doc! {"ping": 1})).await.map(|_| ())
    }

    async fn put_user(&self, user: &User) -> StoreResult<()> {
        within(self.users().replace_one(doc! {"_id": &user.id}, UserDoc::from(user)).upsert(true)).await.map(|_| ())
    }

    async fn user(&self, id: &str) -> StoreResult<Option<User>> {
        Ok(within(self.users().find_one(doc! {"_id": id})).await?.map(User::from))
    }

    async fn put_course(&self, course: &Course) -> StoreResult<()> {
        within(self.courses().replace_one(doc! {"_id": &course.id}, CourseDoc::from(course)).upsert(true))
            .await
            .map(|_| ())
    }

    async fn course(&self, id: &str) -> StoreResult<Option<Course>> {
        Ok(within(self.courses().find_one(doc! {"_id": id})).await?.map(Course::from))
    }

    async fn courses_by_tutor(&self, tutor_id: &str) -> StoreResult<Vec<Course>> {
        let cursor = within(self.courses().find(doc! {"tutorIds": tutor_id}).sort(doc! {"_id": 1})).await?;
        let docs: Vec<CourseDoc> = within(cursor.try_collect()).await?;
        Ok(docs.into_iter().map(Course::from).collect())
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
        Ok(docs.iter().map(block_from_doc).collect())
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
        Ok(cursor_seq(after))
    }

    async fn read_cursor(&self, chat_id: &str, user_id: &str) -> StoreResult<u64> {
        let Ok(chat) = ObjectId::parse_str(chat_id) else { return Ok(0) };
        let d = within(self.cursors().find_one(doc! {"chat": chat, "user": user_id})).await?;
        Ok(cursor_seq(d))
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
        // Each touched chat moves forward once, and only forward; so does each sender's read
        // cursor. One update per chat and per (chat, sender), run side by side: one at a time,
        // a batch spread over hundreds of chats took hundreds of round trips, and the
        // write-behind fell behind the sends.
        let mut newest: HashMap<&str, &Message> = HashMap::new();
        let mut senders: HashMap<(&str, &str), u64> = HashMap::new();
        for m in batch {
            let top = newest.entry(m.chat_id.as_str()).or_insert(m);
            if top.seq < m.seq {
                *top = m;
            }
            let seq = senders.entry((m.chat_id.as_str(), m.sender_id.as_str())).or_insert(m.seq);
            *seq = (*seq).max(m.seq);
        }
        let mut updates = Vec::with_capacity(newest.len() + senders.len());
        for m in newest.into_values() {
            let last = bson::to_bson(&last_message_doc(m)?).map_err(unavailable)?;
            let filter = doc! {"_id": oid(&m.chat_id)?, "lastSeq": {"$lt": m.seq as i64}};
            let update = doc! {"$set": {"lastMessage": last, "lastSeq": m.seq as i64, "updatedAt": date(m.created_at)}};
            updates.push((self.chats().clone_with_type::<Document>(), filter, update, false));
        }
        for ((chat, sender), seq) in senders {
            let filter = doc! {"chat": oid(chat)?, "user": sender};
            let update = doc! {"$max": {"seq": seq as i64}, "$set": {"updatedAt": DateTime::now()}};
            updates.push((self.cursors(), filter, update, true));
        }
        futures_util::stream::iter(updates.into_iter().map(|(collection, filter, update, upsert)| async move {
            within(collection.update_one(filter, update).upsert(upsert)).await.map(|_| ())
        }))
        .buffer_unordered(PERSIST_CONCURRENCY)
        .try_collect::<()>()
        .await
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

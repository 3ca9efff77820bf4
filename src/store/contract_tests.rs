//! The behaviour every [`Store`] must have, as one suite that each implementation runs.
//!
//! Ids carry a random prefix so the suite can run against a shared server (MongoDB) in parallel
//! with itself and other tests.

use super::Store;
use crate::model::ids::new_object_id;
use crate::model::time::Timestamp;
use crate::model::{Chat, Course, Enrollment, Message, MessageType, Role, SenderType, StoredAttachment, User};

fn prefix() -> String {
    format!("t{}", &new_object_id()[16..])
}

pub fn message(chat: &Chat, seq: u64, sender: &str) -> Message {
    Message {
        id: new_object_id(),
        chat_id: chat.id.clone(),
        seq,
        sender_id: sender.to_owned(),
        sender_type: if sender == chat.tutor_id { SenderType::Tutor } else { SenderType::User },
        kind: MessageType::Text,
        content: format!("message {seq}"),
        attachment: None,
        client_msg_id: format!("c{seq}"),
        created_at: Timestamp(1_700_000_000_000 + seq as i64),
    }
}

fn chat(p: &str, student: &str, tutor: &str, course: &str) -> Chat {
    let now = Timestamp::now();
    Chat {
        id: new_object_id(),
        course_id: format!("{p}{course}"),
        student_id: format!("{p}{student}"),
        tutor_id: format!("{p}{tutor}"),
        created_at: now,
        updated_at: now,
        last_message: None,
        last_seq: 0,
    }
}

pub async fn run_all(store: &dyn Store) {
    users_are_upserted(store).await;
    courses_index_their_tutors(store).await;
    enrollments_keep_their_first_purchase_and_can_be_revoked(store).await;
    blocks_are_directional_and_idempotent(store).await;
    one_chat_per_student_tutor_course(store).await;
    read_cursors_never_move_back(store).await;
    persisting_is_idempotent_and_moves_chat_forward(store).await;
    history_pages_by_seq(store).await;
    attachments_keep_their_bytes_and_record(store).await;
}

async fn attachments_keep_their_bytes_and_record(store: &dyn Store) {
    let record = StoredAttachment {
        id: new_object_id(),
        chat_id: new_object_id(),
        uploader_id: "u".into(),
        name: "notes.txt".into(),
        size: 5000,
        mime: "text/plain".into(),
        created_at: Timestamp(1_700_000_000_000),
    };
    let bytes: Vec<u8> = (0..5000u32).map(|i| b'a' + (i % 26) as u8).collect();
    store.put_attachment(&record, bytes.clone()).await.unwrap();
    assert_eq!(store.attachment(&record.id).await.unwrap(), Some(record.clone()));
    assert_eq!(store.attachment_bytes(&record.id).await.unwrap(), Some(bytes));
    let missing = new_object_id();
    assert_eq!(store.attachment(&missing).await.unwrap(), None);
    assert_eq!(store.attachment_bytes(&missing).await.unwrap(), None);
}

async fn users_are_upserted(store: &dyn Store) {
    let p = prefix();
    let id = format!("{p}u");
    assert_eq!(store.user(&id).await.unwrap(), None);
    store.put_user(&User { id: id.clone(), name: "Ann".into(), role: Role::User }).await.unwrap();
    store.put_user(&User { id: id.clone(), name: "Ann B".into(), role: Role::Tutor }).await.unwrap();
    let u = store.user(&id).await.unwrap().unwrap();
    assert_eq!((u.name.as_str(), u.role), ("Ann B", Role::Tutor));
}

async fn courses_index_their_tutors(store: &dyn Store) {
    let p = prefix();
    let (c, t1, t2) = (format!("{p}c"), format!("{p}t1"), format!("{p}t2"));
    store.put_course(&Course { id: c.clone(), title: "Rust".into(), tutor_ids: vec![t1.clone()] }).await.unwrap();
    assert_eq!(store.courses_by_tutor(&t1).await.unwrap().len(), 1);
    store.put_course(&Course { id: c.clone(), title: "Rust 2".into(), tutor_ids: vec![t2.clone()] }).await.unwrap();
    assert!(store.courses_by_tutor(&t1).await.unwrap().is_empty(), "a replaced tutor loses the course");
    let by_t2 = store.courses_by_tutor(&t2).await.unwrap();
    assert_eq!(by_t2[0].title, "Rust 2");
    assert_eq!(store.course(&c).await.unwrap().unwrap().tutor_ids, vec![t2]);
}

async fn enrollments_keep_their_first_purchase_and_can_be_revoked(store: &dyn Store) {
    let p = prefix();
    let (u, c) = (format!("{p}s"), format!("{p}c"));
    let first = Enrollment { user_id: u.clone(), course_id: c.clone(), purchased_at: Timestamp(1000) };
    assert_eq!(store.put_enrollment(&first).await.unwrap(), first);
    let again = Enrollment { purchased_at: Timestamp(2000), ..first.clone() };
    assert_eq!(store.put_enrollment(&again).await.unwrap().purchased_at, Timestamp(1000));
    assert!(store.enrollment(&u, &c).await.unwrap().is_some());
    assert_eq!(store.enrollments_by_user(&u).await.unwrap().len(), 1);
    assert_eq!(store.enrollments_by_course(&c).await.unwrap()[0].user_id, u);
    assert!(store.delete_enrollment(&u, &c).await.unwrap());
    assert!(!store.delete_enrollment(&u, &c).await.unwrap());
    assert!(store.enrollment(&u, &c).await.unwrap().is_none());
    assert!(store.enrollments_by_course(&c).await.unwrap().is_empty());
}

async fn blocks_are_directional_and_idempotent(store: &dyn Store) {
    let p = prefix();
    let (a, b) = (format!("{p}a"), format!("{p}b"));
    let (block, created) = store.put_block(&a, &b, Timestamp(5)).await.unwrap();
    assert!(created);
    assert_eq!(block.user_id, b);
    let (again, created) = store.put_block(&a, &b, Timestamp(9)).await.unwrap();
    assert!(!created);
    assert_eq!(again.created_at, Timestamp(5));
    assert!(store.is_blocked(&a, &b).await.unwrap());
    assert!(!store.is_blocked(&b, &a).await.unwrap());
    assert_eq!(store.blocks(&a).await.unwrap().len(), 1);
    assert!(store.delete_block(&a, &b).await.unwrap());
    assert!(!store.is_blocked(&a, &b).await.unwrap());
}

async fn one_chat_per_student_tutor_course(store: &dyn Store) {
    let p = prefix();
    let first = chat(&p, "s", "t", "c");
    let created = store.create_chat(&first).await.unwrap();
    assert!(created.created);
    let dup = chat(&p, "s", "t", "c");
    let again = store.create_chat(&dup).await.unwrap();
    assert!(!again.created);
    assert_eq!(again.chat.id, first.id);
    let other_course = store.create_chat(&chat(&p, "s", "t", "c2")).await.unwrap();
    assert!(other_course.created);
    assert_eq!(store.chats_by_user(&first.student_id).await.unwrap().len(), 2);
    assert_eq!(store.chats_by_user(&first.tutor_id).await.unwrap().len(), 2);
    assert_eq!(store.chat(&first.id).await.unwrap().unwrap().student_id, first.student_id);
    assert!(store.chat(&new_object_id()).await.unwrap().is_none());
}

async fn read_cursors_never_move_back(store: &dyn Store) {
    let c = new_object_id();
    assert_eq!(store.read_cursor(&c, "u").await.unwrap(), 0);
    assert_eq!(store.advance_read_cursor(&c, "u", 5).await.unwrap(), 5);
    assert_eq!(store.advance_read_cursor(&c, "u", 3).await.unwrap(), 5);
    assert_eq!(store.read_cursor(&c, "u").await.unwrap(), 5);
}

async fn persisting_is_idempotent_and_moves_chat_forward(store: &dyn Store) {
    let p = prefix();
    let c = store.create_chat(&chat(&p, "s", "t", "c")).await.unwrap().chat;
    let batch: Vec<Message> = (1..=3).map(|seq| message(&c, seq, &c.student_id)).collect();
    store.persist_messages(&batch).await.unwrap();
    store.persist_messages(&batch).await.unwrap();
    assert_eq!(store.messages_after(&c.id, 0, 100).await.unwrap().len(), 3, "a retried batch stores nothing twice");
    // An older batch arriving late never moves the chat back.
    store.persist_messages(&[message(&c, 5, &c.tutor_id)]).await.unwrap();
    store.persist_messages(&[message(&c, 4, &c.student_id)]).await.unwrap();
    let stored = store.chat(&c.id).await.unwrap().unwrap();
    assert_eq!(stored.last_seq, 5);
    assert_eq!(stored.last_message.as_ref().map(|m| m.seq), Some(5));
    assert_eq!(stored.updated_at, message(&c, 5, &c.tutor_id).created_at);
    let listed = store.chats_by_user(&c.student_id).await.unwrap();
    assert_eq!(listed.iter().map(|c| c.last_seq).collect::<Vec<_>>(), vec![5], "listing shows the last message too");
    let again = store.create_chat(&chat(&p, "s", "t", "c")).await.unwrap();
    assert_eq!((again.created, again.chat.last_seq), (false, 5), "so does finding the chat again");
    assert_eq!(store.read_cursor(&c.id, &c.student_id).await.unwrap(), 4, "sending moves the sender's cursor");
    assert_eq!(store.read_cursor(&c.id, &c.tutor_id).await.unwrap(), 5);
}

async fn history_pages_by_seq(store: &dyn Store) {
    let p = prefix();
    let c = store.create_chat(&chat(&p, "s", "t", "c")).await.unwrap().chat;
    let batch: Vec<Message> = (1..=10).map(|seq| message(&c, seq, &c.student_id)).collect();
    store.persist_messages(&batch).await.unwrap();
    let seqs = |v: Vec<Message>| v.into_iter().map(|m| m.seq).collect::<Vec<_>>();
    assert_eq!(seqs(store.messages_before(&c.id, None, 3).await.unwrap()), vec![8, 9, 10]);
    assert_eq!(seqs(store.messages_before(&c.id, Some(8), 3).await.unwrap()), vec![5, 6, 7]);
    assert_eq!(seqs(store.messages_before(&c.id, Some(2), 3).await.unwrap()), vec![1]);
    assert_eq!(seqs(store.messages_after(&c.id, 7, 2).await.unwrap()), vec![8, 9]);
    assert!(store.messages_after(&c.id, 10, 5).await.unwrap().is_empty());
}

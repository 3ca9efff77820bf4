//! Behaviour every engine implementation must have, as suites each implementation runs: the
//! message log, the bus, presence, typing, rate limits and the directory. The message-log and bus
//! suites observe fan-out through a socket registered in the node's hub, which is where every
//! implementation must deliver.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;

use super::*;
use crate::hub::testing::Inbox;
use crate::hub::{Delivery, Hub, SocketHandle, Target};
use crate::model::ids::new_object_id;

fn request(chat: &str, sender: &str, cmid: &str, recipients: &[&str]) -> AppendRequest {
    AppendRequest {
        chat_id: chat.to_owned(),
        sender_id: sender.to_owned(),
        sender_type: SenderType::User,
        kind: MessageType::Text,
        content: format!("hello {cmid}"),
        attachment: None,
        client_msg_id: cmid.to_owned(),
        recipients: recipients.iter().map(|s| s.to_string()).collect(),
        origin: Some(1),
    }
}

fn listen(hub: &Hub, socket: u64, user: &str) -> Inbox {
    let socket = Arc::new(SocketHandle::new(socket, user.to_owned(), 1024));
    hub.register(socket.clone());
    Inbox::new(socket)
}

/// `watch` is told each user the suite listens for, as a node does when a socket connects.
/// `store` is the one the log's node writes behind to: the suite stores each drained batch
/// there before releasing it, as the writer does.
pub async fn message_log_suite<F, Fut>(log: &dyn MessageLog, store: &dyn crate::store::Store, hub: &Hub, watch: &F)
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let chat = new_object_id();
    let student = format!("s{}", &chat[18..]);
    let tutor = format!("t{}", &chat[18..]);
    let mut tutor_socket = listen(hub, 77, &tutor);
    watch(tutor.clone()).await;

    // Seq starts at 1 and grows by one; the event reaches the other participant, once.
    let first = log.append(request(&chat, &student, "a", &[&student, &tutor])).await.unwrap();
    assert!(!first.duplicate);
    assert_eq!(first.message.seq, 1);
    let second = log.append(request(&chat, &student, "b", &[&student, &tutor])).await.unwrap();
    assert_eq!(second.message.seq, 2);
    let frame = tutor_socket.next(Duration::from_secs(2)).await.unwrap();
    assert!(std::str::from_utf8(&frame).unwrap().contains(&first.message.id));

    // A repeated clientMsgId returns the first message and appends nothing.
    let again = log.append(request(&chat, &student, "a", &[&student, &tutor])).await.unwrap();
    assert!(again.duplicate);
    assert_eq!(again.message, first.message);
    // clientMsgId is scoped to the sender.
    let other_sender = log.append(request(&chat, &tutor, "a", &[&student, &tutor])).await.unwrap();
    assert!(!other_sender.duplicate);
    assert_eq!(other_sender.message.seq, 3);

    // Pending shows every acked message until released.
    let pending = log.pending(&chat).await.unwrap();
    assert_eq!(pending.iter().map(|m| m.seq).collect::<Vec<_>>(), vec![1, 2, 3]);

    // Concurrent sends into one chat get distinct, gapless seqs.
    let mut tasks = Vec::new();
    for i in 0..20 {
        let req = request(&chat, &student, &format!("c{i}"), &[&student, &tutor]);
        tasks.push(log.append(req));
    }
    let mut seqs: Vec<u64> =
        futures_util::future::join_all(tasks).await.into_iter().map(|r| r.unwrap().message.seq).collect();
    seqs.sort();
    assert_eq!(seqs, (4..=23).collect::<Vec<_>>());
    // And the events left in seq order.
    let mut seen = Vec::new();
    while let Some(f) = tutor_socket.next(Duration::from_millis(500)).await {
        let text = String::from_utf8(f.to_vec()).unwrap();
        let at = text.find("\"seq\":").unwrap() + 6;
        let seq: u64 = text[at..].chars().take_while(|c| c.is_ascii_digit()).collect::<String>().parse().unwrap();
        seen.push(seq);
    }
    assert_eq!(seen, (2..=23).collect::<Vec<_>>());

    // A batch the writer could not store is handed out again: nothing waits for a timeout.
    let refused = log.next_batch(5, Duration::from_millis(50)).await.unwrap();
    assert!(!refused.is_empty());
    let again = log.next_batch(5, Duration::from_millis(50)).await.unwrap();
    let ids = |b: &[Queued]| b.iter().map(|q| q.message.id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&again), ids(&refused), "the unreleased batch comes back first");

    // The writer side: batches in order, released entries leave pending and the backlog.
    let before = log.backlog().await.unwrap();
    let mut drained = 0;
    loop {
        let batch = log.next_batch(10, Duration::from_millis(50)).await.unwrap();
        if batch.is_empty() {
            break;
        }
        drained += batch.len();
        let messages: Vec<Message> = batch.iter().map(|q| q.message.clone()).collect();
        store.persist_messages(&messages).await.unwrap();
        let tokens: Vec<String> = batch.iter().map(|q| q.token.clone()).collect();
        log.release(&tokens).await.unwrap();
    }
    assert!(drained as u64 >= 23 && drained as u64 <= before);
    assert!(log.pending(&chat).await.unwrap().is_empty());
    assert_eq!(log.backlog().await.unwrap(), 0);
    // Seqs continue after release; dedupe still holds within the window.
    assert_eq!(log.append(request(&chat, &student, "d", &[&student])).await.unwrap().message.seq, 24);
    assert!(log.append(request(&chat, &student, "a", &[&student])).await.unwrap().duplicate);
}

pub async fn presence_suite(presence: &dyn Presence, notices: &mut mpsc::Receiver<Notice>, grace: Duration) {
    let user = format!("p{}", new_object_id());
    assert!(presence.connected(&user).await.unwrap(), "first socket brings the user online");
    assert!(!presence.connected(&user).await.unwrap(), "a second device changes nothing");
    presence.disconnected(&user).await.unwrap();
    presence.disconnected(&user).await.unwrap();
    assert_eq!(
        presence.online(std::slice::from_ref(&user)).await.unwrap(),
        vec![true],
        "online during the grace period"
    );
    // Reconnecting within the grace period: no offline, no online.
    assert!(!presence.connected(&user).await.unwrap());
    presence.disconnected(&user).await.unwrap();
    let notice = tokio::time::timeout(grace * 3, notices.recv()).await.unwrap().unwrap();
    match notice {
        Notice::Offline { user: u, .. } => assert_eq!(u, user),
        other => panic!("expected offline, got {other:?}"),
    }
    assert_eq!(presence.online(std::slice::from_ref(&user)).await.unwrap(), vec![false]);
    assert!(presence.connected(&user).await.unwrap(), "back online after the grace period");
}

pub async fn typing_suite(typing: &dyn Typing, notices: &mut mpsc::Receiver<Notice>, ttl: Duration) {
    let chat = new_object_id();
    assert!(typing.start(&chat, "u", 9).await.unwrap());
    assert!(!typing.start(&chat, "u", 9).await.unwrap(), "renewal is not a new start");
    assert!(typing.stop(&chat, "u").await.unwrap());
    assert!(!typing.stop(&chat, "u").await.unwrap());
    assert!(typing.start(&chat, "u", 9).await.unwrap());
    let notice = tokio::time::timeout(ttl * 3, notices.recv()).await.unwrap().unwrap();
    assert_eq!(notice, Notice::TypingExpired { chat_id: chat.clone(), user: "u".into(), origin: 9 });
}

pub async fn rate_limiter_suite(limiter: &dyn RateLimiter, burst: u32) {
    let key = new_object_id();
    for _ in 0..burst {
        assert!(limiter.check(&key).await.unwrap().is_ok());
    }
    let retry = limiter.check(&key).await.unwrap().unwrap_err();
    assert!(retry > Duration::ZERO && retry <= Duration::from_secs(1));
    assert!(limiter.check(&new_object_id()).await.unwrap().is_ok(), "keys are independent");
}

/// The next frame the socket gets within `within`, if any.
async fn next_frame(inbox: &mut Inbox, within: Duration) -> Option<Bytes> {
    inbox.next(within).await
}

fn delivery(target: Target, except: Option<u64>, frame: &'static str) -> Delivery {
    Delivery { target, except, frame: Bytes::from_static(frame.as_bytes()) }
}

/// `listener`'s node holds `hub`; `publisher` is the bus of another node (or the same one, for a
/// bus of one node). Subscriptions are made as the node makes them: once the hub holds the
/// socket, and dropped once it does not.
pub async fn bus_suite(publisher: &dyn Bus, listener: &dyn Bus, hub: &Hub) {
    let user = format!("b{}", new_object_id());
    let chat = new_object_id();
    let socket = Arc::new(SocketHandle::new(7, user.clone(), 64));
    let mut rx = Inbox::new(socket.clone());
    let wait = Duration::from_secs(2);

    // A user's events reach every socket of the user but the one that caused them.
    hub.register(socket.clone());
    listener.subscribe(&Topic::User(user.clone())).await.unwrap();
    publisher.publish(delivery(Target::Users(vec![user.clone()]), None, "u1")).await.unwrap();
    assert_eq!(next_frame(&mut rx, wait).await.as_deref(), Some(&b"u1"[..]));
    publisher.publish(delivery(Target::Users(vec![user.clone()]), Some(7), "own")).await.unwrap();
    publisher.publish(delivery(Target::Users(vec!["someone-else".into(), user.clone()]), None, "u2")).await.unwrap();
    assert_eq!(next_frame(&mut rx, wait).await.as_deref(), Some(&b"u2"[..]), "the origin socket is skipped");

    // A room's events reach the sockets that joined it, in order.
    hub.join(&chat, &socket).unwrap();
    listener.subscribe(&Topic::Room(chat.clone())).await.unwrap();
    for frame in ["r1", "r2", "r3"] {
        publisher.publish(delivery(Target::Room(chat.clone()), None, frame)).await.unwrap();
    }
    for frame in ["r1", "r2", "r3"] {
        assert_eq!(next_frame(&mut rx, wait).await.as_deref(), Some(frame.as_bytes()));
    }

    // After leaving, the room's events stop; the user's go on.
    hub.leave(&chat, &socket);
    listener.unsubscribe(&Topic::Room(chat.clone())).await;
    publisher.publish(delivery(Target::Room(chat.clone()), None, "r4")).await.unwrap();
    publisher.publish(delivery(Target::Users(vec![user.clone()]), None, "u3")).await.unwrap();
    assert_eq!(next_frame(&mut rx, wait).await.as_deref(), Some(&b"u3"[..]), "nothing of the room left");

    // After the last socket is gone, nothing arrives.
    hub.unregister(&socket);
    listener.unsubscribe(&Topic::User(user.clone())).await;
    publisher.publish(delivery(Target::Users(vec![user.clone()]), None, "u4")).await.unwrap();
    assert_eq!(next_frame(&mut rx, Duration::from_millis(300)).await, None);
}

/// The directory answers from the store and forgets what an invalidation names at once.
pub async fn directory_suite(directory: &dyn Directory, store: &dyn crate::store::Store) {
    use crate::model::{Chat, Course, Enrollment, Timestamp};
    let id = new_object_id();
    let (student, tutor, course_id) = (format!("s{}", &id[18..]), format!("t{}", &id[18..]), format!("c{id}"));
    let now = Timestamp::now();
    let course = Course { id: course_id.clone(), title: "Rust".into(), tutor_ids: vec![tutor.clone()] };
    store.put_course(&course).await.unwrap();
    let enrollment = Enrollment { user_id: student.clone(), course_id: course_id.clone(), purchased_at: now };
    store.put_enrollment(&enrollment).await.unwrap();
    let chat = Chat {
        id: id.clone(),
        course_id: course_id.clone(),
        student_id: student.clone(),
        tutor_id: tutor.clone(),
        created_at: now,
        updated_at: now,
        last_message: None,
        last_seq: 0,
    };
    store.create_chat(&chat).await.unwrap();

    let found = directory.chat(&id).await.unwrap().expect("the chat");
    assert_eq!((found.student_id.as_str(), found.tutor_id.as_str()), (student.as_str(), tutor.as_str()));
    assert_eq!(directory.chat(&new_object_id()).await.unwrap(), None);
    assert_eq!(directory.course(&course_id).await.unwrap().map(|c| c.tutor_ids), Some(vec![tutor.clone()]));
    assert!(directory.is_enrolled(&student, &course_id).await.unwrap());
    assert!(!directory.is_enrolled(&tutor, &course_id).await.unwrap());
    assert!(!directory.is_blocked(&tutor, &student).await.unwrap());

    // Each change is seen from the next lookup once invalidated.
    store.put_block(&tutor, &student, now).await.unwrap();
    directory.invalidate(Invalidation::Block { blocker: tutor.clone(), blocked: student.clone() }).await.unwrap();
    assert!(directory.is_blocked(&tutor, &student).await.unwrap(), "a new block holds at once");
    store.delete_enrollment(&student, &course_id).await.unwrap();
    let revoked = Invalidation::Enrollment { user: student.clone(), course: course_id.clone() };
    directory.invalidate(revoked).await.unwrap();
    assert!(!directory.is_enrolled(&student, &course_id).await.unwrap(), "a revocation holds at once");
    let retaught = Course { tutor_ids: vec!["another".into()], ..course };
    store.put_course(&retaught).await.unwrap();
    directory.invalidate(Invalidation::Course(course_id.clone())).await.unwrap();
    assert_eq!(directory.course(&course_id).await.unwrap().map(|c| c.tutor_ids), Some(vec!["another".to_owned()]));
}

//! The REST API: every call of the contract, its status codes and shapes, and the error format.

mod common;

use common::*;
use serde_json::json;

#[tokio::test]
async fn calls_without_a_good_token_get_401_with_their_code() {
    let server = Server::start(&[]);
    let a = &server.addr;
    let r = http(a, "GET", "/api/chats", None, None, &[]).await;
    assert_eq!((r.status, r.code()), (401, "unauthorized"));
    assert!(r.body["error"]["message"].is_string());
    let r = http(a, "GET", "/api/chats", Some("junk"), None, &[]).await;
    assert_eq!((r.status, r.code()), (401, "invalid_token"));
    let r = http(a, "GET", "/api/chats", Some(&token("u", "user", -60)), None, &[]).await;
    assert_eq!((r.status, r.code()), (401, "token_expired"));
    let r = http(a, "GET", "/api/nope", Some(&token("u", "user", 60)), None, &[]).await;
    assert_eq!((r.status, r.code()), (404, "not_found"));
}

#[tokio::test]
async fn the_admin_api_answers_the_stored_objects_and_needs_an_admin() {
    let server = Server::start(&[]);
    let a = &server.addr;
    let r =
        http(a, "PUT", "/api/admin/users/t1", Some(&admin()), Some(json!({"name": "Tia", "role": "tutor"})), &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["user"], json!({"id": "t1", "name": "Tia", "role": "tutor"}));
    let r =
        http(a, "PUT", "/api/admin/courses/c1", Some(&admin()), Some(json!({"title": "Go", "tutorIds": ["t1"]})), &[])
            .await;
    assert_eq!(r.body["course"], json!({"id": "c1", "title": "Go", "tutorIds": ["t1"]}));
    let r =
        http(a, "PUT", "/api/admin/enrollments", Some(&admin()), Some(json!({"userId": "s1", "courseId": "c1"})), &[])
            .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["enrollment"]["userId"], "s1");
    assert!(r.body["enrollment"]["purchasedAt"].as_str().unwrap().ends_with('Z'));
    let r = http(a, "DELETE", "/api/admin/enrollments/s1/c1", Some(&admin()), None, &[]).await;
    assert_eq!(r.status, 204);
    let r = http(
        a,
        "PUT",
        "/api/admin/users/t2",
        Some(&token("t1", "tutor", 60)),
        Some(json!({"name": "X", "role": "tutor"})),
        &[],
    )
    .await;
    assert_eq!((r.status, r.code()), (403, "forbidden"));
    let r =
        http(a, "PUT", "/api/admin/users/bad%20id", Some(&admin()), Some(json!({"name": "X", "role": "tutor"})), &[])
            .await;
    assert_eq!((r.status, r.code()), (400, "invalid_payload"));
    let r =
        http(a, "PUT", "/api/admin/users/t3", Some(&admin()), Some(json!({"name": "X", "role": "root"})), &[]).await;
    assert_eq!((r.status, r.code()), (400, "invalid_payload"));
}

#[tokio::test]
async fn creating_a_chat_checks_enrollment_and_tutorship_and_is_unique() {
    let server = Server::start(&[]);
    let f = fixture(&server).await;
    let a = &server.addr;
    // The same triple again: 200 with the same chat, from either side.
    let r = http(
        a,
        "POST",
        "/api/chats",
        Some(&f.student_token()),
        Some(json!({"participantId": f.tutor, "courseId": f.course})),
        &[],
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["chat"]["id"], f.chat.as_str());
    let r = http(
        a,
        "POST",
        "/api/chats",
        Some(&f.tutor_token()),
        Some(json!({"participantId": f.student, "courseId": f.course})),
        &[],
    )
    .await;
    assert_eq!((r.status, r.body["chat"]["id"].as_str()), (200, Some(f.chat.as_str())));
    let chat = &r.body["chat"];
    assert_eq!(chat["course"], json!({"id": f.course, "title": "Course"}));
    assert_eq!(chat["participants"].as_array().unwrap().len(), 2);
    assert_eq!(chat["participants"][0]["role"], "user");
    assert_eq!(chat["participants"][1]["role"], "tutor");
    // The tutor's token named them: the token's `name` updates the user record.
    assert_eq!(chat["participants"][1]["name"], format!("{} name", f.tutor));
    assert_eq!(chat["lastMessage"], json!(null));
    // A student without the course; a tutor who does not teach it.
    let stranger = token(&unique("s"), "user", 60);
    let r = http(
        a,
        "POST",
        "/api/chats",
        Some(&stranger),
        Some(json!({"participantId": f.tutor, "courseId": f.course})),
        &[],
    )
    .await;
    assert_eq!((r.status, r.code()), (403, "not_enrolled"));
    let r = http(
        a,
        "POST",
        "/api/chats",
        Some(&f.student_token()),
        Some(json!({"participantId": unique("t"), "courseId": f.course})),
        &[],
    )
    .await;
    assert_eq!((r.status, r.code()), (403, "not_tutor"));
    let r = http(a, "POST", "/api/chats", Some(&f.student_token()), Some(json!({"participantId": 5})), &[]).await;
    assert_eq!((r.status, r.code()), (400, "invalid_payload"));
}

#[tokio::test]
async fn history_pages_backwards_by_seq() {
    let server = Server::start(&[("CHAT_MESSAGE_BURST", "100")]);
    let f = fixture(&server).await;
    let mut s = Client::connect(&server.addr, &f.student_token()).await.unwrap();
    for i in 1..=12 {
        send(&mut s, &f.chat, &format!("m{i}"), &format!("n{i}")).await;
    }
    let page = |q: &str| {
        let path = format!("/api/chats/{}/messages{q}", f.chat);
        let token = f.tutor_token();
        let addr = server.addr.clone();
        async move { http(&addr, "GET", &path, Some(&token), None, &[]).await }
    };
    let seqs = |r: &HttpResponse| {
        r.body["messages"].as_array().unwrap().iter().map(|m| m["seq"].as_u64().unwrap()).collect::<Vec<_>>()
    };
    let r = page("").await;
    assert_eq!(seqs(&r), (1..=12).collect::<Vec<_>>());
    assert_eq!(r.body["hasMore"], false);
    let r = page("?limit=5").await;
    assert_eq!(seqs(&r), vec![8, 9, 10, 11, 12]);
    assert_eq!(r.body["hasMore"], true);
    let r = page("?limit=5&before=8").await;
    assert_eq!(seqs(&r), vec![3, 4, 5, 6, 7]);
    assert_eq!(r.body["hasMore"], true);
    let r = page("?limit=5&before=3").await;
    assert_eq!(seqs(&r), vec![1, 2]);
    assert_eq!(r.body["hasMore"], false);
    for bad in ["?limit=0", "?limit=101", "?limit=x", "?before=-1"] {
        let r = page(bad).await;
        assert_eq!((r.status, r.code()), (400, "invalid_payload"), "{bad}");
    }
    assert_eq!(seqs(&page("?limit=100").await).len(), 12);
    let other = fixture(&server).await;
    let r =
        http(&server.addr, "GET", &format!("/api/chats/{}/messages", other.chat), Some(&f.student_token()), None, &[])
            .await;
    assert_eq!((r.status, r.code()), (404, "not_found"));
}

#[tokio::test]
async fn the_chat_list_has_unread_counts_and_most_recent_first() {
    let server = Server::start(&[]);
    let f = fixture(&server).await;
    let a = &server.addr;
    // A second chat for the same tutor, with a newer message.
    let g_student = unique("student");
    http(
        a,
        "PUT",
        "/api/admin/enrollments",
        Some(&admin()),
        Some(json!({"userId": g_student, "courseId": f.course})),
        &[],
    )
    .await;
    let g_token = token(&g_student, "user", 3600);
    let r = http(
        a,
        "POST",
        "/api/chats",
        Some(&g_token),
        Some(json!({"participantId": f.tutor, "courseId": f.course})),
        &[],
    )
    .await;
    let g_chat = r.body["chat"]["id"].as_str().unwrap().to_owned();
    let mut s = Client::connect(a, &f.student_token()).await.unwrap();
    let mut g = Client::connect(a, &g_token).await.unwrap();
    send(&mut s, &f.chat, "1", "first").await;
    send(&mut s, &f.chat, "2", "second").await;
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    send(&mut g, &g_chat, "1", "newest").await;
    let r = http(a, "GET", "/api/chats", Some(&f.tutor_token()), None, &[]).await;
    let chats = r.body["chats"].as_array().unwrap();
    assert_eq!(chats.len(), 2);
    assert_eq!(chats[0]["id"], g_chat.as_str(), "most recent first");
    assert_eq!(chats[1]["unread"], 2);
    assert_eq!(chats[1]["readSeq"], 0);
    assert_eq!(chats[1]["lastSeq"], 2);
    assert_eq!(chats[1]["lastMessage"]["content"], "second");
    // PUT read: default latest, never back, never past the latest.
    let read = |seq: Option<u64>| {
        let body = seq.map(|s| json!({"seq": s}));
        let path = format!("/api/chats/{}/read", f.chat);
        let token = f.tutor_token();
        let addr = a.clone();
        async move { http(&addr, "PUT", &path, Some(&token), body, &[]).await }
    };
    assert_eq!(read(Some(1)).await.status, 204);
    let list = http(a, "GET", "/api/chats", Some(&f.tutor_token()), None, &[]).await;
    assert_eq!(list.body["chats"][1]["unread"], 1);
    assert_eq!(read(Some(0)).await.status, 204);
    let list = http(a, "GET", "/api/chats", Some(&f.tutor_token()), None, &[]).await;
    assert_eq!(list.body["chats"][1]["readSeq"], 1, "the cursor never moves back");
    assert_eq!(read(None).await.status, 204);
    let list = http(a, "GET", "/api/chats", Some(&f.tutor_token()), None, &[]).await;
    assert_eq!(
        (list.body["chats"][1]["readSeq"].as_u64(), list.body["chats"][1]["unread"].as_u64()),
        (Some(2), Some(0))
    );
    // Each participant's cursor (coursechat's addition): the student sent both, the tutor read both.
    let participants = &list.body["chats"][1]["participants"];
    assert_eq!((participants[0]["readSeq"].as_u64(), participants[1]["readSeq"].as_u64()), (Some(2), Some(2)));
    assert_eq!(read(Some(50)).await.status, 204);
    let list = http(a, "GET", "/api/chats", Some(&f.tutor_token()), None, &[]).await;
    assert_eq!(list.body["chats"][1]["readSeq"], 2);
    let other = fixture(&server).await;
    let r = http(a, "PUT", &format!("/api/chats/{}/read", other.chat), Some(&f.tutor_token()), None, &[]).await;
    assert_eq!(r.status, 404);
}

#[tokio::test]
async fn students_see_their_tutors_and_tutors_their_students() {
    let server = Server::start(&[]);
    let f = fixture(&server).await;
    let a = &server.addr;
    let r = http(a, "GET", "/api/users/available-tutors", Some(&f.student_token()), None, &[]).await;
    assert_eq!(r.status, 200);
    let tutors = r.body["tutors"].as_array().unwrap();
    assert_eq!(tutors.len(), 1);
    assert_eq!(tutors[0]["id"], f.tutor.as_str());
    assert_eq!(tutors[0]["name"], "Tess Tutor");
    assert_eq!(tutors[0]["online"], false);
    assert_eq!(tutors[0]["courses"], json!([{"id": f.course, "title": "Course"}]));
    let _online = Client::connect(a, &f.student_token()).await.unwrap();
    let r = http(a, "GET", "/api/tutors/students", Some(&f.tutor_token()), None, &[]).await;
    let students = r.body["students"].as_array().unwrap();
    assert_eq!(students.len(), 1);
    assert_eq!(students[0]["id"], f.student.as_str());
    assert_eq!(students[0]["online"], true);
    let nobody = token(&unique("s"), "user", 60);
    let r = http(a, "GET", "/api/users/available-tutors", Some(&nobody), None, &[]).await;
    assert_eq!(r.body["tutors"], json!([]));
}

#[tokio::test]
async fn blocks_are_listed_created_once_and_removed() {
    let server = Server::start(&[]);
    let a = &server.addr;
    let me = token("blocker", "user", 60);
    let r = http(a, "POST", "/api/blocks", Some(&me), Some(json!({"userId": "pest"})), &[]).await;
    assert_eq!(r.status, 201);
    assert_eq!(r.body["block"]["userId"], "pest");
    let created = r.body["block"]["createdAt"].clone();
    let r = http(a, "POST", "/api/blocks", Some(&me), Some(json!({"userId": "pest"})), &[]).await;
    assert_eq!((r.status, &r.body["block"]["createdAt"]), (200, &created));
    let r = http(a, "GET", "/api/blocks", Some(&me), None, &[]).await;
    assert_eq!(r.body["blocks"], json!([{"userId": "pest", "createdAt": created}]));
    assert_eq!(http(a, "DELETE", "/api/blocks/pest", Some(&me), None, &[]).await.status, 204);
    assert_eq!(http(a, "GET", "/api/blocks", Some(&me), None, &[]).await.body["blocks"], json!([]));
    let r = http(a, "POST", "/api/blocks", Some(&me), Some(json!({"userId": "blocker"})), &[]).await;
    assert_eq!((r.status, r.code()), (400, "invalid_payload"));
}

#[tokio::test]
async fn health_readiness_and_metrics_answer() {
    let server = Server::start(&[]);
    let a = &server.addr;
    assert_eq!(http(a, "GET", "/healthz", None, None, &[]).await.status, 200);
    let r = http(a, "GET", "/readyz", None, None, &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        (r.body["status"].as_str(), r.body["engine"].as_str(), r.body["store"].as_str()),
        (Some("ok"), Some("ok"), Some("ok"))
    );
    let f = fixture(&server).await;
    let mut s = Client::connect(a, &f.student_token()).await.unwrap();
    send(&mut s, &f.chat, "m", "hi").await;
    let r = http(a, "GET", "/metrics", None, None, &[]).await;
    let text = String::from_utf8(r.raw).unwrap();
    for name in [
        "coursechat_connections",
        "coursechat_events_in_total",
        "coursechat_send_ack_seconds",
        "coursechat_writebehind_queue_depth",
    ] {
        assert!(text.contains(name), "{name} missing from /metrics");
    }
}

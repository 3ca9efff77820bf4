//! Attachments: type checked on the bytes, the size limit while streaming, downloads for
//! participants or holders of a signed url, and messages that carry an attachment.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;

const PNG: &[u8] = &[
    0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 13, b'I', b'H', b'D', b'R', 0, 0, 0, 1, 0, 0, 0, 1, 8, 6,
    0, 0, 0, 0x1F, 0x15, 0xC4, 0x89,
];
const PDF: &[u8] = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n";
const ELF: &[u8] = &[0x7F, b'E', b'L', b'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0x3E, 0];

async fn upload(server: &Server, f: &Fixture, token: &str, body: &[u8], name: &str, mime: &str) -> HttpResponse {
    let path = format!("/api/chats/{}/attachments", f.chat);
    http_raw(&server.addr, "POST", &path, Some(token), body, &[("Content-Type", mime), ("X-File-Name", name)], false)
        .await
}

#[tokio::test]
async fn types_are_checked_on_the_bytes_not_the_labels() {
    let server = Server::start(&[]);
    let f = fixture(&server).await;
    let r = upload(&server, &f, &f.student_token(), PNG, "dot.png", "image/png").await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let a = &r.body["attachment"];
    assert_eq!(
        (a["mime"].as_str(), a["name"].as_str(), a["size"].as_u64()),
        (Some("image/png"), Some("dot.png"), Some(PNG.len() as u64))
    );
    assert_eq!(a["id"].as_str().unwrap().len(), 24);
    assert!(a["url"].as_str().unwrap().starts_with(&format!("/api/attachments/{}?exp=", a["id"].as_str().unwrap())));
    // A PNG renamed .pdf and labelled application/pdf is a PNG.
    let r = upload(&server, &f, &f.student_token(), PNG, "report.pdf", "application/pdf").await;
    assert_eq!((r.status, r.body["attachment"]["mime"].as_str()), (201, Some("image/png")));
    // An executable labelled image/png, and bytes of no known type, are refused.
    let r = upload(&server, &f, &f.student_token(), ELF, "cat.png", "image/png").await;
    assert_eq!((r.status, r.code()), (415, "unsupported_type"));
    let r = upload(&server, &f, &f.student_token(), &[0, 1, 2, 3, 4, 5], "x.bin", "image/png").await;
    assert_eq!((r.status, r.code()), (415, "unsupported_type"));
    let r = upload(&server, &f, &f.student_token(), b"plain notes\nline two\n", "notes.txt", "text/plain").await;
    assert_eq!((r.status, r.body["attachment"]["mime"].as_str()), (201, Some("text/plain")));
    // Only participants may upload into a chat.
    let other = fixture(&server).await;
    let r = upload(&server, &f, &other.student_token(), PNG, "dot.png", "image/png").await;
    assert_eq!((r.status, r.code()), (404, "not_found"));
}

#[tokio::test]
async fn the_size_limit_holds_for_declared_and_streamed_bodies() {
    let server = Server::start(&[("CHAT_MAX_ATTACHMENT_BYTES", "1000")]);
    let f = fixture(&server).await;
    let mut big = PDF.to_vec();
    big.resize(5000, b' ');
    let path = format!("/api/chats/{}/attachments", f.chat);
    let headers = [("Content-Type", "application/pdf"), ("X-File-Name", "big.pdf")];
    let r = http_raw(&server.addr, "POST", &path, Some(&f.student_token()), &big, &headers, false).await;
    assert_eq!((r.status, r.code()), (413, "too_large"), "by Content-Length");
    let r = http_raw(&server.addr, "POST", &path, Some(&f.student_token()), &big, &headers, true).await;
    assert_eq!((r.status, r.code()), (413, "too_large"), "by the bytes read");
    let r = http_raw(&server.addr, "POST", &path, Some(&f.student_token()), PDF, &headers, true).await;
    assert_eq!(r.status, 201, "a small chunked body is fine");
}

#[tokio::test]
async fn downloads_are_for_participants_or_a_valid_signed_url() {
    let server = Server::start(&[("CHAT_ATTACHMENT_URL_TTL", "2")]);
    let f = fixture(&server).await;
    let r = upload(&server, &f, &f.student_token(), PDF, "syllabus.pdf", "application/pdf").await;
    let a = r.body["attachment"].clone();
    let id = a["id"].as_str().unwrap();
    let url = a["url"].as_str().unwrap().to_owned();
    let get = |path: String, token: Option<String>| {
        let addr = server.addr.clone();
        async move { http(&addr, "GET", &path, token.as_deref(), None, &[]).await }
    };
    let by_tutor = get(format!("/api/attachments/{id}"), Some(f.tutor_token())).await;
    assert_eq!(by_tutor.status, 200);
    assert_eq!(by_tutor.raw, PDF);
    assert_eq!(by_tutor.header("content-type"), Some("application/pdf"));
    assert_eq!(by_tutor.header("x-content-type-options"), Some("nosniff"));
    assert!(by_tutor.header("content-disposition").unwrap().starts_with("attachment"));
    let outsider = fixture(&server).await;
    assert_eq!(get(format!("/api/attachments/{id}"), Some(outsider.student_token())).await.status, 404);
    assert_eq!(get(format!("/api/attachments/{id}"), None).await.status, 404);
    let signed = get(url.clone(), None).await;
    assert_eq!((signed.status, signed.raw.as_slice()), (200, PDF));
    let tampered = url.replace("sig=", "sig=0");
    assert_eq!(get(tampered, None).await.status, 404);
    let other_id = url.replacen(id, &"0".repeat(24), 1);
    assert_eq!(get(other_id, None).await.status, 404);
    tokio::time::sleep(Duration::from_millis(3100)).await;
    assert_eq!(get(url, None).await.status, 404, "expired");
}

#[tokio::test]
async fn a_message_with_an_attachment_reaches_the_other_side_with_a_working_url() {
    let server = Server::start(&[]);
    let f = fixture(&server).await;
    let mut s = Client::connect(&server.addr, &f.student_token()).await.unwrap();
    let mut t = Client::connect(&server.addr, &f.tutor_token()).await.unwrap();
    let r = upload(&server, &f, &f.student_token(), PNG, "dot.png", "image/png").await;
    let id = r.body["attachment"]["id"].as_str().unwrap().to_owned();
    // A text message cannot carry it, the tutor cannot send the student's upload, a caption is optional.
    let bad =
        s.call("send_message", json!({"chatId": f.chat, "clientMsgId": "t", "content": "x", "attachmentId": id})).await;
    assert_eq!(bad["error"]["code"], "invalid_payload");
    let theirs = t
        .call(
            "send_message",
            json!({"chatId": f.chat, "clientMsgId": "x", "content": "", "type": "image", "attachmentId": id}),
        )
        .await;
    assert_eq!(theirs["error"]["code"], "invalid_payload");
    let ack = s
        .call(
            "send_message",
            json!({"chatId": f.chat, "clientMsgId": "i", "content": "", "type": "image", "attachmentId": id}),
        )
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    assert_eq!(ack["message"]["type"], "image");
    let got = t.event("message_received", Duration::from_secs(3)).await.unwrap();
    let attachment = &got["message"]["attachment"];
    assert_eq!((attachment["id"].as_str(), attachment["mime"].as_str()), (Some(id.as_str()), Some("image/png")));
    let url = attachment["url"].as_str().unwrap();
    let image = http(&server.addr, "GET", url, None, None, &[]).await;
    assert_eq!((image.status, image.raw.as_slice()), (200, PNG));
    assert!(image.header("content-disposition").unwrap().starts_with("inline"));
    // History carries a freshly signed url too.
    let page =
        http(&server.addr, "GET", &format!("/api/chats/{}/messages", f.chat), Some(&f.tutor_token()), None, &[]).await;
    let from_history = page.body["messages"][0]["attachment"]["url"].as_str().unwrap().to_owned();
    assert_eq!(http(&server.addr, "GET", &from_history, None, None, &[]).await.status, 200);
    // An attachment of another chat cannot be sent here.
    let other = fixture(&server).await;
    let elsewhere = upload(&server, &other, &other.student_token(), PNG, "dot.png", "image/png").await;
    let mut o = Client::connect(&server.addr, &other.student_token()).await.unwrap();
    let other_id = elsewhere.body["attachment"]["id"].as_str().unwrap();
    let cross = o
        .call("send_message", json!({"chatId": other.chat, "clientMsgId": "c", "type": "file", "attachmentId": id}))
        .await;
    assert_eq!(cross["error"]["code"], "invalid_payload");
    let own = o
        .call(
            "send_message",
            json!({"chatId": other.chat, "clientMsgId": "d", "type": "file", "attachmentId": other_id}),
        )
        .await;
    assert_eq!(own["ok"], true);
}

//! Creates the run's users, courses, enrollments and chats, through the contract only: the admin
//! API for platform data, then each student's own `POST /api/chats` for its chat. Nothing here
//! knows how a particular server stores anything, so the generator drives any implementation.
//!
//! Every step is idempotent (PUTs, and `POST /api/chats` answers 200 with the existing chat), so a
//! repeated run with the same prefix and shard reuses the same fixtures.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use hyper::{Method, StatusCode};
use serde::{Deserialize, Serialize};

use crate::plan::Plan;
use crate::rest::{Answer, Call, Rest, RestError};
use crate::token::Role;

/// The tokens of every participant, minted once.
pub struct Tokens {
    pub admin: Arc<str>,
    pub students: Vec<Arc<str>>,
    pub tutors: Vec<Arc<str>>,
}

/// What the sockets need from setup, and what the summary reports about it.
pub struct Fixtures {
    /// Chat id of each student, by student index.
    pub chat_ids: Vec<String>,
    pub chats_created: usize,
    pub chats_existing: usize,
    /// Answers that worked but differ from the contract (e.g. 201 where it says 200), one line each.
    pub deviations: BTreeSet<String>,
    pub seconds: f64,
}

#[derive(Debug)]
pub enum FixtureError {
    Rest(RestError),
    /// The server refused a fixture call; the run cannot go on without it.
    Refused {
        call: String,
        status: StatusCode,
        code: String,
        body: String,
    },
    /// A 2xx answer whose body is not what the contract promises.
    BadBody {
        call: String,
        body: String,
    },
}

impl fmt::Display for FixtureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FixtureError::Rest(e) => write!(f, "{e}"),
            FixtureError::Refused { call, status, code, body } => {
                write!(f, "{call} answered {status} {code}: {body}")
            }
            FixtureError::BadBody { call, body } => write!(f, "{call}: unexpected body {body}"),
        }
    }
}

impl std::error::Error for FixtureError {}

impl From<RestError> for FixtureError {
    fn from(e: RestError) -> Self {
        FixtureError::Rest(e)
    }
}

pub fn student_name(plan: &Plan, i: usize) -> String {
    format!("Load Student {}-{i}", plan.shard)
}

pub fn tutor_name(plan: &Plan, t: usize) -> String {
    format!("Load Tutor {}-{t}", plan.shard)
}

#[derive(Serialize)]
struct UserBody<'a> {
    name: &'a str,
    role: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CourseBody<'a> {
    title: &'a str,
    tutor_ids: [&'a str; 1],
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EnrollmentBody<'a> {
    user_id: &'a str,
    course_id: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CreateChatBody<'a> {
    participant_id: &'a str,
    course_id: &'a str,
}

#[derive(Deserialize)]
struct ChatEnvelope {
    chat: ChatId,
}

#[derive(Deserialize)]
struct ChatId {
    id: String,
}

fn json<T: Serialize>(value: &T) -> Option<Vec<u8>> {
    // Serializing these plain structs cannot fail.
    serde_json::to_vec(value).ok()
}

pub async fn set_up(rest: &Rest, plan: &Plan, tokens: &Tokens, concurrency: usize) -> Result<Fixtures, FixtureError> {
    let started = Instant::now();
    let mut deviations = BTreeSet::new();
    let admin = &tokens.admin;

    let user = |id: String, name: String, role: Role| Call {
        method: Method::PUT,
        path: format!("/api/admin/users/{id}"),
        token: admin.clone(),
        body: json(&UserBody { name: &name, role: role.as_str() }),
    };
    let mut users = Vec::with_capacity(plan.sockets());
    for t in 0..plan.tutors() {
        users.push(user(plan.tutor_id(t), tutor_name(plan, t), Role::Tutor));
    }
    for i in 0..plan.students {
        users.push(user(plan.student_id(i), student_name(plan, i), Role::User));
    }
    let users = Arc::new(users);
    let answers = rest.send_all(&users, concurrency).await?;
    check_all("PUT /api/admin/users/:id", &users, &answers, &[StatusCode::OK], &mut deviations)?;

    let courses: Arc<Vec<Call>> = (0..plan.tutors())
        .map(|t| {
            let title = format!("Load course {}-{t}", plan.shard);
            let tutor = plan.tutor_id(t);
            Call {
                method: Method::PUT,
                path: format!("/api/admin/courses/{}", plan.course_id(t)),
                token: admin.clone(),
                body: json(&CourseBody { title: &title, tutor_ids: [&tutor] }),
            }
        })
        .collect::<Vec<_>>()
        .into();
    let answers = rest.send_all(&courses, concurrency).await?;
    check_all("PUT /api/admin/courses/:id", &courses, &answers, &[StatusCode::OK], &mut deviations)?;

    let enrollments: Arc<Vec<Call>> = (0..plan.students)
        .map(|i| Call {
            method: Method::PUT,
            path: "/api/admin/enrollments".to_string(),
            token: admin.clone(),
            body: json(&EnrollmentBody { user_id: &plan.student_id(i), course_id: &plan.course_id(plan.tutor_of(i)) }),
        })
        .collect::<Vec<_>>()
        .into();
    let answers = rest.send_all(&enrollments, concurrency).await?;
    check_all("PUT /api/admin/enrollments", &enrollments, &answers, &[StatusCode::OK], &mut deviations)?;

    let chats: Arc<Vec<Call>> = (0..plan.students)
        .map(|i| {
            let t = plan.tutor_of(i);
            Call {
                method: Method::POST,
                path: "/api/chats".to_string(),
                token: tokens.students[i].clone(),
                body: json(&CreateChatBody { participant_id: &plan.tutor_id(t), course_id: &plan.course_id(t) }),
            }
        })
        .collect::<Vec<_>>()
        .into();
    let answers = rest.send_all(&chats, concurrency).await?;
    check_all("POST /api/chats", &chats, &answers, &[StatusCode::CREATED, StatusCode::OK], &mut deviations)?;
    let mut chat_ids = Vec::with_capacity(plan.students);
    let (mut created, mut existing) = (0, 0);
    for (call, answer) in chats.iter().zip(&answers) {
        let envelope: ChatEnvelope = serde_json::from_slice(&answer.body)
            .map_err(|_| FixtureError::BadBody { call: describe(call), body: snippet(&answer.body) })?;
        if !is_object_id(&envelope.chat.id) {
            deviations.insert(format!(
                "POST /api/chats: chat id {:?} is not a 24-char lowercase hex ObjectId",
                envelope.chat.id
            ));
        }
        match answer.status {
            StatusCode::CREATED => created += 1,
            _ => existing += 1,
        }
        chat_ids.push(envelope.chat.id);
    }

    Ok(Fixtures {
        chat_ids,
        chats_created: created,
        chats_existing: existing,
        deviations,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Fails on the first non-2xx answer; notes 2xx answers the contract does not name.
fn check_all(
    step: &str,
    calls: &[Call],
    answers: &[Answer],
    expected: &[StatusCode],
    deviations: &mut BTreeSet<String>,
) -> Result<(), FixtureError> {
    for (call, answer) in calls.iter().zip(answers) {
        if !answer.status.is_success() {
            return Err(FixtureError::Refused {
                call: describe(call),
                status: answer.status,
                code: answer.error_code().unwrap_or_else(|| "-".into()),
                body: snippet(&answer.body),
            });
        }
        if !expected.contains(&answer.status) {
            deviations.insert(format!(
                "{step} answered {} (contract: {})",
                answer.status,
                expected.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" or ")
            ));
        }
    }
    Ok(())
}

fn describe(call: &Call) -> String {
    format!("{} {}", call.method, call.path)
}

fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut out: String = text.chars().take(300).collect();
    if text.chars().count() > 300 {
        out.push('…');
    }
    out
}

fn is_object_id(id: &str) -> bool {
    id.len() == 24 && id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_object_ids() {
        assert!(is_object_id("65f0c0ffee0123456789abcd"));
        assert!(!is_object_id("65F0C0FFEE0123456789ABCD"));
        assert!(!is_object_id("65f0c0ffee0123456789abc"));
        assert!(!is_object_id("zzf0c0ffee0123456789abcd"));
    }

    #[test]
    fn fixture_bodies_use_the_contract_field_names() {
        let course = json(&CourseBody { title: "T", tutor_ids: ["t0"] }).unwrap();
        assert_eq!(course, br#"{"title":"T","tutorIds":["t0"]}"#);
        let enrollment = json(&EnrollmentBody { user_id: "s0", course_id: "c0" }).unwrap();
        assert_eq!(enrollment, br#"{"userId":"s0","courseId":"c0"}"#);
        let chat = json(&CreateChatBody { participant_id: "t0", course_id: "c0" }).unwrap();
        assert_eq!(chat, br#"{"participantId":"t0","courseId":"c0"}"#);
    }
}

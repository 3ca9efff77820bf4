//! `--demo`: a course, its tutor, two enrolled students and one student without the course,
//! a development secret kept in the data dir (so tokens survive a restart), and the data behind
//! `GET /api/dev/users` and `POST /api/dev/token`.

use std::path::Path;
use std::time::Duration;

use crate::config::ServeConfig;

use crate::model::ids::new_object_id;
use crate::model::time::Timestamp;
use crate::model::{Chat, Course, Enrollment, Role, User};
use crate::store::{Store, StoreResult};

pub const COURSE_ID: &str = "rust-101";
pub const COURSE_TITLE: &str = "Rust from Zero";
pub const TUTOR_ID: &str = "tutor-ada";
pub const ENROLLED: [&str; 2] = ["student-bob", "student-carol"];
pub const NOT_ENROLLED: &str = "student-dave";
/// Development tokens last a day.
pub const TOKEN_TTL_SECS: u64 = 24 * 3600;

pub fn users() -> Vec<User> {
    let user = |id: &str, name: &str, role| User { id: id.into(), name: name.into(), role };
    vec![
        user(TUTOR_ID, "Ada Lovelace", Role::Tutor),
        user(ENROLLED[0], "Bob Stone", Role::User),
        user(ENROLLED[1], "Carol Reyes", Role::User),
        user(NOT_ENROLLED, "Dave Kim", Role::User),
    ]
}

/// The development secret: read from the data dir, or made and kept there.
pub fn secret(data_dir: &Path) -> std::io::Result<Vec<u8>> {
    let path = data_dir.join("demo-jwt-secret");
    if let Ok(existing) = std::fs::read_to_string(&path) {
        if existing.trim().len() >= 32 {
            return Ok(existing.trim().as_bytes().to_vec());
        }
    }
    std::fs::create_dir_all(data_dir)?;
    let secret: String = (0..4).map(|_| format!("{:016x}", rand::random::<u64>())).collect();
    std::fs::write(&path, &secret)?;
    Ok(secret.into_bytes())
}

/// The demo's JWT secret, when `--demo` runs without a configured key: kept in the data dir, or
/// with the Redis engine in Redis, so that every node of the deployment shares it.
pub async fn shared_secret(config: &ServeConfig) -> Result<Option<Vec<u8>>, String> {
    let configured = config.jwt_public_key.is_some() || config.jwt_secret.as_ref().is_some_and(|s| !s.is_empty());
    if !config.demo || configured {
        return Ok(None);
    }
    let secret = match &config.redis_url {
        Some(url) => {
            let key = format!("{}demo-jwt-secret", config.redis.redis_prefix);
            let fresh: String = (0..4).map(|_| format!("{:016x}", rand::random::<u64>())).collect();
            let shared = async {
                let client = ::redis::Client::open(url.as_str())?;
                let mut conn = client.get_multiplexed_async_connection().await?;
                ::redis::cmd("SET").arg(&key).arg(&fresh).arg("NX").query_async::<()>(&mut conn).await?;
                ::redis::cmd("GET").arg(&key).query_async::<String>(&mut conn).await
            };
            tokio::time::timeout(Duration::from_secs(5), shared)
                .await
                .map_err(|_| "CHAT_REDIS_URL: no answer in time".to_owned())?
                .map_err(|e| format!("CHAT_REDIS_URL: demo secret: {e}"))?
                .into_bytes()
        }
        None => secret(&config.data_dir).map_err(|e| format!("demo secret: {e}"))?,
    };
    Ok(Some(secret))
}

/// Seeds the demo data (idempotent). Dave once had the course: his chat with the tutor exists,
/// but his enrollment is gone, which is what the web client's upgrade prompt is for.
pub async fn seed(store: &dyn Store) -> StoreResult<()> {
    for user in users() {
        store.put_user(&user).await?;
    }
    store
        .put_course(&Course { id: COURSE_ID.into(), title: COURSE_TITLE.into(), tutor_ids: vec![TUTOR_ID.into()] })
        .await?;
    let now = Timestamp::now();
    for student in ENROLLED {
        store
            .put_enrollment(&Enrollment { user_id: student.into(), course_id: COURSE_ID.into(), purchased_at: now })
            .await?;
    }
    let chat = Chat {
        id: new_object_id(),
        course_id: COURSE_ID.into(),
        student_id: NOT_ENROLLED.into(),
        tutor_id: TUTOR_ID.into(),
        created_at: now,
        updated_at: now,
        last_message: None,
        last_seq: 0,
    };
    store.create_chat(&chat).await?;
    store.delete_enrollment(NOT_ENROLLED, COURSE_ID).await?;
    Ok(())
}

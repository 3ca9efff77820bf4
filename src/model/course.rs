//! Courses, their tutors, and the enrollments (purchases) that let a student chat with them.

use serde::{Deserialize, Serialize};

use super::time::Timestamp;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Course {
    pub id: String,
    pub title: String,
    pub tutor_ids: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Enrollment {
    pub user_id: String,
    pub course_id: String,
    pub purchased_at: Timestamp,
}

//! The admin API: the platform keeps users, courses and enrollments current (role `admin`).

use hyper::StatusCode;
use serde::{Deserialize, Serialize};

use super::{json, no_content, ApiResult, Ctx};
use crate::model::{Course, Enrollment, Role, User};

#[derive(Deserialize)]
struct UserBody {
    name: String,
    role: Role,
}

#[derive(Serialize)]
struct OneUser {
    user: User,
}

pub async fn put_user(ctx: &mut Ctx, id: &str) -> ApiResult {
    let caller = ctx.caller().await?;
    ctx.target(id);
    let body: UserBody = ctx.json().await?;
    let user =
        ctx.node.chat.admin_put_user(&caller, User { id: id.to_owned(), name: body.name, role: body.role }).await?;
    json(StatusCode::OK, &OneUser { user })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CourseBody {
    title: String,
    #[serde(default)]
    tutor_ids: Vec<String>,
}

#[derive(Serialize)]
struct OneCourse {
    course: Course,
}

pub async fn put_course(ctx: &mut Ctx, id: &str) -> ApiResult {
    let caller = ctx.caller().await?;
    ctx.target(id);
    let body: CourseBody = ctx.json().await?;
    let course = Course { id: id.to_owned(), title: body.title, tutor_ids: body.tutor_ids };
    let course = ctx.node.chat.admin_put_course(&caller, course).await?;
    json(StatusCode::OK, &OneCourse { course })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EnrollmentBody {
    user_id: String,
    course_id: String,
}

#[derive(Serialize)]
struct OneEnrollment {
    enrollment: Enrollment,
}

pub async fn put_enrollment(ctx: &mut Ctx) -> ApiResult {
    let caller = ctx.caller().await?;
    let body: EnrollmentBody = ctx.json().await?;
    ctx.target(&format!("{}/{}", body.user_id, body.course_id));
    let enrollment = ctx.node.chat.admin_put_enrollment(&caller, &body.user_id, &body.course_id).await?;
    json(StatusCode::OK, &OneEnrollment { enrollment })
}

pub async fn delete_enrollment(ctx: &mut Ctx, user_id: &str, course_id: &str) -> ApiResult {
    let caller = ctx.caller().await?;
    ctx.target(&format!("{user_id}/{course_id}"));
    ctx.node.chat.admin_delete_enrollment(&caller, user_id, course_id).await?;
    no_content()
}

//! The platform's admin API: users, courses and enrollments pushed in by an admin token; each
//! change invalidates the cached answer on every node.

use crate::auth::Caller;
use crate::engine::Invalidation;
use crate::model::ids::is_valid_user_id;
use crate::model::{Course, Enrollment, Role, Timestamp, User};

use super::{ChatError, ChatResult, ChatService};

impl ChatService {
    pub(super) fn require_admin(caller: &Caller) -> ChatResult<()> {
        if caller.role != Role::Admin {
            return Err(ChatError::Forbidden("the admin API needs an admin token".into()));
        }
        Ok(())
    }

    pub async fn admin_put_user(&self, caller: &Caller, user: User) -> ChatResult<User> {
        Self::require_admin(caller)?;
        if !is_valid_user_id(&user.id) {
            return Err(ChatError::InvalidPayload("invalid user id".into()));
        }
        check_name(&user.name)?;
        self.store.put_user(&user).await?;
        Ok(user)
    }

    pub async fn admin_put_course(&self, caller: &Caller, course: Course) -> ChatResult<Course> {
        Self::require_admin(caller)?;
        if !is_valid_user_id(&course.id) {
            return Err(ChatError::InvalidPayload("invalid course id".into()));
        }
        check_name(&course.title)?;
        if let Some(bad) = course.tutor_ids.iter().find(|t| !is_valid_user_id(t)) {
            return Err(ChatError::InvalidPayload(format!("invalid tutor id {bad:?}")));
        }
        self.store.put_course(&course).await?;
        self.engine.directory.invalidate(Invalidation::Course(course.id.clone())).await?;
        Ok(course)
    }

    pub async fn admin_put_enrollment(
        &self,
        caller: &Caller,
        user_id: &str,
        course_id: &str,
    ) -> ChatResult<Enrollment> {
        Self::require_admin(caller)?;
        if !is_valid_user_id(user_id) || !is_valid_user_id(course_id) {
            return Err(ChatError::InvalidPayload("userId and courseId must be valid ids".into()));
        }
        let enrollment =
            Enrollment { user_id: user_id.to_owned(), course_id: course_id.to_owned(), purchased_at: Timestamp::now() };
        let stored = self.store.put_enrollment(&enrollment).await?;
        let change = Invalidation::Enrollment { user: user_id.to_owned(), course: course_id.to_owned() };
        self.engine.directory.invalidate(change).await?;
        Ok(stored)
    }

    pub async fn admin_delete_enrollment(&self, caller: &Caller, user_id: &str, course_id: &str) -> ChatResult<()> {
        Self::require_admin(caller)?;
        self.store.delete_enrollment(user_id, course_id).await?;
        let change = Invalidation::Enrollment { user: user_id.to_owned(), course: course_id.to_owned() };
        self.engine.directory.invalidate(change).await?;
        Ok(())
    }
}

pub(super) fn check_name(name: &str) -> ChatResult<()> {
    let len = name.trim().chars().count();
    if len == 0 || len > 200 || name.chars().any(char::is_control) {
        return Err(ChatError::InvalidPayload("names and titles are 1..200 characters of text".into()));
    }
    Ok(())
}

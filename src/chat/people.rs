//! People: recording a caller as their token describes them, and the contacts a caller can chat
//! with (a student's tutors, a tutor's students) with their presence.

use std::collections::BTreeMap;

use crate::auth::Caller;
use crate::model::User;

use super::chats::course_ref;
use super::views::{Contact, CourseRef};
use super::{ChatResult, ChatService};

impl ChatService {
    /// Records the caller as the token describes them: the token is authoritative for id and
    /// role, and its `name`, when given, updates the user record.
    pub async fn sign_in(&self, caller: &Caller) -> ChatResult<()> {
        let existing = self.store.user(&caller.user_id).await?;
        let name = caller
            .name
            .clone()
            .or_else(|| existing.as_ref().map(|u| u.name.clone()))
            .unwrap_or_else(|| caller.user_id.clone());
        let wanted = User { id: caller.user_id.clone(), name, role: caller.role };
        if existing.as_ref() != Some(&wanted) {
            self.store.put_user(&wanted).await?;
        }
        Ok(())
    }

    /// The tutors of the courses the caller purchased.
    pub async fn available_tutors(&self, caller: &Caller) -> ChatResult<Vec<Contact>> {
        let mut by_tutor: BTreeMap<String, Vec<CourseRef>> = BTreeMap::new();
        for enrollment in self.store.enrollments_by_user(&caller.user_id).await? {
            if let Some(course) = self.store.course(&enrollment.course_id).await? {
                for tutor in &course.tutor_ids {
                    by_tutor.entry(tutor.clone()).or_default().push(course_ref(&course));
                }
            }
        }
        self.contacts(by_tutor).await
    }

    /// The students enrolled in the caller's courses.
    pub async fn students(&self, caller: &Caller) -> ChatResult<Vec<Contact>> {
        let mut by_student: BTreeMap<String, Vec<CourseRef>> = BTreeMap::new();
        for course in self.store.courses_by_tutor(&caller.user_id).await? {
            for enrollment in self.store.enrollments_by_course(&course.id).await? {
                by_student.entry(enrollment.user_id).or_default().push(course_ref(&course));
            }
        }
        self.contacts(by_student).await
    }

    pub(super) async fn contacts(&self, people: BTreeMap<String, Vec<CourseRef>>) -> ChatResult<Vec<Contact>> {
        let ids: Vec<String> = people.keys().cloned().collect();
        let online = self.engine.presence.online(&ids).await?;
        let mut out = Vec::with_capacity(ids.len());
        for ((id, courses), online) in people.into_iter().zip(online) {
            let name = self.store.user(&id).await?.map_or_else(|| id.clone(), |u| u.name);
            out.push(Contact { id, name, online, courses });
        }
        Ok(out)
    }
}

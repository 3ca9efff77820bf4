//! Attachments: the checks before an upload's body is read, storing it once its type is sniffed
//! from the bytes, downloads for participants or by signed url, and the attachment a message may
//! carry.

use crate::auth::Caller;
use crate::model::ids::{is_object_id, new_object_id};
use crate::model::{Attachment, Chat, MessageType, StoredAttachment, Timestamp};

use super::{ChatError, ChatResult, ChatService};

impl ChatService {
    /// The checks before an upload's body is read: the caller may send in this chat.
    pub async fn check_upload(&self, caller: &Caller, chat_id: &str) -> ChatResult<Chat> {
        let chat = self.participant_chat_cached(caller, chat_id).await?;
        self.check_access(&chat.student_id, &chat.tutor_id, &chat.course_id).await?;
        Ok(chat)
    }

    /// Stores an uploaded attachment after checking its type on the bytes.
    pub async fn store_attachment(
        &self,
        caller: &Caller,
        chat: &Chat,
        name: &str,
        bytes: Vec<u8>,
    ) -> ChatResult<Attachment> {
        if bytes.is_empty() {
            return Err(ChatError::InvalidPayload("the attachment is empty".into()));
        }
        if bytes.len() > self.limits.max_attachment_bytes {
            return Err(ChatError::TooLarge(format!(
                "attachments are at most {} bytes",
                self.limits.max_attachment_bytes
            )));
        }
        let mime = match crate::attachments::sniff(&bytes) {
            Some(m) if self.limits.attachment_types.iter().any(|t| t == m) => m,
            Some(m) => return Err(ChatError::UnsupportedType(format!("{m} is not an allowed attachment type"))),
            None => {
                return Err(ChatError::UnsupportedType("the attachment's type could not be told from its bytes".into()))
            }
        };
        let stored = StoredAttachment {
            id: new_object_id(),
            chat_id: chat.id.clone(),
            uploader_id: caller.user_id.clone(),
            name: clean_file_name(name),
            size: bytes.len() as u64,
            mime: mime.to_owned(),
            created_at: Timestamp::now(),
        };
        self.store.put_attachment(&stored, bytes).await?;
        Ok(Attachment {
            url: self.signer.url(&stored.id),
            id: stored.id,
            name: stored.name,
            size: stored.size,
            mime: stored.mime,
        })
    }

    /// An attachment's record and bytes for a download: by a signed url (`signed` true), or by a
    /// caller who takes part in its chat. `None` (404) otherwise.
    pub async fn attachment_for(
        &self,
        id: &str,
        caller: Option<&Caller>,
    ) -> ChatResult<Option<(StoredAttachment, Vec<u8>)>> {
        if !is_object_id(id) {
            return Ok(None);
        }
        let Some(record) = self.store.attachment(id).await? else { return Ok(None) };
        if let Some(caller) = caller {
            let chat = self.store.chat(&record.chat_id).await?;
            if !chat.is_some_and(|c| c.is_participant(&caller.user_id)) {
                return Ok(None);
            }
        }
        Ok(self.store.attachment_bytes(id).await?.map(|bytes| (record, bytes)))
    }

    /// The attachment a message may carry: uploaded to this chat by this sender. Stored without
    /// a url; urls are signed when the message is shown.
    pub(super) async fn own_attachment(
        &self,
        caller: &Caller,
        chat: &Chat,
        id: &str,
        kind: MessageType,
    ) -> ChatResult<Attachment> {
        let stored = if is_object_id(id) { self.store.attachment(id).await? } else { None };
        let stored = stored.filter(|a| a.chat_id == chat.id && a.uploader_id == caller.user_id).ok_or_else(|| {
            ChatError::InvalidPayload("attachmentId must name an attachment you uploaded to this chat".into())
        })?;
        if kind == MessageType::Image && !crate::attachments::is_image(&stored.mime) {
            return Err(ChatError::InvalidPayload(format!("an image message needs an image, not {}", stored.mime)));
        }
        Ok(Attachment { id: stored.id, name: stored.name, size: stored.size, mime: stored.mime, url: String::new() })
    }
}

/// A file name safe to store and show: no path, no control characters, at most 200 chars.
pub(super) fn clean_file_name(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or("");
    let clean: String = base.chars().filter(|c| !c.is_control() && *c != '"').take(200).collect();
    let clean = clean.trim();
    if clean.is_empty() || clean == "." || clean == ".." {
        "attachment".to_owned()
    } else {
        clean.to_owned()
    }
}

//! The key and channel layout of the Redis engine (docs/REDIS.md has the table).
//!
//! Every key starts with the deployment's prefix (`CHAT_REDIS_PREFIX`). Keys of one chat, and of
//! one user, carry the hash tag `{s<shard>}` of the shard their id hashes to, and the durable
//! queue stream of that shard carries the same tag: a send touches one hash slot, so the layout
//! works on Redis Cluster, where each Lua script must stay within one slot.

/// Builds every key and channel name of one deployment.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
    shards: u32,
}

/// FNV-1a, 32 bits: stable across builds and platforms, unlike the std hasher.
fn fnv1a(text: &str) -> u32 {
    text.bytes().fold(0x811c_9dc5u32, |hash, b| (hash ^ u32::from(b)).wrapping_mul(0x0100_0193))
}

impl Keys {
    pub fn new(prefix: &str, shards: u32) -> Self {
        Keys { prefix: prefix.to_owned(), shards: shards.max(1) }
    }

    pub fn shards(&self) -> u32 {
        self.shards
    }

    /// The shard an id (chat or user) belongs to.
    pub fn shard_of(&self, id: &str) -> u32 {
        fnv1a(id) % self.shards
    }

    fn tagged(&self, shard: u32, rest: &str) -> String {
        format!("{}{{s{shard}}}:{rest}", self.prefix)
    }

    fn of_chat(&self, chat: &str, rest: &str) -> String {
        self.tagged(self.shard_of(chat), rest)
    }

    fn of_user(&self, user: &str, rest: &str) -> String {
        self.tagged(self.shard_of(user), rest)
    }

    // ---- messages (shard of the chat) ----------------------------------------------------------

    /// The durable write-behind queue of a shard: a stream read by the `writers` group.
    pub fn stream(&self, shard: u32) -> String {
        self.tagged(shard, "q")
    }

    pub fn stream_of_chat(&self, chat: &str) -> String {
        self.stream(self.shard_of(chat))
    }

    /// The chat's last seq (INCR).
    pub fn seq(&self, chat: &str) -> String {
        self.of_chat(chat, &format!("seq:{chat}"))
    }

    /// The seq of the message a (sender, clientMsgId) produced, for the idempotency window.
    pub fn idempotency(&self, chat: &str, sender: &str, client_msg_id: &str) -> String {
        self.of_chat(chat, &format!("idem:{chat}:{sender}:{client_msg_id}"))
    }

    /// The chat's log: a stream whose entry ids are `<seq>-0`, holding every acked message the
    /// store has not confirmed and at least the last N it has.
    pub fn log(&self, chat: &str) -> String {
        self.of_chat(chat, &format!("log:{chat}"))
    }

    /// The seqs of the chat's acked messages the store has not confirmed yet (sorted set, seq
    /// → seq); the messages themselves are in its log.
    pub fn pending(&self, chat: &str) -> String {
        self.of_chat(chat, &format!("pending:{chat}"))
    }

    /// A sender's message allowance (GCRA), kept in the chat's slot so that the send script
    /// touches one slot: shared by all of the user's sockets and nodes for chats of that shard.
    pub fn send_rate(&self, chat: &str, user: &str) -> String {
        self.of_chat(chat, &format!("rate:{user}"))
    }

    // ---- typing (shard of the chat) ------------------------------------------------------------

    pub fn typing(&self, chat: &str, user: &str) -> String {
        self.of_chat(chat, &format!("typing:{chat}:{user}"))
    }

    /// Typing deadlines of a shard (sorted set of `chat\nuser`, score = deadline ms).
    pub fn typing_due(&self, shard: u32) -> String {
        self.tagged(shard, "typing-due")
    }

    /// The socket that started each typing state of a shard (hash `chat\nuser` → socket id).
    pub fn typing_origin(&self, shard: u32) -> String {
        self.tagged(shard, "typing-origin")
    }

    // ---- presence (shard of the user) ------------------------------------------------------------

    /// Sockets of a user per node (hash node → count); absent when the user has none.
    pub fn presence(&self, user: &str) -> String {
        self.of_user(user, &format!("presence:{user}"))
    }

    /// The presence key of a shard without the user, for scripts that walk a shard's users.
    pub fn presence_prefix(&self, shard: u32) -> String {
        self.tagged(shard, "presence:")
    }

    /// Users in their grace period (sorted set, score = when they go offline, ms).
    pub fn leaving(&self, shard: u32) -> String {
        self.tagged(shard, "leaving")
    }

    /// When each leaving user's last socket closed (hash user → ms).
    pub fn last_seen(&self, shard: u32) -> String {
        self.tagged(shard, "last-seen")
    }

    /// The users of a shard with sockets on a node, for cleaning up after a dead node.
    pub fn node_users(&self, shard: u32, node: &str) -> String {
        self.tagged(shard, &format!("node-users:{node}"))
    }

    /// Live nodes (sorted set node → last heartbeat, ms).
    pub fn nodes(&self) -> String {
        format!("{}{{nodes}}:alive", self.prefix)
    }

    // ---- the directory cache (shard of the user / id) -------------------------------------------

    pub fn dir_chat(&self, chat: &str) -> String {
        self.of_chat(chat, &format!("dir:chat:{chat}"))
    }

    pub fn dir_course(&self, course: &str) -> String {
        self.of_user(course, &format!("dir:course:{course}"))
    }

    pub fn dir_enrolled(&self, user: &str, course: &str) -> String {
        self.of_user(user, &format!("dir:enrolled:{user}:{course}"))
    }

    pub fn dir_blocked(&self, blocker: &str, blocked: &str) -> String {
        self.of_user(blocker, &format!("dir:blocked:{blocker}:{blocked}"))
    }

    // ---- pub/sub channels --------------------------------------------------------------------------

    /// Events for every socket of one user (message_received, message_read, presence).
    pub fn user_channel(&self, user: &str) -> String {
        format!("{}u:{user}", self.prefix)
    }

    /// Events for the sockets that joined one chat (typing_indicator).
    pub fn room_channel(&self, chat: &str) -> String {
        format!("{}c:{chat}", self.prefix)
    }

    /// Cache invalidations, for every node.
    pub fn invalidation_channel(&self) -> String {
        format!("{}inv", self.prefix)
    }

    /// What a channel is about, from its name.
    pub fn parse_channel<'a>(&self, channel: &'a str) -> Option<Channel<'a>> {
        let rest = channel.strip_prefix(self.prefix.as_str())?;
        if let Some(user) = rest.strip_prefix("u:") {
            Some(Channel::User(user))
        } else if let Some(chat) = rest.strip_prefix("c:") {
            Some(Channel::Room(chat))
        } else if rest == "inv" {
            Some(Channel::Invalidation)
        } else {
            None
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum Channel<'a> {
    User(&'a str),
    Room(&'a str),
    Invalidation,
}

/// The hash tag of a key: what Redis Cluster hashes to pick the slot.
#[cfg(test)]
fn hash_tag(key: &str) -> &str {
    match (key.find('{'), key.find('}')) {
        (Some(open), Some(close)) if close > open + 1 => &key[open + 1..close],
        _ => key,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chats_keys_and_its_stream_share_one_slot() {
        let keys = Keys::new("cc:", 16);
        let chat = "65f0c0ffee0000000000abcd";
        let tag = hash_tag(&keys.stream_of_chat(chat)).to_owned();
        for key in [
            keys.seq(chat),
            keys.idempotency(chat, "u1", "m1"),
            keys.log(chat),
            keys.pending(chat),
            keys.send_rate(chat, "u1"),
            keys.typing(chat, "u1"),
            keys.typing_due(keys.shard_of(chat)),
        ] {
            assert_eq!(hash_tag(&key), tag, "{key}");
            assert!(key.starts_with("cc:"));
        }
    }

    #[test]
    fn a_users_presence_keys_share_one_slot() {
        let keys = Keys::new("cc:", 16);
        let shard = keys.shard_of("student-1");
        let tag = hash_tag(&keys.presence("student-1")).to_owned();
        for key in [keys.leaving(shard), keys.last_seen(shard), keys.node_users(shard, "n1")] {
            assert_eq!(hash_tag(&key), tag, "{key}");
        }
        assert!(keys.presence("student-1").starts_with(&keys.presence_prefix(shard)));
    }

    #[test]
    fn shards_are_stable_and_spread() {
        let keys = Keys::new("", 16);
        assert_eq!(keys.shard_of("abc"), fnv1a("abc") % 16);
        assert_eq!(fnv1a("a"), 0xe40c_292c, "FNV-1a reference value");
        let used: std::collections::HashSet<u32> = (0..200).map(|i| keys.shard_of(&format!("chat{i}"))).collect();
        assert_eq!(used.len(), 16);
    }

    #[test]
    fn channels_parse_back() {
        let keys = Keys::new("cc:", 4);
        assert_eq!(keys.parse_channel(&keys.user_channel("u1")), Some(Channel::User("u1")));
        assert_eq!(keys.parse_channel(&keys.room_channel("c1")), Some(Channel::Room("c1")));
        assert_eq!(keys.parse_channel(&keys.invalidation_channel()), Some(Channel::Invalidation));
        assert_eq!(keys.parse_channel("other:u:x"), None);
    }
}

//! coursechat: a Socket.IO-compatible real-time chat edge for course platforms.
//!
//! Data flows one way: frame → [`protocol`] → [`session`] → [`events`] → [`chat`] rules →
//! [`engine`] (seq, durable queue) → ack; and bus → [`hub`] → socket write queues, with the
//! [`node`] pairing hub and bus. The [`store`] is written behind, from the engine's queue, by
//! the [`writer`]. [`model`] is the leaf every layer shares. docs/ARCHITECTURE.md draws it.

pub mod attachments;
pub mod audit;
pub mod auth;
pub mod chat;
pub mod config;
pub mod demo;
pub mod engine;
pub mod error;
pub mod events;
pub mod group_commit;
pub mod http;
pub mod hub;
pub mod json;
pub mod metrics;
pub mod model;
pub mod node;
pub mod protocol;
pub mod server;
pub mod session;
pub mod shutdown;
pub mod store;
pub mod writer;

//! The one inbound JSON parser of the event path.
//!
//! Socket.IO event data is parsed with simd-json (the design card's choice): it parses in place
//! over the frame's own buffer, which the session owns mutably anyway. Everything that parses
//! client event data goes through [`parse_seed`], so the parser can be measured against
//! serde_json (see `benches/`) and swapped in one place.

use serde::de::DeserializeSeed;

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct JsonError(String);

thread_local! {
    /// simd-json's scratch buffers, reused by every parse on this thread: allocating them per
    /// parse made simd-json slower than serde_json on chat-sized payloads (see benches/).
    static BUFFERS: std::cell::RefCell<simd_json::Buffers> = std::cell::RefCell::new(simd_json::Buffers::new(1024));
}

/// Parses `data` (modified in place) with a seed, so the caller can keep what it learned before
/// an error (the event name).
pub fn parse_seed<'de, S: DeserializeSeed<'de>>(data: &'de mut [u8], seed: S) -> Result<S::Value, JsonError> {
    BUFFERS.with(|buffers| {
        let mut buffers = buffers.borrow_mut();
        let mut de = simd_json::Deserializer::from_slice_with_buffers(data, &mut buffers)
            .map_err(|e| JsonError(e.to_string()))?;
        seed.deserialize(&mut de).map_err(|e| JsonError(e.to_string()))
    })
}

/// Parses a whole value (used for the CONNECT auth payload).
pub fn parse<T: serde::de::DeserializeOwned>(data: &mut [u8]) -> Result<T, JsonError> {
    simd_json::serde::from_slice(data).map_err(|e| JsonError(e.to_string()))
}

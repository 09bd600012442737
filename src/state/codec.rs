//! `ContactState` ↔ bytes: one format byte, then postcard (a compact,
//! stable serde format). Profile values are stored raw and re-normalized on
//! read. Decoding never panics: corrupt bytes are an error naming the cause.

use thiserror::Error;

use crate::scoring::ContactState;

/// The current format; bump it when `ContactState` changes shape, and keep
/// reading the old ones.
pub const FORMAT: u8 = 1;

#[derive(Debug, Error, PartialEq)]
pub enum CodecError {
    #[error("empty contact state record")]
    Empty,
    #[error("contact state format {0} is newer than this build understands ({FORMAT})")]
    UnknownFormat(u8),
    #[error("corrupt contact state: {0}")]
    Corrupt(String),
}

pub fn encode_contact(state: &ContactState) -> Vec<u8> {
    let mut out = vec![FORMAT];
    // Serializing plain data into a Vec cannot fail.
    out.extend(postcard::to_stdvec(state).unwrap_or_default());
    out
}

pub fn decode_contact(bytes: &[u8]) -> Result<ContactState, CodecError> {
    match bytes.split_first() {
        None => Err(CodecError::Empty),
        Some((&FORMAT, body)) => {
            postcard::from_bytes(body).map_err(|e| CodecError::Corrupt(e.to_string()))
        }
        Some((&other, _)) => Err(CodecError::UnknownFormat(other)),
    }
}

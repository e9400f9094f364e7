//! Binary encoding of everything Spate persists or sends between nodes: postcard over serde.
//! One place, so the format can be versioned later.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Encodes a value.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, postcard::Error> {
    postcard::to_stdvec(value)
}

/// Decodes a value.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, postcard::Error> {
    postcard::from_bytes(bytes)
}

/// Encodes into an `io::Error`-speaking result (for storage traits).
pub fn encode_io<T: Serialize + ?Sized>(value: &T) -> std::io::Result<Vec<u8>> {
    encode(value).map_err(super::io_err)
}

/// Decodes into an `io::Error`-speaking result (for storage traits).
pub fn decode_io<T: DeserializeOwned>(bytes: &[u8]) -> std::io::Result<T> {
    decode(bytes).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))
}

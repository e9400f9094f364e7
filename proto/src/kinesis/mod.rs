//! The Kinesis side of the wire model: errors, identifiers and their codecs, limits.
//! Pure: no I/O, no async runtime.

pub mod error;
pub mod hash;
pub mod ids;
pub mod iterator;
pub mod limits;
pub mod model;
pub mod model_efo;
pub mod seqnum;

pub use error::{ErrorKind, KinesisError, KinesisResult};

//! The `application/vnd.amazon.eventstream` message encoder SubscribeToShard answers with.
//!
//! A message is a 12-byte prelude (total length, headers length, both big-endian `u32`, and
//! the CRC32 of those 8 bytes), the headers, the payload, and the CRC32 of everything
//! before it. A header is a 1-byte name length, the name, a 1-byte value type (7: string),
//! a big-endian `u16` value length and the value. Only string headers are needed here.

use bytes::{BufMut as _, Bytes, BytesMut};

/// Value type tag of a string header.
const TYPE_STRING: u8 = 7;
/// Prelude (8 bytes) plus its CRC.
const PRELUDE_LEN: usize = 12;
const CRC_LEN: usize = 4;

/// Encodes one message with string `headers` and `payload`.
pub fn encode_message(headers: &[(&str, &str)], payload: &[u8]) -> Bytes {
    let mut hdr = BytesMut::new();
    for (name, value) in headers {
        // Names and values used here are short constants; clamp defensively.
        let name = &name.as_bytes()[..name.len().min(u8::MAX as usize)];
        let value = &value.as_bytes()[..value.len().min(u16::MAX as usize)];
        hdr.put_u8(name.len() as u8);
        hdr.put_slice(name);
        hdr.put_u8(TYPE_STRING);
        hdr.put_u16(value.len() as u16);
        hdr.put_slice(value);
    }
    let total = PRELUDE_LEN + hdr.len() + payload.len() + CRC_LEN;
    let mut out = BytesMut::with_capacity(total);
    out.put_u32(total as u32);
    out.put_u32(hdr.len() as u32);
    let prelude_crc = crc32fast::hash(&out[..8]);
    out.put_u32(prelude_crc);
    out.put_slice(&hdr);
    out.put_slice(payload);
    let message_crc = crc32fast::hash(&out);
    out.put_u32(message_crc);
    out.freeze()
}

/// An `event` message of type `event_type`.
pub fn event(event_type: &str, content_type: &str, payload: &[u8]) -> Bytes {
    encode_message(
        &[
            (":message-type", "event"),
            (":event-type", event_type),
            (":content-type", content_type),
        ],
        payload,
    )
}

/// A modeled `exception` message (`exception_type` is e.g. `ResourceNotFoundException`).
pub fn exception(exception_type: &str, content_type: &str, payload: &[u8]) -> Bytes {
    encode_message(
        &[
            (":message-type", "exception"),
            (":exception-type", exception_type),
            (":content-type", content_type),
        ],
        payload,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn empty_message_vector() {
        // The `empty_message` vector of the AWS event-stream test suite.
        assert_eq!(
            hex(&encode_message(&[], b"")),
            "000000100000000005c248eb7d98c8ff"
        );
    }

    #[test]
    fn initial_response_frame() {
        // Built by hand from the spec (Python struct + zlib.crc32).
        let want = concat!(
            "0000007200000060ab820d9e",
            "0d3a6d6573736167652d74797065070005",
            "6576656e74",
            "0b3a6576656e742d74797065070010",
            "696e697469616c2d726573706f6e7365",
            "0d3a636f6e74656e742d7479706507001a",
            "6170706c69636174696f6e2f782d616d7a2d6a736f6e2d312e31",
            "7b7d",
            "e16e66e4"
        );
        let got = event("initial-response", "application/x-amz-json-1.1", b"{}");
        assert_eq!(hex(&got), want);
    }

    #[test]
    fn lengths_and_crcs() {
        let payload = vec![0xabu8; 1000];
        let m = exception("ResourceNotFoundException", "application/json", &payload);
        let total = u32::from_be_bytes([m[0], m[1], m[2], m[3]]) as usize;
        let hlen = u32::from_be_bytes([m[4], m[5], m[6], m[7]]) as usize;
        assert_eq!(total, m.len());
        assert_eq!(total, 12 + hlen + payload.len() + 4);
        let pcrc = u32::from_be_bytes([m[8], m[9], m[10], m[11]]);
        assert_eq!(pcrc, crc32fast::hash(&m[..8]));
        let mcrc = u32::from_be_bytes([m[total - 4], m[total - 3], m[total - 2], m[total - 1]]);
        assert_eq!(mcrc, crc32fast::hash(&m[..total - 4]));
        assert_eq!(&m[12 + hlen..total - 4], payload.as_slice());
    }
}

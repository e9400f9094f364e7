//! Kinesis request/response types (JSON 1.1 / CBOR 1.1). Filled by the API work.

"""CBOR decoding as the AWS SDKs do it: tag 1 wraps epoch *milliseconds* (cbor2 reads
seconds). Uses cbor2's pure-Python decoder with its tag-1 decoder replaced; the C decoder
(cbor2.loads) is left alone."""

import io
from datetime import datetime, timezone

from cbor2 import _decoder


def _epoch_ms(self):
    value = self.decode()
    return self.set_shareable(datetime.fromtimestamp(value / 1000, timezone.utc))


_decoder.semantic_decoders[1] = _epoch_ms


def loads(raw):
    return _decoder.CBORDecoder(io.BytesIO(raw)).decode()

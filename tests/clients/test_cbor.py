"""The CBOR wire format (application/x-amz-cbor-1.1), as the Java SDK v2 and KPL/KCL send it.

boto3 only speaks JSON, so these tests post raw CBOR bodies (cbor2) over http.client.
In CBOR, blobs are byte strings and timestamps are tag-1 epoch numbers (decoded by cbor2
into datetimes, see cbor_ms). Skipped unless SPATE_CBOR=1 (tests/clients/run.sh sets it).
"""

import datetime
import http.client
import os
from urllib.parse import urlparse

import cbor2

import cbor_ms
import pytest

from conftest import kinesalite_gap, unique_name

pytestmark = pytest.mark.skipif(
    os.environ.get("SPATE_CBOR") != "1", reason="set SPATE_CBOR=1 to run"
)

AUTH = (
    "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20250101/us-east-1/kinesis/aws4_request, "
    "SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature=" + "0" * 64
)


def cbor_call(op, body):
    u = urlparse(os.environ["SPATE_ENDPOINT"])
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    try:
        conn.request(
            "POST",
            "/",
            body=cbor2.dumps(body),
            headers={
                "Content-Type": "application/x-amz-cbor-1.1",
                "X-Amz-Target": "Kinesis_20131202." + op,
                "X-Amz-Date": "20250101T000000Z",
                "Authorization": AUTH,
            },
        )
        r = conn.getresponse()
        raw = r.read()
        return r.status, (cbor_ms.loads(raw) if raw else {}), r.getheader("Content-Type")
    finally:
        conn.close()


@kinesalite_gap  # kinesalite encodes Data as {"type": "Buffer", "data": [...]}
def test_cbor_put_get(kinesis, stream1):
    data = b"\x00\x01cbor-bytes\xff"
    st, put, ctype = cbor_call("PutRecord", {"StreamName": stream1, "PartitionKey": "k", "Data": data})
    assert st == 200, put
    assert ctype and ctype.startswith("application/x-amz-cbor-1.1")
    assert put["ShardId"] == "shardId-000000000000"
    assert isinstance(put["SequenceNumber"], str)

    st, it, _ = cbor_call(
        "GetShardIterator",
        {"StreamName": stream1, "ShardId": "shardId-000000000000", "ShardIteratorType": "TRIM_HORIZON"},
    )
    assert st == 200, it
    st, got, _ = cbor_call("GetRecords", {"ShardIterator": it["ShardIterator"]})
    assert st == 200, got
    [rec] = got["Records"]
    assert rec["Data"] == data  # a byte string, not base64 text
    assert rec["SequenceNumber"] == put["SequenceNumber"]
    assert isinstance(rec["ApproximateArrivalTimestamp"], (datetime.datetime, int, float))
    assert isinstance(got["MillisBehindLatest"], int)

    # the same record read over JSON by boto3
    it = kinesis.get_shard_iterator(
        StreamName=stream1, ShardId="shardId-000000000000", ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    assert [r["Data"] for r in kinesis.get_records(ShardIterator=it)["Records"]] == [data]


def test_cbor_error():
    st, body, _ = cbor_call("DescribeStreamSummary", {"StreamName": unique_name("missing")})
    assert st == 400
    assert body["__type"].split("#")[-1] == "ResourceNotFoundException"

"""CBOR 1.1 requests signed by botocore's SigV4 signer, encoded with cbor2: blobs are byte
strings and timestamps are tag 1 wrapping integer epoch milliseconds, both ways; a CBOR
request gets CBOR errors."""

import datetime
import http.client
import os
import time
from urllib.parse import urlparse

import cbor2

import cbor_ms
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from conftest import kinesalite_gap, unique_name

CBOR = "application/x-amz-cbor-1.1"


def signed_call(op, body_obj, raw_body=None):
    ep = os.environ["SPATE_ENDPOINT"]
    body = raw_body if raw_body is not None else cbor2.dumps(body_obj)
    req = AWSRequest(
        method="POST",
        url=ep + "/",
        data=body,
        headers={"Content-Type": CBOR, "X-Amz-Target": "Kinesis_20131202." + op, "Accept": CBOR},
    )
    SigV4Auth(Credentials("AKIAIOSFODNN7EXAMPLE", "secret"), "kinesis", "us-east-1").add_auth(req)
    u = urlparse(ep)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    try:
        conn.request("POST", "/", body=body, headers=dict(req.headers.items()))
        r = conn.getresponse()
        raw = r.read()
        return r.status, raw, r.getheader("Content-Type"), r.getheader("x-amzn-ErrorType")
    finally:
        conn.close()


def ok(op, body):
    st, raw, ctype, _ = signed_call(op, body)
    assert st == 200, cbor_ms.loads(raw) if raw else raw
    assert ctype.startswith(CBOR)
    return cbor_ms.loads(raw)


def wait_active(name):
    deadline = time.time() + 60
    while time.time() < deadline:
        d = ok("DescribeStreamSummary", {"StreamName": name})
        if d["StreamDescriptionSummary"]["StreamStatus"] == "ACTIVE":
            return d
        time.sleep(0.5)
    raise AssertionError("stream not ACTIVE")


@kinesalite_gap
def test_cbor_blobs_and_tag1_timestamps_round_trip():
    name = unique_name("cbor")
    ok("CreateStream", {"StreamName": name, "ShardCount": 1})
    try:
        summary = wait_active(name)
        created = summary["StreamDescriptionSummary"]["StreamCreationTimestamp"]
        assert isinstance(created, datetime.datetime)  # tag 1 decoded by cbor2

        data = bytes(range(256))
        put = ok("PutRecord", {"StreamName": name, "PartitionKey": "k", "Data": data})
        # The raw response holds a tag-1 timestamp as an integer of milliseconds.
        st, raw, _, _ = signed_call("DescribeStreamSummary", {"StreamName": name})
        assert b"\xc1\x1b" in raw

        before = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=1)
        ms = int(before.timestamp() * 1000)
        # Timestamp as tag 1 wrapping integer milliseconds, as the Java SDK sends it.
        it = ok(
            "GetShardIterator",
            {
                "StreamName": name,
                "ShardId": put["ShardId"],
                "ShardIteratorType": "AT_TIMESTAMP",
                "Timestamp": cbor2.CBORTag(1, ms),
            },
        )
        got = ok("GetRecords", {"ShardIterator": it["ShardIterator"]})
        [rec] = got["Records"]
        assert rec["Data"] == data and isinstance(rec["Data"], bytes)
        arrival = rec["ApproximateArrivalTimestamp"]
        assert isinstance(arrival, datetime.datetime) and arrival >= before
    finally:
        signed_call("DeleteStream", {"StreamName": name})


@kinesalite_gap  # kinesalite sends no x-amzn-ErrorType header
def test_cbor_errors_are_cbor():
    st, raw, ctype, et = signed_call("DescribeStream", {"StreamName": "bad name!"})
    assert st == 400 and ctype.startswith(CBOR) and et == "ValidationException"
    body = cbor_ms.loads(raw)
    assert body["__type"] == "ValidationException" and "streamName" in body["message"]
    st, raw, ctype, et = signed_call("DescribeStream", {"StreamName": unique_name("missing")})
    assert cbor_ms.loads(raw)["__type"] == "ResourceNotFoundException"
    st, raw, ctype, et = signed_call("DescribeStream", None, raw_body=cbor2.dumps({"Limit": "ten"}))
    assert cbor_ms.loads(raw)["__type"] == "SerializationException" and ctype.startswith(CBOR)

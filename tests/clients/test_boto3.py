"""Kinesis API behaviour as seen by an unmodified boto3 client.

Each test creates its own uniquely named stream(s) (see conftest.stream_factory) and
deletes them afterwards. Run via tests/clients/run.sh, or directly with
SPATE_ENDPOINT=http://127.0.0.1:PORT pytest tests/clients.
"""

import datetime
import hashlib
import os
import re
import time

import pytest

from conftest import WAIT_SECS, kinesalite_gap, unique_name, wait_active

MAXH = 2**128 - 1
SEQ56 = re.compile(r"^\d{56}$")
SHARD_ID = re.compile(r"^shardId-\d{12}$")


def hkey(pk):
    return int(hashlib.md5(pk.encode("utf-8")).hexdigest(), 16)


def hash_range(shard):
    r = shard["HashKeyRange"]
    return int(r["StartingHashKey"]), int(r["EndingHashKey"])


def shard_for(shards, key):
    for s in shards:
        lo, hi = hash_range(s)
        if lo <= key <= hi:
            return s["ShardId"]
    raise AssertionError("no shard covers hash key %d" % key)


def error_code(excinfo):
    return excinfo.value.response["Error"]["Code"]


def http_status(excinfo):
    return excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"]


def iterator(client, stream, shard, typ, **kw):
    r = client.get_shard_iterator(StreamName=stream, ShardId=shard, ShardIteratorType=typ, **kw)
    it = r["ShardIterator"]
    assert isinstance(it, str) and 1 <= len(it) <= 512
    return it


# GetRecords allows 5 calls per second per shard (the service's limit, which `spate dev`
# enforces): these helpers space consecutive calls, so that on a fast server a read loop does
# not turn into a throttling test (tests/clients/test_settings.py tests throttling itself).
GET_RECORDS_GAP_SECS = 0.21
_last_get_records = [0.0]


def get_records(client, **kw):
    wait = _last_get_records[0] + GET_RECORDS_GAP_SECS - time.monotonic()
    if wait > 0:
        time.sleep(wait)
    try:
        return client.get_records(**kw)
    finally:
        _last_get_records[0] = time.monotonic()


def read(client, it, want=None, max_calls=30, limit=None):
    """Follow NextShardIterator until `want` records, or (want=None) an empty caught-up page."""
    recs, pages = [], []
    for _ in range(max_calls):
        if it is None:
            break
        kw = {"Limit": limit} if limit else {}
        r = get_records(client, ShardIterator=it, **kw)
        pages.append(r)
        recs += r["Records"]
        it = r.get("NextShardIterator")
        if want is not None and len(recs) >= want:
            break
        if want is None and not r["Records"] and r.get("MillisBehindLatest", 0) == 0:
            break
    return recs, pages, it


def sorted_shards(client, stream):
    shards = client.list_shards(StreamName=stream)["Shards"]
    return sorted(shards, key=lambda s: hash_range(s)[0])


# ------------------------------------------------------------------ control plane


def test_create_describe_shapes(kinesis):
    name = unique_name()
    assert kinesis.create_stream(StreamName=name, ShardCount=2)["ResponseMetadata"]["HTTPStatusCode"] == 200
    try:
        st = kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamStatus"]
        assert st in ("CREATING", "ACTIVE")
        wait_active(kinesis, name)

        d = kinesis.describe_stream(StreamName=name)["StreamDescription"]
        assert d["StreamName"] == name
        assert re.match(r"^arn:aws:kinesis:us-east-1:\d{12}:stream/" + re.escape(name) + "$", d["StreamARN"])
        assert d["StreamStatus"] == "ACTIVE"
        assert d["HasMoreShards"] is False
        assert d["RetentionPeriodHours"] == 24
        assert isinstance(d["StreamCreationTimestamp"], datetime.datetime)
        assert isinstance(d["EnhancedMonitoring"], list)
        shards = d["Shards"]
        assert [s["ShardId"] for s in shards] == ["shardId-000000000000", "shardId-000000000001"]
        ranges = sorted(hash_range(s) for s in shards)
        assert ranges[0][0] == 0 and ranges[-1][1] == MAXH
        assert all(a[1] + 1 == b[0] for a, b in zip(ranges, ranges[1:])), ranges
        # equal split: the two halves differ in size by at most one
        sizes = [hi - lo + 1 for lo, hi in ranges]
        assert max(sizes) - min(sizes) <= 1, sizes
        for s in shards:
            assert "ParentShardId" not in s
            seq = s["SequenceNumberRange"]
            assert SEQ56.match(seq["StartingSequenceNumber"]), seq
            assert "EndingSequenceNumber" not in seq

        summ = kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]
        assert summ["StreamName"] == name
        assert summ["StreamARN"] == d["StreamARN"]
        assert summ["StreamStatus"] == "ACTIVE"
        assert summ["OpenShardCount"] == 2
        assert summ["RetentionPeriodHours"] == 24
        assert isinstance(summ["StreamCreationTimestamp"], datetime.datetime)
        assert isinstance(summ["EnhancedMonitoring"], list)
    finally:
        kinesis.delete_stream(StreamName=name)


@kinesalite_gap
def test_describe_stream_limit(kinesis, stream2):
    # Limit + ExclusiveStartShardId page DescribeStream's shard list (kinesalite ignores Limit)
    page = kinesis.describe_stream(StreamName=stream2, Limit=1)["StreamDescription"]
    assert [s["ShardId"] for s in page["Shards"]] == ["shardId-000000000000"]
    assert page["HasMoreShards"] is True
    page = kinesis.describe_stream(
        StreamName=stream2, Limit=1, ExclusiveStartShardId="shardId-000000000000"
    )["StreamDescription"]
    assert [s["ShardId"] for s in page["Shards"]] == ["shardId-000000000001"]
    assert page["HasMoreShards"] is False


def test_list_streams(kinesis, stream_factory):
    a = stream_factory(1)
    b = stream_factory(1)
    names = []
    r = kinesis.list_streams()
    for _ in range(100):  # follow pages: other streams may exist on the server
        assert isinstance(r["HasMoreStreams"], bool)
        names += r["StreamNames"]
        if not r["HasMoreStreams"]:
            break
        r = kinesis.list_streams(ExclusiveStartStreamName=names[-1])
    assert a in names and b in names
    assert len(names) == len(set(names)), "a stream listed twice across pages"
    assert names == sorted(names), "StreamNames should be in lexicographic order"
    # Limit + ExclusiveStartStreamName pagination
    first = kinesis.list_streams(Limit=1)
    assert len(first["StreamNames"]) == 1
    assert first["HasMoreStreams"] is True
    rest = kinesis.list_streams(ExclusiveStartStreamName=first["StreamNames"][0])
    assert first["StreamNames"][0] not in rest["StreamNames"]


def test_list_shards(kinesis, stream2):
    r = kinesis.list_shards(StreamName=stream2)
    ids = [s["ShardId"] for s in r["Shards"]]
    assert ids == ["shardId-000000000000", "shardId-000000000001"]
    assert "NextToken" not in r
    for s in r["Shards"]:
        assert SHARD_ID.match(s["ShardId"])
        assert SEQ56.match(s["SequenceNumberRange"]["StartingSequenceNumber"])
    d = kinesis.describe_stream(StreamName=stream2)["StreamDescription"]["Shards"]
    assert [hash_range(s) for s in r["Shards"]] == [hash_range(s) for s in d]


def test_delete_stream(kinesis):
    name = unique_name()
    kinesis.create_stream(StreamName=name, ShardCount=1)
    wait_active(kinesis, name)
    kinesis.delete_stream(StreamName=name)
    deadline = time.time() + WAIT_SECS
    while True:
        try:
            st = kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamStatus"]
            assert st == "DELETING", st
        except kinesis.exceptions.ResourceNotFoundException as e:
            assert e.response["Error"]["Code"] == "ResourceNotFoundException"
            break
        assert time.time() < deadline, "stream still present %ss after delete_stream" % WAIT_SECS
        time.sleep(0.2)
    assert name not in kinesis.list_streams()["StreamNames"]


# ------------------------------------------------------------------ writes


def test_put_record_routing(kinesis, stream2):
    shards = sorted_shards(kinesis, stream2)
    seen = {}
    for i in range(20):
        pk = "key-%d" % (i % 5)
        r = kinesis.put_record(StreamName=stream2, PartitionKey=pk, Data=b"v%d" % i)
        assert SHARD_ID.match(r["ShardId"])
        assert SEQ56.match(r["SequenceNumber"]), r["SequenceNumber"]
        assert r["ShardId"] == shard_for(shards, hkey(pk)), "md5 routing of %r" % pk
        assert seen.setdefault(pk, r["ShardId"]) == r["ShardId"], "same key, different shard"
    # ExplicitHashKey overrides the partition key's hash
    r = kinesis.put_record(StreamName=stream2, PartitionKey="x", ExplicitHashKey="0", Data=b"lo")
    assert r["ShardId"] == shards[0]["ShardId"]
    r = kinesis.put_record(StreamName=stream2, PartitionKey="x", ExplicitHashKey=str(MAXH), Data=b"hi")
    assert r["ShardId"] == shards[1]["ShardId"]


def test_put_record_sequence_number_for_ordering(kinesis, stream1):
    a = kinesis.put_record(StreamName=stream1, PartitionKey="k", Data=b"a")["SequenceNumber"]
    b = kinesis.put_record(
        StreamName=stream1, PartitionKey="k", Data=b"b", SequenceNumberForOrdering=a
    )["SequenceNumber"]
    assert int(b) > int(a)


def test_put_records_500(kinesis, stream2):
    shards = sorted_shards(kinesis, stream2)
    records = [
        {"Data": ("batch-%d-" % i).encode() + os.urandom(16), "PartitionKey": "pk-%d" % i} for i in range(500)
    ]
    r = kinesis.put_records(StreamName=stream2, Records=records)
    assert r["FailedRecordCount"] == 0
    res = r["Records"]
    assert len(res) == 500
    last = {}
    for i, x in enumerate(res):
        assert "ErrorCode" not in x, x
        assert SEQ56.match(x["SequenceNumber"]), x
        assert x["ShardId"] == shard_for(shards, hkey("pk-%d" % i)), "record %d misrouted" % i
        prev = last.get(x["ShardId"])
        assert prev is None or int(x["SequenceNumber"]) > prev, "seq not increasing at record %d" % i
        last[x["ShardId"]] = int(x["SequenceNumber"])

    # results are in request order: the record stored under result i's sequence number is record i
    by_seq = {}
    for s in shards:
        recs, _, _ = read(kinesis, iterator(kinesis, stream2, s["ShardId"], "TRIM_HORIZON"))
        for rec in recs:
            by_seq[(s["ShardId"], rec["SequenceNumber"])] = rec
    assert len(by_seq) == 500
    for i, x in enumerate(res):
        rec = by_seq[(x["ShardId"], x["SequenceNumber"])]
        assert rec["Data"] == records[i]["Data"]
        assert rec["PartitionKey"] == records[i]["PartitionKey"]


# ------------------------------------------------------------------ reads


def test_iterators_and_get_records(kinesis, stream1):
    shard = "shardId-000000000000"
    payloads = [os.urandom(1 + 37 * i) for i in range(6)] + [b"\x00\xff\xfe binary"]
    seqs = []
    for i, data in enumerate(payloads):
        seqs.append(kinesis.put_record(StreamName=stream1, PartitionKey="pk%d" % i, Data=data)["SequenceNumber"])
    assert all(int(a) < int(b) for a, b in zip(seqs, seqs[1:]))

    # TRIM_HORIZON: everything, byte-identical, with metadata
    recs, pages, _ = read(kinesis, iterator(kinesis, stream1, shard, "TRIM_HORIZON"), want=len(payloads))
    assert [r["Data"] for r in recs] == payloads
    assert [r["SequenceNumber"] for r in recs] == seqs
    assert [r["PartitionKey"] for r in recs] == ["pk%d" % i for i in range(len(payloads))]
    for r in recs:
        assert isinstance(r["ApproximateArrivalTimestamp"], datetime.datetime)
    for p in pages:
        assert isinstance(p["MillisBehindLatest"], int)
        assert p["NextShardIterator"]
    arrivals = [r["ApproximateArrivalTimestamp"] for r in recs]
    assert arrivals == sorted(arrivals)

    # AT_SEQUENCE_NUMBER / AFTER_SEQUENCE_NUMBER
    recs, _, _ = read(
        kinesis,
        iterator(kinesis, stream1, shard, "AT_SEQUENCE_NUMBER", StartingSequenceNumber=seqs[2]),
        want=len(payloads) - 2,
    )
    assert [r["SequenceNumber"] for r in recs] == seqs[2:]
    recs, _, _ = read(
        kinesis,
        iterator(kinesis, stream1, shard, "AFTER_SEQUENCE_NUMBER", StartingSequenceNumber=seqs[2]),
        want=len(payloads) - 3,
    )
    assert [r["SequenceNumber"] for r in recs] == seqs[3:]
    assert [r["Data"] for r in recs] == payloads[3:]

    # LATEST: sees nothing old, then only what is put afterwards
    it = iterator(kinesis, stream1, shard, "LATEST")
    r = kinesis.get_records(ShardIterator=it)
    assert r["Records"] == []
    assert isinstance(r["MillisBehindLatest"], int)
    it = r["NextShardIterator"]
    time.sleep(1.1)  # so the new record's arrival time is clearly after the old ones
    new = [b"after-latest-1", b"after-latest-2"]
    new_seqs = [kinesis.put_record(StreamName=stream1, PartitionKey="z", Data=d)["SequenceNumber"] for d in new]
    recs, _, _ = read(kinesis, it, want=2)
    assert [r["Data"] for r in recs] == new
    assert [r["SequenceNumber"] for r in recs] == new_seqs
    assert int(new_seqs[0]) > int(seqs[-1])

    # AT_TIMESTAMP: between the old batch and the new one, and before everything
    old_last = arrivals[-1]
    new_first = recs[0]["ApproximateArrivalTimestamp"]
    assert new_first > old_last
    mid = old_last + (new_first - old_last) / 2
    got, _, _ = read(kinesis, iterator(kinesis, stream1, shard, "AT_TIMESTAMP", Timestamp=mid), want=2)
    assert [r["Data"] for r in got] == new
    early = arrivals[0] - datetime.timedelta(seconds=60)
    got, _, _ = read(kinesis, iterator(kinesis, stream1, shard, "AT_TIMESTAMP", Timestamp=early), want=len(payloads) + 2)
    assert [r["Data"] for r in got] == payloads + new
    # a timestamp in the future is rejected (AWS: "timestampInMillis ... cannot be greater
    # than the currentTimestampInMillis", as recorded by kinesalite)
    future = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1)
    with pytest.raises(kinesis.exceptions.InvalidArgumentException) as ei:
        iterator(kinesis, stream1, shard, "AT_TIMESTAMP", Timestamp=future)
    assert error_code(ei) == "InvalidArgumentException"


def test_next_shard_iterator_chaining(kinesis, stream1):
    shard = "shardId-000000000000"
    data = [b"chain-%02d" % i for i in range(10)]
    for d in data:
        kinesis.put_record(StreamName=stream1, PartitionKey="c", Data=d)
    it = iterator(kinesis, stream1, shard, "TRIM_HORIZON")
    got = []
    for _ in range(30):
        r = get_records(kinesis, ShardIterator=it, Limit=3)
        assert len(r["Records"]) <= 3
        got += [x["Data"] for x in r["Records"]]
        it = r["NextShardIterator"]
        assert it
        if len(got) >= len(data):
            break
    assert got == data
    # the caught-up iterator keeps working and yields new records
    kinesis.put_record(StreamName=stream1, PartitionKey="c", Data=b"chain-late")
    recs, pages, _ = read(kinesis, it, want=1)
    assert [x["Data"] for x in recs] == [b"chain-late"]
    assert pages[-1]["MillisBehindLatest"] >= 0
    # an iterator can be used more than once (it is a position, not a cursor)
    again = get_records(kinesis, ShardIterator=it)
    assert [x["Data"] for x in again["Records"]] == [b"chain-late"]


# ------------------------------------------------------------------ errors


def test_error_unknown_stream(kinesis):
    missing = unique_name("missing")
    for call in (
        lambda: kinesis.describe_stream(StreamName=missing),
        lambda: kinesis.describe_stream_summary(StreamName=missing),
        lambda: kinesis.put_record(StreamName=missing, PartitionKey="a", Data=b"x"),
        lambda: kinesis.put_records(StreamName=missing, Records=[{"PartitionKey": "a", "Data": b"x"}]),
        lambda: kinesis.list_shards(StreamName=missing),
        lambda: kinesis.get_shard_iterator(
            StreamName=missing, ShardId="shardId-000000000000", ShardIteratorType="TRIM_HORIZON"
        ),
        lambda: kinesis.delete_stream(StreamName=missing),
    ):
        with pytest.raises(kinesis.exceptions.ResourceNotFoundException) as ei:
            call()
        assert error_code(ei) == "ResourceNotFoundException"
        assert http_status(ei) == 400


def test_error_unknown_shard(kinesis, stream1):
    with pytest.raises(kinesis.exceptions.ResourceNotFoundException) as ei:
        kinesis.get_shard_iterator(StreamName=stream1, ShardId="shardId-000000000999", ShardIteratorType="TRIM_HORIZON")
    assert error_code(ei) == "ResourceNotFoundException"


def test_error_duplicate_create(kinesis, stream1):
    with pytest.raises(kinesis.exceptions.ResourceInUseException) as ei:
        kinesis.create_stream(StreamName=stream1, ShardCount=1)
    assert error_code(ei) == "ResourceInUseException"


def test_error_validation(raw_kinesis, stream1):
    k = raw_kinesis
    # botocore's ClientError for a code without a modelled exception class
    with pytest.raises(k.exceptions.ClientError) as ei:
        k.put_record(StreamName=stream1, PartitionKey="k" * 257, Data=b"x")
    assert error_code(ei) == "ValidationException"
    assert http_status(ei) == 400
    with pytest.raises(k.exceptions.ClientError) as ei:
        k.create_stream(StreamName="bad name!", ShardCount=1)
    assert error_code(ei) == "ValidationException"
    with pytest.raises(k.exceptions.ClientError) as ei:
        k.create_stream(StreamName=unique_name("zero"), ShardCount=0)
    assert error_code(ei) == "ValidationException"
    with pytest.raises(k.exceptions.ClientError) as ei:
        k.get_shard_iterator(StreamName=stream1, ShardId="shardId-000000000000", ShardIteratorType="SOMETIMES")
    assert error_code(ei) == "ValidationException"
    with pytest.raises(k.exceptions.ClientError) as ei:
        k.put_records(StreamName=stream1, Records=[{"PartitionKey": "k", "Data": b"x"}] * 501)
    assert error_code(ei) == "ValidationException"


def test_error_bad_explicit_hash_key(raw_kinesis, stream1):
    k = raw_kinesis
    for bad in (str(2**128), "-1", "not-a-number"):
        with pytest.raises(k.exceptions.ClientError) as ei:
            k.put_record(StreamName=stream1, PartitionKey="a", ExplicitHashKey=bad, Data=b"x")
        code = error_code(ei)
        # 2^128 is out of range (InvalidArgumentException); malformed strings fail the
        # pattern constraint, which AWS reports as ValidationException
        if bad == str(2**128):
            assert code == "InvalidArgumentException", code
        else:
            assert code in ("InvalidArgumentException", "ValidationException"), code


def test_error_iterator_arguments(raw_kinesis, stream1):
    k = raw_kinesis
    with pytest.raises(k.exceptions.InvalidArgumentException) as ei:
        k.get_shard_iterator(StreamName=stream1, ShardId="shardId-000000000000", ShardIteratorType="AT_SEQUENCE_NUMBER")
    assert error_code(ei) == "InvalidArgumentException"


def tamper(it):
    mid = len(it) // 2
    c = it[mid]
    repl = "A" if c != "A" else "B"
    return it[:mid] + repl + it[mid + 1 :]


def test_error_tampered_iterator(kinesis, stream1):
    kinesis.put_record(StreamName=stream1, PartitionKey="k", Data=b"secret")
    it = iterator(kinesis, stream1, "shardId-000000000000", "TRIM_HORIZON")
    for bad in (tamper(it), it[:-4], "bm90LWFuLWl0ZXJhdG9y"):
        with pytest.raises(kinesis.exceptions.ClientError) as ei:
            kinesis.get_records(ShardIterator=bad)
        assert error_code(ei) in ("InvalidArgumentException", "ExpiredIteratorException"), error_code(ei)
        assert http_status(ei) == 400
    # the untampered iterator still works
    assert [r["Data"] for r in kinesis.get_records(ShardIterator=it)["Records"]] == [b"secret"]


def test_error_iterator_for_other_stream(kinesis, stream_factory):
    """An iterator is bound to its stream: deleting the stream invalidates it."""
    name = stream_factory(1)
    it = iterator(kinesis, name, "shardId-000000000000", "TRIM_HORIZON")
    kinesis.delete_stream(StreamName=name)
    deadline = time.time() + WAIT_SECS
    while True:
        try:
            kinesis.describe_stream_summary(StreamName=name)
        except kinesis.exceptions.ResourceNotFoundException:
            break
        assert time.time() < deadline
        time.sleep(0.2)
    with pytest.raises(kinesis.exceptions.ClientError) as ei:
        kinesis.get_records(ShardIterator=it)
    assert error_code(ei) in ("ResourceNotFoundException", "ExpiredIteratorException", "InvalidArgumentException")

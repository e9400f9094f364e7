"""Enhanced fan-out with boto3 (HTTP/1.1 chunked event streams): consumer registration,
SubscribeToShard push delivery, starting positions, the 5-second lease, errors."""

import threading
import time

import pytest

from conftest import delete_quietly, make_client, unique_name, wait_active


def wait_consumer_active(client, arn, secs=30):
    deadline = time.time() + secs
    while time.time() < deadline:
        d = client.describe_stream_consumer(ConsumerARN=arn)["ConsumerDescription"]
        if d["ConsumerStatus"] == "ACTIVE":
            return d
        time.sleep(0.2)
    raise AssertionError("consumer %s not ACTIVE after %ss" % (arn, secs))


@pytest.fixture
def stream(kinesis):
    name = unique_name("efo")
    kinesis.create_stream(StreamName=name, ShardCount=1)
    wait_active(kinesis, name)
    arn = kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamARN"]
    yield name, arn
    delete_quietly_enforced(kinesis, name)


def delete_quietly_enforced(client, name):
    try:
        client.delete_stream(StreamName=name, EnforceConsumerDeletion=True)
    except Exception:
        delete_quietly(client, name)


@pytest.fixture
def consumer(kinesis, stream):
    name, arn = stream
    c = kinesis.register_stream_consumer(StreamARN=arn, ConsumerName="c1")["Consumer"]
    wait_consumer_active(kinesis, c["ConsumerARN"])
    return c["ConsumerARN"]


def test_consumer_lifecycle(kinesis, stream):
    name, arn = stream
    c = kinesis.register_stream_consumer(StreamARN=arn, ConsumerName="life")["Consumer"]
    assert c["ConsumerStatus"] == "CREATING"
    assert c["ConsumerARN"].startswith(arn + "/consumer/life:")
    secs = int(c["ConsumerARN"].rsplit(":", 1)[1])
    assert abs(secs - time.time()) < 60
    with pytest.raises(kinesis.exceptions.ResourceInUseException):
        kinesis.register_stream_consumer(StreamARN=arn, ConsumerName="life")
    d = wait_consumer_active(kinesis, c["ConsumerARN"])
    assert d["StreamARN"] == arn and d["ConsumerName"] == "life"
    d2 = kinesis.describe_stream_consumer(StreamARN=arn, ConsumerName="life")["ConsumerDescription"]
    assert d2["ConsumerARN"] == c["ConsumerARN"]
    listed = kinesis.list_stream_consumers(StreamARN=arn)["Consumers"]
    assert [x["ConsumerName"] for x in listed] == ["life"]
    summary = kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]
    assert summary["ConsumerCount"] == 1
    # Deleting a stream with consumers needs EnforceConsumerDeletion.
    with pytest.raises(kinesis.exceptions.ResourceInUseException):
        kinesis.delete_stream(StreamName=name)
    kinesis.deregister_stream_consumer(ConsumerARN=c["ConsumerARN"])
    deadline = time.time() + 20
    while time.time() < deadline:
        try:
            s = kinesis.describe_stream_consumer(ConsumerARN=c["ConsumerARN"])
            assert s["ConsumerDescription"]["ConsumerStatus"] == "DELETING"
        except kinesis.exceptions.ResourceNotFoundException:
            break
        time.sleep(0.2)
    else:
        raise AssertionError("consumer not removed")
    with pytest.raises(kinesis.exceptions.ResourceNotFoundException):
        kinesis.describe_stream_consumer(StreamARN=arn, ConsumerName="nope")


def test_at_most_20_consumers(kinesis, stream):
    _, arn = stream
    for i in range(20):
        kinesis.register_stream_consumer(StreamARN=arn, ConsumerName="c%d" % i)
    with pytest.raises(kinesis.exceptions.LimitExceededException):
        kinesis.register_stream_consumer(StreamARN=arn, ConsumerName="c20")
    page = kinesis.list_stream_consumers(StreamARN=arn, MaxResults=7)
    names = [c["ConsumerName"] for c in page["Consumers"]]
    while "NextToken" in page:
        page = kinesis.list_stream_consumers(StreamARN=arn, NextToken=page["NextToken"], MaxResults=7)
        names += [c["ConsumerName"] for c in page["Consumers"]]
    assert sorted(names) == sorted("c%d" % i for i in range(20))


def collect(client, consumer_arn, position, want, timeout=30, on_first=None):
    """Subscribes and returns (records, events) once `want` records arrived."""
    resp = client.subscribe_to_shard(
        ConsumerARN=consumer_arn, ShardId="shardId-000000000000", StartingPosition=position
    )
    records, events = [], []
    deadline = time.time() + timeout
    for ev in resp["EventStream"]:
        assert "SubscribeToShardEvent" in ev, ev
        e = ev["SubscribeToShardEvent"]
        events.append(e)
        if on_first is not None and len(events) == 1:
            on_first()
        records += e["Records"]
        if len(records) >= want or time.time() > deadline:
            break
    resp["EventStream"].close()
    return records, events


def test_subscribe_receives_records_put_during_subscription(kinesis, stream, consumer):
    name, _ = stream
    n = 60
    sent = []

    def producer():
        writer = make_client()
        for i in range(n):
            r = writer.put_record(StreamName=name, Data=b"r%d" % i, PartitionKey="k%d" % i)
            sent.append(r["SequenceNumber"])

    t = threading.Thread(target=producer)
    started = time.time()
    records, events = collect(kinesis, consumer, {"Type": "LATEST"}, n, on_first=t.start)
    t.join()
    assert [r["Data"] for r in records] == [b"r%d" % i for i in range(n)]
    assert [r["SequenceNumber"] for r in records] == sent
    assert all("ContinuationSequenceNumber" in e and "MillisBehindLatest" in e for e in events)
    assert events[-1]["ContinuationSequenceNumber"] == sent[-1]
    assert time.time() - started < 30


def test_starting_positions(kinesis, stream, consumer):
    name, _ = stream
    seqs = [
        kinesis.put_record(StreamName=name, Data=b"p%d" % i, PartitionKey="k")["SequenceNumber"]
        for i in range(5)
    ]
    t0 = time.time()

    def datas(position, want):
        recs, _ = collect(kinesis, consumer, position, want)
        time.sleep(5.2)  # the next subscription of this consumer and shard may take over
        return [r["Data"] for r in recs]

    assert datas({"Type": "TRIM_HORIZON"}, 5) == [b"p%d" % i for i in range(5)]
    assert datas({"Type": "AT_SEQUENCE_NUMBER", "SequenceNumber": seqs[2]}, 3) == [b"p2", b"p3", b"p4"]
    assert datas({"Type": "AFTER_SEQUENCE_NUMBER", "SequenceNumber": seqs[2]}, 2) == [b"p3", b"p4"]
    assert datas({"Type": "AT_TIMESTAMP", "Timestamp": t0 - 3600}, 5)[:1] == [b"p0"]


def test_second_subscription_within_5s_is_in_use_then_takes_over(kinesis, stream, consumer):
    first = kinesis.subscribe_to_shard(
        ConsumerARN=consumer, ShardId="shardId-000000000000", StartingPosition={"Type": "LATEST"}
    )
    next(iter(first["EventStream"]))
    with pytest.raises(kinesis.exceptions.ResourceInUseException):
        kinesis.subscribe_to_shard(
            ConsumerARN=consumer, ShardId="shardId-000000000000", StartingPosition={"Type": "LATEST"}
        )
    time.sleep(5.5)
    second = kinesis.subscribe_to_shard(
        ConsumerARN=consumer, ShardId="shardId-000000000000", StartingPosition={"Type": "LATEST"}
    )
    next(iter(second["EventStream"]))
    # The first subscription ends.
    deadline = time.time() + 10
    for _ in first["EventStream"]:
        assert time.time() < deadline, "first subscription still delivering"
    second["EventStream"].close()


def test_idle_subscription_sends_empty_events(kinesis, stream, consumer):
    resp = kinesis.subscribe_to_shard(
        ConsumerARN=consumer, ShardId="shardId-000000000000", StartingPosition={"Type": "LATEST"}
    )
    start = time.time()
    events = []
    for ev in resp["EventStream"]:
        events.append(ev["SubscribeToShardEvent"])
        if len(events) == 3:
            break
    resp["EventStream"].close()
    assert all(e["Records"] == [] for e in events)
    assert time.time() - start < 10


def test_subscribe_errors(kinesis, stream, consumer):
    _, arn = stream
    with pytest.raises(kinesis.exceptions.ResourceNotFoundException):
        kinesis.subscribe_to_shard(
            ConsumerARN=consumer, ShardId="shardId-000000000009", StartingPosition={"Type": "LATEST"}
        )
    with pytest.raises(kinesis.exceptions.ResourceNotFoundException):
        kinesis.subscribe_to_shard(
            ConsumerARN=arn + "/consumer/nope:1",
            ShardId="shardId-000000000000",
            StartingPosition={"Type": "LATEST"},
        )


def test_every_shard_of_a_multi_shard_stream(kinesis):
    """Subscriptions to shards led by every node (local and forwarded reads)."""
    name = unique_name("efo-multi")
    shards = 6
    kinesis.create_stream(StreamName=name, ShardCount=shards)
    try:
        wait_active(kinesis, name)
        desc = kinesis.list_shards(StreamName=name)["Shards"]
        arn = kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamARN"]
        c = kinesis.register_stream_consumer(StreamARN=arn, ConsumerName="m")["Consumer"]["ConsumerARN"]
        wait_consumer_active(kinesis, c)
        per_shard = 15
        ready = threading.Barrier(shards + 1, timeout=30)
        got = {}

        def reader(shard):
            client = make_client()
            resp = client.subscribe_to_shard(
                ConsumerARN=c, ShardId=shard["ShardId"], StartingPosition={"Type": "LATEST"}
            )
            recs = []
            deadline = time.time() + 40
            for i, ev in enumerate(resp["EventStream"]):
                if i == 0:
                    ready.wait()
                recs += ev["SubscribeToShardEvent"]["Records"]
                if len(recs) >= per_shard or time.time() > deadline:
                    break
            resp["EventStream"].close()
            got[shard["ShardId"]] = [r["Data"] for r in recs]

        threads = [threading.Thread(target=reader, args=(s,)) for s in desc]
        for t in threads:
            t.start()
        ready.wait()
        want = {}
        for s in desc:
            key = s["HashKeyRange"]["StartingHashKey"]
            want[s["ShardId"]] = [("%s-%d" % (s["ShardId"], i)).encode() for i in range(per_shard)]
            kinesis.put_records(
                StreamName=name,
                Records=[{"Data": d, "PartitionKey": "k", "ExplicitHashKey": key} for d in want[s["ShardId"]]],
            )
        for t in threads:
            t.join()
        assert got == want
    finally:
        delete_quietly_enforced(kinesis, name)


def test_child_shards_after_split(kinesis, stream, consumer):
    """Records put during the subscription arrive; after SplitShard of the subscribed shard
    the parent's last event carries ChildShards and the subscription ends."""
    name, _ = stream
    resp = kinesis.subscribe_to_shard(
        ConsumerARN=consumer, ShardId="shardId-000000000000", StartingPosition={"Type": "LATEST"}
    )
    n, mid = 10, 2**127
    sent, records, events = [], [], []
    split_at = None
    deadline = time.time() + 60
    for ev in resp["EventStream"]:
        assert "SubscribeToShardEvent" in ev, ev
        e = ev["SubscribeToShardEvent"]
        events.append(e)
        records += e["Records"]
        if len(events) == 1:
            for i in range(n):
                r = kinesis.put_record(StreamName=name, Data=b"s%d" % i, PartitionKey="k%d" % i)
                sent.append(r["SequenceNumber"])
        if split_at is None and len(records) >= n:
            kinesis.split_shard(
                StreamName=name, ShardToSplit="shardId-000000000000", NewStartingHashKey=str(mid)
            )
            split_at = len(events)
        assert time.time() < deadline, "subscription still open 60 s after the split"
    # The server ended the subscription: its last event names the children.
    assert [r["Data"] for r in records] == [b"s%d" % i for i in range(n)]
    assert [r["SequenceNumber"] for r in records] == sent
    assert split_at is not None
    last = events[-1]
    assert last["Records"] == []
    assert all("ChildShards" not in e for e in events[:-1])
    kids = sorted(last["ChildShards"], key=lambda c: c["ShardId"])
    assert kids == [
        {
            "ShardId": "shardId-000000000001",
            "ParentShards": ["shardId-000000000000"],
            "HashKeyRange": {"StartingHashKey": "0", "EndingHashKey": str(mid - 1)},
        },
        {
            "ShardId": "shardId-000000000002",
            "ParentShards": ["shardId-000000000000"],
            "HashKeyRange": {"StartingHashKey": str(mid), "EndingHashKey": str(2**128 - 1)},
        },
    ]
    wait_active(kinesis, name)

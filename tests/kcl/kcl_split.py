"""A real KCL consumer (kcl-rs, the Rust port of the Kinesis Client Library) against Spate,
with dynalite (a DynamoDB implementation) as the lease store, across a shard split.

    kcl_split.py --mode POLLING|FANOUT [--label NAME]

Environment (tests/kcl/run.sh sets it):
    SPATE_ENDPOINT      the Kinesis endpoint, http://127.0.0.1:PORT or https://localhost:PORT
                        (for TLS, the CA in AWS_CA_BUNDLE for boto3 and SSL_CERT_FILE for kcl-rs)
    DYNALITE_ENDPOINT   the DynamoDB endpoint, http://127.0.0.1:PORT
    KCL_WAIT_SECS       bound on each wait (default 120)

kcl-rs takes one `endpoint_url` for all of its clients, so the endpoints are given per
service through the standard AWS variables instead: AWS_ENDPOINT_URL_KINESIS and
AWS_ENDPOINT_URL_DYNAMODB (and AWS_ENDPOINT_URL_CLOUDWATCH for its metrics, which
neither server implements; the KCL only logs that publishing failed).

Scenario: a 2-shard stream; the KCL starts from TRIM_HORIZON; batch A is put and consumed;
shard 0 is split at the middle of its hash range while the consumer runs; batch B is put
(some of it lands on the children). Checks, each printed as PASS/FAIL:
  - every record id of A and B was processed (none missing);
  - the parent was drained before its children (KCL's lineage rule held);
  - the lease table in dynalite: the parent's lease is at SHARD_END, both children have
    leases naming the parent, and each child's checkpoint is its last processed record;
  - FANOUT only: the KCL registered a stream consumer (records came by SubscribeToShard).
Exit status 0 only if every check passed.
"""

import argparse
import os
import sys
import threading
import time
import uuid
from urllib.parse import urlparse

import boto3
from botocore.config import Config

REGION = "us-east-1"
CREDS = dict(aws_access_key_id="AKIAIOSFODNN7EXAMPLE", aws_secret_access_key="wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")


def loopback(var):
    ep = os.environ.get(var, "")
    if urlparse(ep).hostname not in ("127.0.0.1", "localhost", "::1"):
        sys.exit("%s must be a loopback http endpoint, got %r" % (var, ep))
    return ep


KINESIS_EP = loopback("SPATE_ENDPOINT")
DYNAMO_EP = loopback("DYNALITE_ENDPOINT")
WAIT = float(os.environ.get("KCL_WAIT_SECS", "120"))
# Set before kcl_rs builds its clients (it reads the standard AWS environment).
os.environ["AWS_ENDPOINT_URL_KINESIS"] = KINESIS_EP
os.environ["AWS_ENDPOINT_URL_DYNAMODB"] = DYNAMO_EP
os.environ["AWS_ENDPOINT_URL_CLOUDWATCH"] = DYNAMO_EP
os.environ.setdefault("RUST_LOG", "error")

from kcl_rs import RecordProcessorBase, Scheduler  # noqa: E402

CFG = Config(region_name=REGION, retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=5, read_timeout=30)
kinesis = boto3.client("kinesis", endpoint_url=KINESIS_EP, config=CFG, **CREDS)
dynamo = boto3.client("dynamodb", endpoint_url=DYNAMO_EP, config=CFG, **CREDS)

results = []  # (name, ok, detail)


def check(name, ok, detail=""):
    results.append((name, bool(ok), detail))
    print("%s %s%s" % ("PASS" if ok else "FAIL", name, (": " + detail) if detail else ""), flush=True)


def wait_until(what, pred, secs=WAIT, every=0.25):
    deadline = time.time() + secs
    while time.time() < deadline:
        if pred():
            return True
        time.sleep(every)
    print("timeout after %.0fs waiting for %s" % (secs, what), flush=True)
    return False


class Log:
    """What the record processors saw, in processing order, shared across shards."""

    def __init__(self):
        self.lock = threading.Lock()
        self.events = []  # (shard_id, record id, sequence number)
        self.ended = []  # shard ids whose shard_ended ran
        self.errors = []

    def ids(self):
        with self.lock:
            return {e[1] for e in self.events}


LOG = Log()


class Processor(RecordProcessorBase):
    def initialize(self, initialize_input):
        self.shard = initialize_input.shard_id

    def process_records(self, process_records_input):
        with LOG.lock:
            for r in process_records_input.records:
                LOG.events.append((self.shard, r.data.decode(), r.sequence_number))
        try:
            process_records_input.checkpointer.checkpoint()
        except Exception as e:  # a failed checkpoint shows in the lease checks
            with LOG.lock:
                LOG.errors.append("checkpoint %s: %r" % (self.shard, e))

    def lease_lost(self, lease_lost_input):
        pass

    def shard_ended(self, shard_ended_input):
        shard_ended_input.checkpointer.checkpoint()
        with LOG.lock:
            LOG.ended.append(self.shard)

    def shutdown_requested(self, shutdown_requested_input):
        try:
            shutdown_requested_input.checkpointer.checkpoint()
        except Exception:
            pass


def put_batch(stream, tag, n):
    """Puts n records with distinct ids and partition keys; returns {id: shard id}."""
    placed = {}
    for start in range(0, n, 100):
        entries = []
        for i in range(start, min(n, start + 100)):
            rid = "%s-%05d" % (tag, i)
            entries.append({"Data": rid.encode(), "PartitionKey": "pk-%s-%d" % (tag, i)})
        pending = entries
        for _ in range(20):
            out = kinesis.put_records(StreamName=stream, Records=pending)
            retry = []
            for e, r in zip(pending, out["Records"]):
                if "ShardId" in r:
                    placed[e["Data"].decode()] = r["ShardId"]
                else:
                    retry.append(e)
            if not retry:
                break
            pending = retry
            time.sleep(0.2)
        else:
            sys.exit("put_records kept failing for %d records" % len(pending))
    return placed


def leases(table):
    items, kw = [], {}
    while True:
        out = dynamo.scan(TableName=table, ConsistentRead=True, **kw)
        items += out["Items"]
        if "LastEvaluatedKey" not in out:
            return {i["leaseKey"]["S"]: i for i in items}
        kw = {"ExclusiveStartKey": out["LastEvaluatedKey"]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", choices=["POLLING", "FANOUT"], required=True)
    ap.add_argument("--records", type=int, default=300, help="records per batch")
    ap.add_argument("--label", help="names this run in the output (default: the mode)")
    args = ap.parse_args()
    mode = args.mode
    tag = args.label or mode.lower()
    stream = "kcl-%s-%s" % (tag, uuid.uuid4().hex[:8])
    app = "kclapp-%s-%s" % (tag, uuid.uuid4().hex[:8])
    print("[%s] Kinesis endpoint %s" % (tag, KINESIS_EP), flush=True)
    t0 = time.time()

    def stamp(msg):
        print("[%s %6.1fs] %s" % (tag, time.time() - t0, msg), flush=True)

    kinesis.create_stream(StreamName=stream, ShardCount=2)
    kinesis.get_waiter("stream_exists").wait(StreamName=stream, WaiterConfig={"Delay": 1, "MaxAttempts": int(WAIT)})
    stamp("stream %s ACTIVE with 2 shards; KCL application %s, %s mode" % (stream, app, mode))

    kw = dict(retrieval_mode=mode)
    if mode == "POLLING":
        kw.update(max_records=1000, idle_time_between_reads_millis=200)
    scheduler = Scheduler(
        stream_name=stream,
        application_name=app,
        record_processor_factory=Processor,
        worker_identifier="worker-%s" % tag,
        region=REGION,
        initial_position="TRIM_HORIZON",
        shard_sync_interval_millis=2000,
        access_key_id=CREDS["aws_access_key_id"],
        secret_access_key=CREDS["aws_secret_access_key"],
        **kw,
    )
    scheduler.start()
    try:
        placed_a = put_batch(stream, "a-" + tag, args.records)
        stamp("batch A: %d records on %s" % (len(placed_a), sorted(set(placed_a.values()))))
        wait_until("batch A consumed", lambda: set(placed_a) <= LOG.ids())
        stamp("batch A consumed: %d of %d ids" % (len(set(placed_a) & LOG.ids()), len(placed_a)))

        shard0 = kinesis.list_shards(StreamName=stream)["Shards"][0]
        parent = shard0["ShardId"]
        lo = int(shard0["HashKeyRange"]["StartingHashKey"])
        hi = int(shard0["HashKeyRange"]["EndingHashKey"])
        kinesis.split_shard(StreamName=stream, ShardToSplit=parent, NewStartingHashKey=str((lo + hi) // 2 + 1))
        kinesis.get_waiter("stream_exists").wait(StreamName=stream, WaiterConfig={"Delay": 1, "MaxAttempts": int(WAIT)})
        shards = kinesis.list_shards(StreamName=stream)["Shards"]
        children = sorted(s["ShardId"] for s in shards if s.get("ParentShardId") == parent)
        stamp("split %s into %s (consumer running)" % (parent, children))

        placed_b = put_batch(stream, "b-" + tag, args.records)
        on_children = sum(1 for s in placed_b.values() if s in children)
        stamp("batch B: %d records, %d of them on the children" % (len(placed_b), on_children))
        expected = set(placed_a) | set(placed_b)
        wait_until("every record consumed", lambda: expected <= LOG.ids())
        got = LOG.ids()
        missing = sorted(expected - got)
        stamp("consumed %d of %d ids" % (len(expected & got), len(expected)))

        check(
            "%s: every record processed (%d ids, split mid-stream)" % (tag, len(expected)),
            not missing,
            "missing %d, e.g. %s" % (len(missing), missing[:5]) if missing else "",
        )
        check("%s: records landed on both children" % tag, all(c in placed_b.values() for c in children), str(children))
        with LOG.lock:
            events = list(LOG.events)
            dup = len(events) - len({e[1] for e in events})
        last_parent = max((i for i, e in enumerate(events) if e[0] == parent), default=-1)
        first_child = min((i for i, e in enumerate(events) if e[0] in children), default=len(events))
        check(
            "%s: parent %s drained before its children" % (tag, parent),
            0 <= last_parent < first_child < len(events),
            "last parent record at #%d, first child record at #%d" % (last_parent, first_child),
        )
        stamp("%d records delivered in all, %d redeliveries (KCL is at-least-once)" % (len(events), dup))

        # The lease table: the parent's checkpoint reached SHARD_END, the children carry on.
        last_seq = {}
        for shard, _, seq in events:
            last_seq[shard] = seq

        def leases_settled():
            lt = leases(app)
            return (
                lt.get(parent, {}).get("checkpoint", {}).get("S") == "SHARD_END"
                and all(c in lt for c in children)
                and all(lt[c].get("checkpoint", {}).get("S") == last_seq.get(c) for c in children)
            )

        wait_until("lease table settled", leases_settled)
        lt = leases(app)
        for key in sorted(lt):
            item = lt[key]
            stamp(
                "lease %s checkpoint=%s owner=%s parents=%s"
                % (
                    key,
                    item.get("checkpoint", {}).get("S"),
                    item.get("leaseOwner", {}).get("S"),
                    item.get("parentShardId", {}).get("SS"),
                )
            )
        check(
            "%s: parent lease %s checkpointed at SHARD_END" % (tag, parent),
            lt.get(parent, {}).get("checkpoint", {}).get("S") == "SHARD_END",
            str(lt.get(parent, {}).get("checkpoint")),
        )
        check(
            "%s: both child leases exist and name the parent" % tag,
            all(parent in lt.get(c, {}).get("parentShardId", {}).get("SS", []) for c in children),
        )
        check(
            "%s: each child's checkpoint is its last processed record" % tag,
            all(lt.get(c, {}).get("checkpoint", {}).get("S") == last_seq.get(c) for c in children),
            "; ".join("%s: lease %s, last %s" % (c, lt.get(c, {}).get("checkpoint", {}).get("S"), last_seq.get(c)) for c in children),
        )
        check("%s: no checkpoint errors" % tag, not LOG.errors, "; ".join(LOG.errors[:3]))
        if mode == "FANOUT":
            arn = kinesis.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]["StreamARN"]
            consumers = kinesis.list_stream_consumers(StreamARN=arn)["Consumers"]
            names = [c["ConsumerName"] for c in consumers]
            check("%s: the KCL registered its enhanced fan-out consumer" % tag, names == [app], str(names))
    finally:
        try:
            scheduler.shutdown()
        except Exception as e:
            print("scheduler shutdown: %r" % e, flush=True)
        try:
            kinesis.delete_stream(StreamName=stream, EnforceConsumerDeletion=True)
        except Exception as e:
            print("delete_stream: %r" % e, flush=True)
    stamp("done")
    failed = sum(1 for _, ok, _ in results if not ok)
    return 1 if failed or not results else 0


if __name__ == "__main__":
    sys.exit(main())

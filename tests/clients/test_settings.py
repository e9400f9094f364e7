"""boto3 against the settings operations: tags (stream and resource variants), encryption,
enhanced monitoring, resource policies, limits, account settings, record size and warm
throughput; paginators and waiters; one error of each family, authentication included;
UpdateStreamMode (UPDATING -> ACTIVE, the 2-per-24-hours limit) and the per-stream
`spate:` limit tags."""

import json
import time
import os
import http.client
from urllib.parse import urlparse

import pytest
from botocore.exceptions import ClientError, ParamValidationError

from conftest import kinesalite_gap, unique_name, wait_active, delete_quietly

ACCOUNT = "000000000000"


def arn(name):
    return "arn:aws:kinesis:us-east-1:%s:stream/%s" % (ACCOUNT, name)


def error_code(excinfo):
    return excinfo.value.response["Error"]["Code"]


@kinesalite_gap
def test_create_with_tags_and_tag_operations(kinesis):
    name = unique_name("tags")
    kinesis.create_stream(StreamName=name, ShardCount=1, Tags={"team": "core"})
    try:
        wait_active(kinesis, name)
        kinesis.add_tags_to_stream(StreamName=name, Tags={"env": "dev", "empty": ""})
        got = kinesis.list_tags_for_stream(StreamName=name)
        assert got["Tags"] == [
            {"Key": "empty", "Value": ""},
            {"Key": "env", "Value": "dev"},
            {"Key": "team", "Value": "core"},
        ]
        assert got["HasMoreTags"] is False
        page = kinesis.list_tags_for_stream(StreamARN=arn(name), Limit=2)
        assert [t["Key"] for t in page["Tags"]] == ["empty", "env"] and page["HasMoreTags"]
        kinesis.remove_tags_from_stream(StreamName=name, TagKeys=["empty"])
        kinesis.tag_resource(ResourceARN=arn(name), Tags={"x": "1"})
        kinesis.untag_resource(ResourceARN=arn(name), TagKeys=["team"])
        tags = kinesis.list_tags_for_resource(ResourceARN=arn(name))["Tags"]
        assert tags == [{"Key": "env", "Value": "dev"}, {"Key": "x", "Value": "1"}]
        many = {"k%d" % i: "v" for i in range(48)}
        kinesis.add_tags_to_stream(StreamName=name, Tags=many)
        with pytest.raises(ClientError) as e:
            kinesis.add_tags_to_stream(StreamName=name, Tags={"one-too-many": "v"})
        assert error_code(e) == "InvalidArgumentException"
    finally:
        delete_quietly(kinesis, name)


@kinesalite_gap
def test_encryption_and_monitoring(kinesis, stream1):
    kinesis.start_stream_encryption(StreamName=stream1, EncryptionType="KMS", KeyId="alias/aws/kinesis")
    wait_active(kinesis, stream1)
    d = kinesis.describe_stream(StreamName=stream1)["StreamDescription"]
    assert d["EncryptionType"] == "KMS" and d["KeyId"] == "alias/aws/kinesis"
    put = kinesis.put_record(StreamName=stream1, Data=b"x", PartitionKey="k")
    assert put["EncryptionType"] == "KMS"
    kinesis.stop_stream_encryption(StreamName=stream1, EncryptionType="KMS", KeyId="alias/aws/kinesis")
    wait_active(kinesis, stream1)
    s = kinesis.describe_stream_summary(StreamName=stream1)["StreamDescriptionSummary"]
    assert s["EncryptionType"] == "NONE" and "KeyId" not in s

    out = kinesis.enable_enhanced_monitoring(StreamName=stream1, ShardLevelMetrics=["IncomingBytes"])
    assert out["CurrentShardLevelMetrics"] == [] and out["DesiredShardLevelMetrics"] == ["IncomingBytes"]
    assert out["StreamARN"] == arn(stream1)
    out = kinesis.enable_enhanced_monitoring(StreamName=stream1, ShardLevelMetrics=["ALL"])
    assert len(out["DesiredShardLevelMetrics"]) == 7
    out = kinesis.disable_enhanced_monitoring(StreamName=stream1, ShardLevelMetrics=["IncomingBytes"])
    assert "IncomingBytes" not in out["DesiredShardLevelMetrics"]
    em = kinesis.describe_stream(StreamName=stream1)["StreamDescription"]["EnhancedMonitoring"]
    assert em == [{"ShardLevelMetrics": out["DesiredShardLevelMetrics"]}]


@kinesalite_gap
def test_resource_policies(kinesis, stream1):
    assert kinesis.get_resource_policy(ResourceARN=arn(stream1))["Policy"] == "{}"
    policy = json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"AWS": "arn:aws:iam::%s:root" % ACCOUNT},
                    "Action": "kinesis:GetRecords",
                    "Resource": arn(stream1),
                }
            ],
        }
    )
    kinesis.put_resource_policy(ResourceARN=arn(stream1), Policy=policy)
    assert kinesis.get_resource_policy(ResourceARN=arn(stream1))["Policy"] == policy
    kinesis.delete_resource_policy(ResourceARN=arn(stream1))
    assert kinesis.get_resource_policy(ResourceARN=arn(stream1))["Policy"] == "{}"
    with pytest.raises(ClientError) as e:
        kinesis.delete_resource_policy(ResourceARN=arn(stream1))
    assert error_code(e) == "ResourceNotFoundException"


@kinesalite_gap
def test_limits_and_account_settings(kinesis, stream2):
    lim = kinesis.describe_limits()
    assert lim["ShardLimit"] >= 2 and lim["OpenShardCount"] >= 2
    assert lim["OnDemandStreamCountLimit"] >= lim["OnDemandStreamCount"] >= 0
    acct = kinesis.describe_account_settings()
    assert acct["MinimumThroughputBillingCommitment"]["Status"] in (
        "ENABLED",
        "DISABLED",
        "ENABLED_UNTIL_EARLIEST_ALLOWED_END",
    )
    out = kinesis.update_account_settings(MinimumThroughputBillingCommitment={"Status": "ENABLED"})
    c = out["MinimumThroughputBillingCommitment"]
    assert c["Status"] == "ENABLED" and c["EarliestAllowedEndAt"] > c["StartedAt"]
    out = kinesis.update_account_settings(MinimumThroughputBillingCommitment={"Status": "DISABLED"})
    assert out["MinimumThroughputBillingCommitment"]["Status"] == "ENABLED_UNTIL_EARLIEST_ALLOWED_END"


@kinesalite_gap
def test_max_record_size_and_warm_throughput(kinesis, stream1):
    big = b"x" * (1024 * 1024 + 1)
    with pytest.raises(ClientError) as e:
        kinesis.put_record(StreamName=stream1, Data=big, PartitionKey="k")
    assert error_code(e) == "ValidationException"
    kinesis.update_max_record_size(StreamARN=arn(stream1), MaxRecordSizeInKiB=2048)
    wait_active(kinesis, stream1)
    assert kinesis.describe_stream_summary(StreamName=stream1)["StreamDescriptionSummary"]["MaxRecordSizeInKiB"] == 2048
    kinesis.put_record(StreamName=stream1, Data=big, PartitionKey="k")
    with pytest.raises(ClientError) as e:
        kinesis.update_stream_warm_throughput(StreamName=stream1, WarmThroughputMiBps=10)
    assert error_code(e) == "InvalidArgumentException"  # PROVISIONED stream

    name = unique_name("warm")
    kinesis.create_stream(StreamName=name, StreamModeDetails={"StreamMode": "ON_DEMAND"})
    try:
        wait_active(kinesis, name)
        out = kinesis.update_stream_warm_throughput(StreamName=name, WarmThroughputMiBps=100)
        assert out["WarmThroughput"]["TargetMiBps"] == 100
        s = kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]
        assert s["WarmThroughput"]["TargetMiBps"] == 100
    finally:
        delete_quietly(kinesis, name)


@kinesalite_gap  # kinesalite's ListStreams has no NextToken, so the paginator stops at page 1
def test_paginators_and_waiters(kinesis, stream_factory):
    names = {stream_factory(1, prefix="pag") for _ in range(3)}
    listed = set()
    for page in kinesis.get_paginator("list_streams").paginate(PaginationConfig={"PageSize": 1}):
        listed.update(page["StreamNames"])
    assert names <= listed
    name = sorted(names)[0]
    shards = []
    for page in kinesis.get_paginator("describe_stream").paginate(StreamName=name):
        shards.extend(page["StreamDescription"]["Shards"])
    assert [s["ShardId"] for s in shards] == ["shardId-000000000000"]
    shards = []
    for page in kinesis.get_paginator("list_shards").paginate(StreamName=name, PaginationConfig={"PageSize": 1}):
        shards.extend(page["Shards"])
    assert len(shards) == 1
    kinesis.delete_stream(StreamName=name)
    kinesis.get_waiter("stream_not_exists").wait(StreamName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 60})


def test_error_families(kinesis, raw_kinesis, stream1):
    cases = [
        (lambda: kinesis.describe_stream(StreamName=unique_name("nope")), "ResourceNotFoundException"),
        (lambda: kinesis.create_stream(StreamName=stream1, ShardCount=1), "ResourceInUseException"),
        (lambda: raw_kinesis.describe_stream(StreamName="bad name!"), "ValidationException"),
        (lambda: kinesis.get_records(ShardIterator="AAAA" * 20), "InvalidArgumentException"),
        (lambda: kinesis.create_stream(StreamName=unique_name("big"), ShardCount=100000), "LimitExceededException"),
    ]
    for call, code in cases:
        with pytest.raises(ClientError) as e:
            call()
        assert error_code(e) == code, e.value.response


def raw_post(headers, body=b"{}"):
    u = urlparse(os.environ["SPATE_ENDPOINT"])
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=15)
    try:
        conn.request("POST", "/", body=body, headers=headers)
        r = conn.getresponse()
        return r.status, json.loads(r.read() or b"{}"), r.getheader("x-amzn-ErrorType")
    finally:
        conn.close()


@kinesalite_gap
def test_protocol_error_families():
    base = {"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": "Kinesis_20131202.ListStreams"}
    st, body, et = raw_post(base)
    assert (st, body["__type"], et) == (403, "MissingAuthenticationTokenException", "MissingAuthenticationTokenException")
    st, body, _ = raw_post(dict(base, Authorization="AWS4-HMAC-SHA256 Credential=a/20250101/us-east-1/kinesis/aws4_request"))
    assert body["__type"] == "IncompleteSignatureException"
    auth = (
        "AWS4-HMAC-SHA256 Credential=AKID/20250101/us-east-1/kinesis/aws4_request, "
        "SignedHeaders=content-type;host;x-amz-date, Signature=" + "0" * 64
    )
    ok = dict(base, Authorization=auth, **{"X-Amz-Date": "20250101T000000Z"})
    st, body, _ = raw_post(dict(ok, **{"X-Amz-Target": "Kinesis_20131202.CreateQueue"}))
    assert body["__type"] == "UnknownOperationException" and "not supported" in body["message"]
    st, body, _ = raw_post(ok, body=b'{"Limit": "ten"}')
    assert body["__type"] == "SerializationException"
    st, _, _ = raw_post(ok)
    assert st == 200


def test_cors_preflight():
    u = urlparse(os.environ["SPATE_ENDPOINT"])
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=15)
    try:
        conn.request(
            "OPTIONS",
            "/",
            headers={"Origin": "http://example.test", "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "x-amz-target,content-type"},
        )
        r = conn.getresponse()
        r.read()
        assert r.status == 200
        assert r.getheader("Access-Control-Allow-Origin") == "*"
        assert "x-amz-target" in r.getheader("Access-Control-Allow-Headers")
    finally:
        conn.close()


def test_param_validation_is_client_side(kinesis):
    with pytest.raises(ParamValidationError):
        kinesis.add_tags_to_stream(StreamName="s", Tags="not-a-map")


def _summary(kinesis, name):
    return kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]


@kinesalite_gap
def test_update_stream_mode_updating_active_and_limit(kinesis):
    """PROVISIONED (1 shard) -> ON_DEMAND: UPDATING while it is resharded to the on-demand
    minimum of 4 shards, then ACTIVE; a switch meanwhile is ResourceInUse. ON_DEMAND ->
    PROVISIONED keeps the 4 shards. The third switch in 24 h is LimitExceeded."""
    name = unique_name("mode")
    kinesis.create_stream(StreamName=name, ShardCount=1)
    try:
        wait_active(kinesis, name)
        with pytest.raises(ClientError) as e:
            kinesis.update_stream_mode(StreamARN=arn(name), StreamModeDetails={"StreamMode": "PROVISIONED"})
        assert error_code(e) == "InvalidArgumentException"

        kinesis.update_stream_mode(StreamARN=arn(name), StreamModeDetails={"StreamMode": "ON_DEMAND"})
        seen, in_use_checked = [], False
        deadline = time.time() + 60
        while time.time() < deadline:
            s = _summary(kinesis, name)
            seen.append((s["StreamStatus"], s["StreamModeDetails"]["StreamMode"]))
            if s["StreamStatus"] == "UPDATING" and not in_use_checked:
                with pytest.raises(ClientError) as e:
                    kinesis.update_stream_mode(
                        StreamARN=arn(name), StreamModeDetails={"StreamMode": "PROVISIONED"}
                    )
                assert error_code(e) == "ResourceInUseException"
                in_use_checked = True
            if seen[-1] == ("ACTIVE", "ON_DEMAND") and ("UPDATING", "ON_DEMAND") in seen:
                break
            time.sleep(0.05)
        assert ("UPDATING", "ON_DEMAND") in seen, seen
        assert seen[-1] == ("ACTIVE", "ON_DEMAND"), seen[-5:]
        assert in_use_checked
        s = _summary(kinesis, name)
        assert s["OpenShardCount"] == 4
        d = kinesis.describe_stream(StreamName=name)["StreamDescription"]
        assert d["StreamModeDetails"] == {"StreamMode": "ON_DEMAND"}
        summaries = kinesis.list_streams()["StreamSummaries"]
        mine = [x for x in summaries if x["StreamName"] == name]
        assert mine and mine[0]["StreamModeDetails"] == {"StreamMode": "ON_DEMAND"}
        open_shards = [
            sh for sh in kinesis.list_shards(StreamName=name)["Shards"]
            if "EndingSequenceNumber" not in sh["SequenceNumberRange"]
        ]
        assert len(open_shards) == 4

        kinesis.update_stream_mode(StreamARN=arn(name), StreamModeDetails={"StreamMode": "PROVISIONED"})
        deadline = time.time() + 30
        while time.time() < deadline:
            s = _summary(kinesis, name)
            if (s["StreamStatus"], s["StreamModeDetails"]["StreamMode"]) == ("ACTIVE", "PROVISIONED"):
                break
            time.sleep(0.05)
        assert (s["StreamStatus"], s["StreamModeDetails"]["StreamMode"]) == ("ACTIVE", "PROVISIONED")
        assert s["OpenShardCount"] == 4

        with pytest.raises(ClientError) as e:
            kinesis.update_stream_mode(StreamARN=arn(name), StreamModeDetails={"StreamMode": "ON_DEMAND"})
        assert error_code(e) == "LimitExceededException"
        assert "24-hour" in e.value.response["Error"]["Message"]
        assert _summary(kinesis, name)["StreamModeDetails"]["StreamMode"] == "PROVISIONED"
    finally:
        delete_quietly(kinesis, name)


def _no_retry_client():
    from conftest import REGION, _endpoint
    import boto3
    from botocore.config import Config

    return boto3.client(
        "kinesis",
        endpoint_url=_endpoint(),
        region_name=REGION,
        aws_access_key_id="AKIAIOSFODNN7EXAMPLE",
        aws_secret_access_key="wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        config=Config(region_name=REGION, retries={"total_max_attempts": 1}),
    )


def _write_burst(kinesis, name):
    """2,000 records in four quick PutRecords calls; returns how many were throttled."""
    throttled = 0
    for b in range(4):
        out = kinesis.put_records(
            StreamName=name,
            Records=[{"Data": b"x", "PartitionKey": "k%d" % i} for i in range(500)],
        )
        throttled += sum(
            1 for r in out["Records"] if r.get("ErrorCode") == "ProvisionedThroughputExceededException"
        )
    return throttled


def _read_burst(client, name):
    """15 GetRecords calls back to back; returns how many were throttled."""
    it = client.get_shard_iterator(StreamName=name, ShardId="shardId-000000000000", ShardIteratorType="LATEST")[
        "ShardIterator"
    ]
    throttled = 0
    for _ in range(15):
        try:
            client.get_records(ShardIterator=it, Limit=1)
        except ClientError as e:
            assert error_code_of(e) == "ProvisionedThroughputExceededException"
            throttled += 1
    return throttled


def error_code_of(err):
    return err.response["Error"]["Code"]


@kinesalite_gap
def test_per_stream_limit_tags_raise_and_lift_limits(kinesis):
    """The reserved tags spate:write-records-per-sec / spate:read-calls-per-sec raise or lift
    one stream's limits, taken up by the shard leader without a restart; bad values are
    InvalidArgumentException."""
    name = unique_name("limits")
    kinesis.create_stream(StreamName=name, ShardCount=1)
    raw = _no_retry_client()
    try:
        wait_active(kinesis, name)
        with pytest.raises(ClientError) as e:
            kinesis.add_tags_to_stream(StreamName=name, Tags={"spate:write-records-per-sec": "lots"})
        assert error_code(e) == "InvalidArgumentException"
        assert "spate:write-records-per-sec" in e.value.response["Error"]["Message"]

        # Default limits: 1,000 records/s and 5 reads/s per shard.
        assert _write_burst(kinesis, name) > 0
        assert _read_burst(raw, name) > 0

        kinesis.add_tags_to_stream(
            StreamName=name,
            Tags={"spate:write-records-per-sec": "100000", "spate:read-calls-per-sec": "unlimited"},
        )
        time.sleep(1.5)  # let the buckets refill; the tag itself applies within milliseconds
        deadline = time.time() + 10
        while True:
            w, r = _write_burst(kinesis, name), _read_burst(raw, name)
            if (w, r) == (0, 0) or time.time() > deadline:
                break
            time.sleep(0.5)
        assert (w, r) == (0, 0)

        # Removing the tags restores the cluster limits.
        kinesis.remove_tags_from_stream(
            StreamName=name, TagKeys=["spate:write-records-per-sec", "spate:read-calls-per-sec"]
        )
        deadline = time.time() + 10
        while True:
            w = _write_burst(kinesis, name)
            if w > 0 or time.time() > deadline:
                break
            time.sleep(0.2)
        assert w > 0
    finally:
        delete_quietly(kinesis, name)

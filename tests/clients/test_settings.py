"""boto3 against the settings operations: tags (stream and resource variants), encryption,
enhanced monitoring, resource policies, limits, account settings, record size and warm
throughput; paginators and waiters; one error of each family, authentication included."""

import json
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

"""Shared fixtures for the real-client API tests.

The endpoint comes from SPATE_ENDPOINT (tests/clients/run.sh sets it). Only loopback
endpoints are accepted: these tests must never reach a real AWS account.
"""

import os
import time
import uuid
from urllib.parse import urlparse

import boto3
import pytest
from botocore.config import Config

REGION = "us-east-1"

# Behaviour kinesalite does not implement; with SPATE_TARGET=kinesalite these tests are
# expected to fail (strict xfail), everywhere else they must pass.
kinesalite_gap = pytest.mark.xfail(
    os.environ.get("SPATE_TARGET") == "kinesalite", reason="not implemented by kinesalite", strict=True
)
WAIT_SECS = float(os.environ.get("SPATE_WAIT_SECS", "60"))


def _endpoint():
    ep = os.environ.get("SPATE_ENDPOINT")
    if not ep:
        pytest.exit("SPATE_ENDPOINT is not set (use tests/clients/run.sh)", returncode=2)
    host = urlparse(ep).hostname
    if host not in ("127.0.0.1", "localhost", "::1"):
        pytest.exit("SPATE_ENDPOINT must be a loopback address, got %r" % ep, returncode=2)
    return ep


def make_client(parameter_validation=True):
    cfg = Config(
        region_name=REGION,
        retries={"max_attempts": 2, "mode": "standard"},
        connect_timeout=5,
        read_timeout=30,
        parameter_validation=parameter_validation,
    )
    return boto3.client(
        "kinesis",
        endpoint_url=_endpoint(),
        region_name=REGION,
        aws_access_key_id="AKIAIOSFODNN7EXAMPLE",
        aws_secret_access_key="wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        config=cfg,
    )


@pytest.fixture(scope="session")
def kinesis():
    return make_client()


@pytest.fixture(scope="session")
def raw_kinesis():
    """A client with botocore's client-side parameter validation turned off."""
    return make_client(parameter_validation=False)


def unique_name(prefix="pyt"):
    return "%s-%d-%s" % (prefix, int(time.time()), uuid.uuid4().hex[:8])


def wait_active(client, name):
    client.get_waiter("stream_exists").wait(
        StreamName=name, WaiterConfig={"Delay": 1, "MaxAttempts": int(WAIT_SECS)}
    )


def delete_quietly(client, name):
    try:
        client.delete_stream(StreamName=name)
    except client.exceptions.ResourceNotFoundException:
        pass
    except Exception as e:  # cleanup must not mask the test's own result
        print("cleanup of %s failed: %r" % (name, e))


@pytest.fixture
def stream_factory(kinesis):
    """Create ACTIVE streams with unique names; delete them after the test."""
    created = []

    def make(shards=1, prefix="pyt"):
        name = unique_name(prefix)
        kinesis.create_stream(StreamName=name, ShardCount=shards)
        created.append(name)
        wait_active(kinesis, name)
        return name

    yield make
    for name in created:
        delete_quietly(kinesis, name)


@pytest.fixture
def stream1(stream_factory):
    return stream_factory(1)


@pytest.fixture
def stream2(stream_factory):
    return stream_factory(2)

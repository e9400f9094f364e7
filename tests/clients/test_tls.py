"""The TLS listener of `spate dev` with clients that verify certificates against the dev CA:
boto3 over HTTP/1.1, and an ALPN-negotiated HTTP/2 exchange."""

import os
import socket
import ssl
from urllib.parse import urlparse

import boto3
import pytest
from botocore.config import Config

from conftest import REGION, unique_name, wait_active, delete_quietly

TLS = os.environ.get("SPATE_TLS_ENDPOINT")
CA = os.environ.get("SPATE_DEV_CA")
pytestmark = pytest.mark.skipif(not (TLS and CA), reason="SPATE_TLS_ENDPOINT / SPATE_DEV_CA not set")


def tls_client():
    return boto3.client(
        "kinesis",
        endpoint_url=TLS,
        region_name=REGION,
        aws_access_key_id="AKIAIOSFODNN7EXAMPLE",
        aws_secret_access_key="secret",
        verify=CA,
        config=Config(retries={"max_attempts": 2}, connect_timeout=5, read_timeout=30),
    )


def test_boto3_verifies_and_works_over_tls():
    c = tls_client()
    name = unique_name("tls")
    c.create_stream(StreamName=name, ShardCount=1)
    try:
        wait_active(c, name)
        put = c.put_record(StreamName=name, Data=b"over tls", PartitionKey="k")
        it = c.get_shard_iterator(StreamName=name, ShardId=put["ShardId"], ShardIteratorType="TRIM_HORIZON")
        got = c.get_records(ShardIterator=it["ShardIterator"])
        assert [r["Data"] for r in got["Records"]] == [b"over tls"]
    finally:
        delete_quietly(c, name)


def test_untrusted_client_is_refused():
    c = boto3.client(
        "kinesis", endpoint_url=TLS, region_name=REGION, aws_access_key_id="a", aws_secret_access_key="b",
        config=Config(retries={"max_attempts": 1}, connect_timeout=5, read_timeout=10),
    )
    with pytest.raises(Exception) as e:
        c.list_streams()
    assert "certificate" in str(e.value).lower() or "ssl" in str(e.value).lower()


def test_alpn_h2_with_verification():
    u = urlparse(TLS)
    ctx = ssl.create_default_context(cafile=CA)
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    with socket.create_connection((u.hostname, u.port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=u.hostname) as s:
            assert s.selected_alpn_protocol() == "h2"
            # Client preface and an empty SETTINGS frame; the server answers with SETTINGS.
            s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")
            head = s.recv(9)
            assert len(head) == 9 and head[3] == 0x04, head
    ctx1 = ssl.create_default_context(cafile=CA)
    ctx1.set_alpn_protocols(["http/1.1"])
    with socket.create_connection((u.hostname, u.port), timeout=10) as raw:
        with ctx1.wrap_socket(raw, server_hostname=u.hostname) as s:
            assert s.selected_alpn_protocol() == "http/1.1"

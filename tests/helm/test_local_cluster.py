"""Run the chart's own StatefulSet container (command, args, env) for every ordinal (0-2; 0-3 in the
scale-out case, where ordinal 3 is not a voter and joins the cluster) as local processes and prove
that the configuration forms a working 3-zone cluster: /ready on every node, every node registered
with the zone its pod was given (/v1/nodes; with zones from node labels the rendered peers say
"unknown"), then CreateStream, PutRecord and GetRecords over the Kinesis JSON API, and finally the
rendered preStop hook drains a node: it exits once the node leads no Raft group. Last, a lost PVC:
ordinal 1 is SIGKILLed, its volumes emptied and its rendered command started again; it must rejoin
under a new node id, its old id must be decommissioned automatically, and it must serve the record.

Only addresses, ports and paths are rewritten, as a kubelet + cluster DNS would resolve them:
  - the headless-Service DNS names of the peers (also the start script's advertised
    `${POD_NAME}.<headless>...` address) -> 127.0.0.1 with a distinct port per node;
  - the listen addresses (0.0.0.0:<port>) -> 127.0.0.1 with a distinct port per node;
  - every volumeMount path -> a per-node temporary directory (the ConfigMap's files are written
    there, as kubelet projects them), the image's binary path -> $SPATE_BIN;
  - Downward API env (metadata.name, spec.nodeName ...) -> the values Kubernetes would inject.
The zone initContainer (defaults, zones.source=nodeLabel) is emulated by writing the zone file
it would write. Everything else (the start script, env, TOML) runs exactly as rendered.
"""
from __future__ import annotations

import base64
import json
import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request

import pytest
import yaml

from conftest import CHART, NAMESPACE, RELEASE, documents, find

SPATE_BIN = pathlib.Path(os.environ.get("SPATE_BIN", pathlib.Path.home() / ".cache/spate/target/debug/spate"))
IMAGE_BIN = "/usr/local/bin/spate"
ZONES = ["az-a", "az-b", "az-c", "az-a"]
CASES = {
    "explicit-zones": yaml.safe_load((CHART / "ci" / "explicit-zones-values.yaml").read_text()),
    "defaults-nodeLabel": {},
    "scale-out-4-nodeLabel": {"replicaCount": 4},
}


def free_ports(n: int) -> list[int]:
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def http(method: str, url: str, body: bytes | None = None, headers: dict | None = None, timeout: float = 5):
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def kinesis(port: int, op: str, payload: dict) -> tuple[int, dict]:
    status, body = http(
        "POST",
        f"http://127.0.0.1:{port}/",
        json.dumps(payload).encode(),
        {
            "Content-Type": "application/x-amz-json-1.1",
            "X-Amz-Target": f"Kinesis_20131202.{op}",
            "Authorization": "AWS4-HMAC-SHA256 Credential=spate/20260101/us-east-1/kinesis/aws4_request, "
            "SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature=" + "0" * 64,
            "X-Amz-Date": time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()),
        },
        timeout=15,
    )
    try:
        return status, json.loads(body or b"{}")
    except ValueError:
        return status, {"raw": body.decode(errors="replace")}


class Node:
    def __init__(self, ordinal, argv, env, log_path):
        self.ordinal, self.argv, self.env, self.log_path = ordinal, argv, env, log_path
        self.proc = None

    def start(self):
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(self.argv, env=self.env, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        if self.proc:
            self.log.close()

    def tail(self, n=40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


def build_nodes(values: dict, tmp: pathlib.Path, zone_from_init: bool):
    docs = documents(values)
    sts = find(docs, "StatefulSet")
    cm = find(docs, "ConfigMap")
    pod = sts["spec"]["template"]["spec"]
    (c,) = [c for c in pod["containers"] if c["name"] == "spate"]
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    n = int(sts["spec"]["replicas"])
    local = {i: dict(zip(("api", "peer", "admin"), free_ports(3))) for i in range(n)}
    sts_name = sts["metadata"]["name"]
    headless = sts["spec"]["serviceName"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    vct = {v["metadata"]["name"] for v in sts["spec"]["volumeClaimTemplates"]}

    def rewrite_addrs(text: str, i: int) -> str:
        # Peer DNS names -> loopback with each peer's own port.
        for j in range(n):
            host = f"{sts_name}-{j}.{headless}.{NAMESPACE}.svc.cluster.local"
            text = text.replace(f"{host}:{ports['peer']}", f"127.0.0.1:{local[j]['peer']}")
        # This pod's own advertised address (the start script builds it from POD_NAME).
        text = text.replace(f"${{POD_NAME}}.{headless}.{NAMESPACE}.svc.cluster.local:{ports['peer']}",
                            f"127.0.0.1:{local[i]['peer']}")
        # This node's listen addresses.
        for name in ("api", "peer", "admin"):
            text = re.sub(rf"\b(0\.0\.0\.0|\[::\]|127\.0\.0\.1):{ports[name]}\b", f"127.0.0.1:{local[i][name]}", text)
        return text

    nodes = []
    for i in range(n):
        root = tmp / f"{sts_name}-{i}"
        mounts = {}
        for m in c["volumeMounts"]:
            d = root / m["name"]
            d.mkdir(parents=True, exist_ok=True)
            mounts[m["mountPath"]] = d
            vol = volumes.get(m["name"])
            if vol and "configMap" in vol:
                assert vol["configMap"]["name"] == cm["metadata"]["name"]
                for key, content in cm["data"].items():
                    (d / key).write_text(content)
            elif m["name"] not in vct and not (vol and "emptyDir" in vol):
                pytest.fail(f"unexpected volume {m['name']} in this value set")

        # One pass over the text (a local path may itself start with a mount path, e.g. /tmp).
        targets = {IMAGE_BIN: str(SPATE_BIN), **{mp: str(d) for mp, d in mounts.items()}}
        path_re = re.compile("(" + "|".join(re.escape(k) for k in sorted(targets, key=len, reverse=True))
                             + r")(?=[/\"' \n]|$)")

        def rewrite_paths(text: str, path_re=path_re, targets=targets) -> str:
            return path_re.sub(lambda m: targets[m.group(1)], text)

        # Rewrite the ConfigMap copy of this node (addresses + paths).
        for key in cm["data"]:
            f = mounts["/etc/spate"] / key
            f.write_text(rewrite_paths(rewrite_addrs(f.read_text(), i)))
        if zone_from_init:  # what the zone initContainer writes
            (mounts["/var/run/spate/zone"] / "zone").write_text(ZONES[i])

        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(root)}
        downward = {
            "metadata.name": f"{sts_name}-{i}",
            "metadata.namespace": NAMESPACE,
            "spec.nodeName": f"node-{i}",
            "metadata.labels['topology.kubernetes.io/zone']": ZONES[i],
        }
        for e in c.get("env", []):
            if "value" in e:
                env[e["name"]] = rewrite_paths(rewrite_addrs(e["value"], i))
            elif "fieldRef" in e.get("valueFrom", {}):
                env[e["name"]] = downward[e["valueFrom"]["fieldRef"]["fieldPath"]]
            else:
                pytest.fail(f"env {e['name']}: source not emulated here: {e['valueFrom']}")
        argv = [rewrite_paths(rewrite_addrs(a, i)) for a in c["command"] + c["args"]]
        prestop = [rewrite_paths(rewrite_addrs(a, i)) for a in c["lifecycle"]["preStop"]["exec"]["command"]]
        node = Node(i, argv, env, root / "spate.log")
        node.ports, node.prestop = local[i], prestop
        # The pod's PersistentVolumeClaims (what a lost PVC loses).
        node.pvcs = [mounts[m["mountPath"]] for m in c["volumeMounts"] if m["name"] in vct]
        nodes.append(node)
    return nodes


def wait_ready(nodes, timeout=120):
    deadline = time.time() + timeout
    pending = set(range(len(nodes)))
    while pending and time.time() < deadline:
        for i in sorted(pending):
            nd = nodes[i]
            if nd.proc.poll() is not None:
                pytest.fail(f"node {i} exited with {nd.proc.returncode}:\n{nd.tail()}")
            try:
                status, _ = http("GET", f"http://127.0.0.1:{nd.ports['admin']}/ready", timeout=2)
            except OSError:
                continue
            if status == 200:
                pending.discard(i)
        time.sleep(0.5)
    if pending:
        pytest.fail("not ready: " + ", ".join(f"node {i}:\n{nodes[i].tail()}" for i in sorted(pending)))


def retry(fn, timeout=60, what="operation"):
    deadline, last = time.time() + timeout, None
    while time.time() < deadline:
        try:
            ok, last = fn()
            if ok:
                return last
        except OSError as e:
            last = e
        time.sleep(0.5)
    pytest.fail(f"{what} did not succeed in {timeout}s: {last}")


@pytest.mark.parametrize("case", list(CASES))
def test_rendered_statefulset_forms_a_cluster(case, tmp_path):
    if not SPATE_BIN.is_file() or not os.access(SPATE_BIN, os.X_OK):
        pytest.skip(f"spate binary not found at {SPATE_BIN} (build it, or set SPATE_BIN)")
    values = CASES[case]
    nodes = build_nodes(values, tmp_path, zone_from_init=("nodeLabel" in case))
    try:
        for nd in nodes:
            nd.start()
        wait_ready(nodes)
        api0, api2 = nodes[0].ports["api"], nodes[2].ports["api"]
        stream = f"helm-local-{case}"
        status, body = kinesis(api0, "CreateStream", {"StreamName": stream, "ShardCount": 2})
        assert status == 200, body

        def active():
            s, b = kinesis(api2, "DescribeStreamSummary", {"StreamName": stream})
            return s == 200 and b["StreamDescriptionSummary"]["StreamStatus"] == "ACTIVE", b

        retry(active, what="stream ACTIVE")
        data = base64.b64encode(b"hello from the chart").decode()
        status, put = kinesis(api2, "PutRecord", {"StreamName": stream, "PartitionKey": "pk-1", "Data": data})
        assert status == 200, put
        status, it = kinesis(api0, "GetShardIterator", {"StreamName": stream, "ShardId": put["ShardId"],
                                                        "ShardIteratorType": "TRIM_HORIZON"})
        assert status == 200, it

        def got():
            s, b = kinesis(nodes[1].ports["api"], "GetRecords", {"ShardIterator": it["ShardIterator"]})
            return s == 200 and any(r["Data"] == data for r in b.get("Records", [])), b

        recs = retry(got, timeout=30, what="GetRecords")
        assert [r["SequenceNumber"] for r in recs["Records"] if r["Data"] == data] == [put["SequenceNumber"]]

        # Every node registered itself with its pod's zone; ordinals >= 3 are non-voters.
        status, body = http("GET", f"http://127.0.0.1:{nodes[0].ports['admin']}/v1/nodes")
        assert status == 200, body
        registry = {e["id"]: e for e in json.loads(body)}
        assert sorted(registry) == list(range(len(nodes))), registry
        for i in registry:
            assert registry[i]["zone"] == ZONES[i], registry
            assert registry[i]["role"] == ("voter" if i < 3 else "learner"), registry

        # The rendered preStop hook drains the node that leads the shard: it exits 0 once the
        # node leads no Raft group (it printed "drained", not the timeout), well within the
        # grace period, and the node keeps serving as a follower.
        leader = next(nd for nd in nodes for s in json.loads(
            http("GET", f"http://127.0.0.1:{nd.ports['admin']}/v1/shards")[1])
            if s["shard_id"] == put["ShardId"] and s["stream"] == stream and s["leader"] == nd.ordinal)
        t0 = time.time()
        res = subprocess.run(leader.prestop, env=leader.env, capture_output=True, text=True, timeout=120)
        took = time.time() - t0
        assert res.returncode == 0 and "spate: drained" in res.stderr, res.stderr
        assert took < 30, took
        status, body = http("GET", f"http://127.0.0.1:{leader.ports['admin']}/v1/drain")
        state = json.loads(body)
        assert status == 200 and state["drained"] and not state["leads_meta"] and not state["leads_shards"], state
        _, body = http("GET", f"http://127.0.0.1:{leader.ports['admin']}/v1/shards")
        assert all(s["leader"] != leader.ordinal for s in json.loads(body)), body
        status, put2 = kinesis(leader.ports["api"], "PutRecord",
                               {"StreamName": stream, "PartitionKey": "pk-1", "Data": data})
        assert status == 200 and put2["ShardId"] == put["ShardId"], put2

        # A lost PVC: the pod of ordinal 1 comes back with empty volumes and the same rendered
        # command. It must rejoin under a new node id (never under its old one, whose replicas
        # it no longer has), the old id must be decommissioned automatically, and the node
        # must serve the record written before the loss.
        lost = nodes[1]
        os.killpg(lost.proc.pid, signal.SIGKILL)
        lost.proc.wait(10)
        lost.log.close()
        assert lost.pvcs, "the StatefulSet has no volumeClaimTemplates"
        for d in lost.pvcs:
            shutil.rmtree(d)
            d.mkdir()
        lost.start()
        wait_ready([lost])
        status, body = http("GET", f"http://127.0.0.1:{lost.ports['admin']}/v1/identity")
        assert status == 200, body
        assert json.loads(body)["id"] == len(nodes), body

        def old_id_retired():
            s, b = http("GET", f"http://127.0.0.1:{nodes[0].ports['admin']}/v1/decommission?node=1")
            st = json.loads(b)
            return s == 200 and st["meta_role"] == "none", st

        retry(old_id_retired, timeout=90, what="decommissioning of the lost node's old id")
        status, it = kinesis(lost.ports["api"], "GetShardIterator", {"StreamName": stream, "ShardId": put["ShardId"],
                                                                     "ShardIteratorType": "TRIM_HORIZON"})
        assert status == 200, it

        def got_after_loss():
            s, b = kinesis(lost.ports["api"], "GetRecords", {"ShardIterator": it["ShardIterator"]})
            return s == 200 and any(r["Data"] == data for r in b.get("Records", [])), b

        retry(got_after_loss, timeout=30, what="GetRecords through the replaced node")
    finally:
        for nd in nodes:
            nd.stop()

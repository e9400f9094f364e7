"""The shell scripts the chart renders (start, zone initContainer, preStop, helm test) parse with
/bin/sh, and the zone initContainer extracts the Node's zone label as it will in a cluster."""
from __future__ import annotations

import json
import os
import pathlib
import subprocess

import pytest

from conftest import VALUE_SETS, documents, find


def scripts(values):
    docs = documents(values)
    pod = find(docs, "StatefulSet")["spec"]["template"]["spec"]
    c = pod["containers"][0]
    out = {"start": c["args"][0], "preStop": c["lifecycle"]["preStop"]["exec"]["command"][-1]}
    for init in pod.get("initContainers", []):
        out["init-" + init["name"]] = init["args"][0]
    out["helm-test"] = find(docs, "Pod")["spec"]["containers"][0]["args"][0]
    return out


@pytest.mark.parametrize("vs", VALUE_SETS, ids=[v[0] for v in VALUE_SETS])
def test_rendered_scripts_parse(vs):
    for name, script in scripts(vs[1]).items():
        res = subprocess.run(["sh", "-n", "-c", script], capture_output=True, text=True)
        assert res.returncode == 0, f"{name}: {res.stderr}"


NODE_PRETTY = json.dumps({"kind": "Node", "metadata": {"name": "n1", "labels": {
    "kubernetes.io/hostname": "n1", "topology.kubernetes.io/region": "eu-west-1",
    "topology.kubernetes.io/zone": "eu-west-1b"}}}, indent=2)
NODE_COMPACT = json.dumps({"kind": "Node", "metadata": {"name": "n1", "labels": {
    "topology.kubernetes.io/zone": "us-east-1c", "x": "y"}}}, separators=(",", ":"))
NODE_NO_ZONE = json.dumps({"kind": "Node", "metadata": {"name": "n1", "labels": {"a": "b"}}})


def run_zone_init(tmp_path: pathlib.Path, node_json: str, values: dict):
    script = scripts(values)["init-zone"]
    sa, zone_dir, bindir = tmp_path / "sa", tmp_path / "zone", tmp_path / "bin"
    for d in (sa, zone_dir, bindir):
        d.mkdir(exist_ok=True)
    (sa / "token").write_text("tok")
    (sa / "ca.crt").write_text("ca")
    (tmp_path / "node.json").write_text(node_json)
    # A stand-in for curl that checks the request and answers with the Node object.
    (bindir / "curl").write_text(
        "#!/bin/sh\n"
        'case "$*" in *"Authorization: Bearer tok"*"https://10.0.0.1:443/api/v1/nodes/n1"*) ;; '
        '*) echo "unexpected curl $*" >&2; exit 2;; esac\n'
        f'cat {tmp_path / "node.json"}\n')
    (bindir / "curl").chmod(0o755)
    script = script.replace("/var/run/secrets/spate-zone", str(sa)).replace("/var/run/spate/zone", str(zone_dir))
    env = {"PATH": f"{bindir}:{os.environ['PATH']}", "NODE_NAME": "n1",
           "KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443"}
    res = subprocess.run(["sh", "-c", script], env=env, capture_output=True, text=True, timeout=30)
    zone_file = zone_dir / "zone"
    return res, (zone_file.read_text() if zone_file.exists() else None)


@pytest.mark.parametrize("node_json, zone", [(NODE_PRETTY, "eu-west-1b"), (NODE_COMPACT, "us-east-1c")])
def test_zone_init_reads_node_label(tmp_path, node_json, zone):
    res, got = run_zone_init(tmp_path, node_json, {})
    assert res.returncode == 0, res.stderr
    assert got == zone


def test_zone_init_without_label_fails_or_uses_fallback(tmp_path):
    res, got = run_zone_init(tmp_path, NODE_NO_ZONE, {})
    assert res.returncode != 0 and got is None
    assert "zones.fallback" in res.stderr
    res, got = run_zone_init(tmp_path, NODE_NO_ZONE, {"zones": {"fallback": "dev"}})
    assert res.returncode == 0 and got == "dev"


def test_start_script_derives_id_and_explicit_zone(tmp_path):
    values = {"zones": {"source": "explicit", "explicit": {"0": "az-a", "1": "az-b", "2": "az-c"}}}
    script = scripts(values)["start"].replace(
        "exec /usr/local/bin/spate server", 'echo "id=$SPATE_NODE__ID zone=$SPATE_NODE__ZONE"; exit 0; #')
    for pod, expect in (("spate-0", "id=0 zone=az-a"), ("my-rel-spate-2", "id=2 zone=az-c")):
        res = subprocess.run(["sh", "-c", script], env={"POD_NAME": pod, "PATH": os.environ["PATH"]},
                             capture_output=True, text=True)
        assert res.returncode == 0 and res.stdout.strip() == expect, res
    res = subprocess.run(["sh", "-c", script], env={"POD_NAME": "spate-7", "PATH": os.environ["PATH"]},
                         capture_output=True, text=True)
    assert res.returncode != 0 and "no zone for ordinal 7" in res.stderr


def test_start_script_advertises_the_pod_address():
    script = scripts({"replicaCount": 4})["start"].replace(
        "exec /usr/local/bin/spate server", 'echo "$SPATE_CLUSTER__ADVERTISE"; exit 0; #')
    env = {"POD_NAME": "spate-3", "PATH": os.environ["PATH"]}
    script = script.replace('SPATE_NODE__ZONE="$(cat /var/run/spate/zone/zone)"', "SPATE_NODE__ZONE=az-a")
    res = subprocess.run(["sh", "-c", script], env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "spate-3.spate-headless.kinesis.svc.cluster.local:7400"

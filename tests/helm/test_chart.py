"""Render, lint and validate the chart for its defaults and every ci/*-values.yaml."""
from __future__ import annotations

import tomllib

import pytest

from conftest import CHART, NAMESPACE, RELEASE, documents, find, render

# Kubernetes versions whose schemas (bundled by kubernetes-validate) every manifest must pass in
# strict mode (unknown fields are errors).
KUBE_VERSIONS = ["1.29.0", "1.31.0", "1.33.0"]

# Custom resources: kubernetes-validate ships only the built-in API schemas, so these are not
# schema-validated here (their shape is checked by the structural tests below instead).
CRD_KINDS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("cert-manager.io/v1", "Certificate"),
}


def test_lint_strict():
    import helm_python as helm

    report = helm.lint(str(CHART), strict=True, namespace=NAMESPACE)
    assert report["errors"] == [], report
    assert not [m for m in report["messages"] if m["severity"] >= 2], report


def test_lint_every_value_set(value_set):
    import helm_python as helm

    _, values = value_set
    report = helm.lint(str(CHART), values, strict=True, namespace=NAMESPACE, kube_version="v1.29.0")
    assert report["errors"] == [], report


def test_values_schema_accepts(value_set):
    import helm_python as helm

    _, values = value_set
    with helm.Chart.load(str(CHART)) as chart:
        chart.validate_schema(values)


@pytest.mark.parametrize(
    "bad",
    [
        {"unknownKey": 1},
        {"replicaCount": 0},
        {"zones": {"source": "dns"}},
        {"zones": {"source": "explicit", "explicit": {"a": "az-a"}}},
        {"kinesis": {"accountId": "123"}},
        {"podManagementPolicy": "OrderedReady"},
        {"image": {"repository": "x", "digest": "latest"}},
        {"pdb": {"maxUnavailable": 0}},
        {"rebalance": {"maxMoves": 0}},
        {"rebalance": {"enabled": "yes"}},
    ],
)
def test_values_schema_rejects(bad):
    import helm_python as helm

    with helm.Chart.load(str(CHART)) as chart:
        with pytest.raises(helm.HelmError):
            chart.validate_schema(bad)


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"zones": {"source": "explicit", "explicit": {"0": "a", "1": "b"}}}, "no zone for ordinal 2"),
        ({"tls": {"enabled": True}}, "tls.existingSecret"),
        ({"tls": {"enabled": True, "certManager": {"enabled": True}}}, "issuerRef.name"),
        ({"auth": {"enabled": True}}, "auth.existingSecret"),
        ({"drain": {"timeoutSeconds": 120}}, "terminationGracePeriodSeconds"),
        ({"replicaCount": 2}, "below cluster.voters"),
    ],
)
def test_render_refuses_inconsistent_values(bad, message):
    import helm_python as helm

    with pytest.raises(helm.HelmError) as e:
        render(bad)
    assert message in str(e.value)


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
def test_manifests_validate_strict(value_set, kube_version):
    import kubernetes_validate

    _, values = value_set
    docs = documents(values)
    assert docs
    checked = 0
    for path, doc in docs:
        if (doc["apiVersion"], doc["kind"]) in CRD_KINDS:
            continue  # custom resource: no bundled schema (see CRD_KINDS)
        try:
            kubernetes_validate.validate(doc, kube_version, strict=True)
        except kubernetes_validate.ValidationError as e:
            pytest.fail(f"{path} {doc['kind']}/{doc['metadata']['name']} on {kube_version}: "
                        f"{'.'.join(map(str, e.path))}: {e.message}")
        checked += 1
    assert checked >= 6


def _sts(values):
    return find(documents(values), "StatefulSet")


def _toml(values):
    cm = find(documents(values), "ConfigMap")
    return tomllib.loads(cm["data"]["spate.toml"])


def test_config_lists_the_initial_voters(value_set):
    _, values = value_set
    voters = values.get("cluster", {}).get("voters", 3)
    assert values.get("replicaCount", 3) >= voters
    cfg = _toml(values)
    assert set(cfg) <= {"node", "listen", "cluster", "kinesis", "raft", "rebalance"}  # node rejects unknown keys
    peers = cfg["cluster"]["peers"]
    # Ordinals >= voters are not peers: they join as non-voters (cluster.advertise).
    assert [p["id"] for p in peers] == list(range(voters))
    for i, p in enumerate(peers):
        assert p["addr"] == f"{RELEASE}-{i}.{RELEASE}-headless.{NAMESPACE}.svc.cluster.local:7400"
    assert cfg["node"] == {"data_dir": "/var/lib/spate"}  # id/zone come from the environment
    assert len(cfg["kinesis"]["account_id"]) == 12


def test_rebalance_toggle():
    assert _toml({})["rebalance"] == {"enabled": True, "max_moves": 1}
    off = _toml({"rebalance": {"enabled": False, "maxMoves": 3}})
    assert off["rebalance"] == {"enabled": False, "max_moves": 3}


def test_explicit_zones_in_peers_and_start_script():
    values = {"zones": {"source": "explicit", "explicit": {"0": "az-a", "1": "az-b", "2": "az-c"}}}
    assert [p["zone"] for p in _toml(values)["cluster"]["peers"]] == ["az-a", "az-b", "az-c"]
    script = _sts(values)["spec"]["template"]["spec"]["containers"][0]["args"][0]
    assert "1) SPATE_NODE__ZONE='az-b'" in script
    assert "initContainers" not in _sts(values)["spec"]["template"]["spec"]


def test_statefulset_shape(value_set):
    _, values = value_set
    docs = documents(values)
    sts = find(docs, "StatefulSet")
    spec = sts["spec"]
    pod = spec["template"]["spec"]
    c = pod["containers"][0]
    assert spec["podManagementPolicy"] == "Parallel"
    assert spec["serviceName"] == f"{RELEASE}-headless"
    assert [v["metadata"]["name"] for v in spec["volumeClaimTemplates"]] == ["data"]
    tsc = pod["topologySpreadConstraints"][0]
    assert tsc["topologyKey"] == "topology.kubernetes.io/zone" and tsc["maxSkew"] == 1
    if values.get("podAntiAffinity", "hard") != "none":
        assert "podAntiAffinity" in pod["affinity"]
    for probe, path in (("startupProbe", "/health"), ("readinessProbe", "/ready"), ("livenessProbe", "/health")):
        assert c[probe]["httpGet"] == {"path": path, "port": "admin"}
    drain = values.get("drain", {})
    prestop = c["lifecycle"]["preStop"]["exec"]["command"]
    assert prestop[:2] == ["/bin/sh", "-c"]
    script = prestop[-1]
    # POST /v1/drain on this pod's admin port until 200, bounded by drain.timeoutSeconds.
    admin = values.get("ports", {}).get("admin", 9400)
    assert f"-X POST http://127.0.0.1:{admin}/v1/drain" in script
    assert f"+ {drain.get('timeoutSeconds', 60)} ))" in script
    assert "200) echo \"spate: drained\" >&2; exit 0" in script
    assert pod["terminationGracePeriodSeconds"] > drain.get("timeoutSeconds", 60)
    assert "SPATE_CLUSTER__ADVERTISE=\"${POD_NAME}." + f"{RELEASE}-headless.{NAMESPACE}.svc.cluster.local:7400" in c["args"][0]
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["automountServiceAccountToken"] is False
    assert c["args"][0].rstrip().endswith("exec /usr/local/bin/spate server --config /etc/spate/spate.toml")
    env = {e["name"]: e for e in c["env"]}
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    tls = values.get("tls", {}).get("enabled", False)
    assert ("SPATE_TLS__CERT" in env) == tls and ("SPATE_TLS__KEY" in env) == tls
    auth = values.get("auth", {}).get("enabled", False)
    assert ("SPATE_AUTH__ACCESS_KEY_ID" in env) == auth
    source = values.get("zones", {}).get("source", "nodeLabel")
    if source == "nodeLabel":
        init = pod["initContainers"][0]
        assert "/api/v1/nodes/" in init["args"][0]
        role = find(docs, "ClusterRole")
        assert role["rules"] == [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get"]}]
    else:
        assert not [d for _, d in docs if d["kind"] == "ClusterRole"]


def test_services_pdb_and_hooks(value_set):
    _, values = value_set
    docs = documents(values)
    headless = find(docs, "Service", "-headless")
    assert headless["spec"]["clusterIP"] == "None" and headless["spec"]["publishNotReadyAddresses"] is True
    client = find(docs, "Service", RELEASE)
    names = {p["name"] for p in client["spec"]["ports"]}
    assert ("api-tls" in names) == values.get("tls", {}).get("enabled", False)
    assert find(docs, "PodDisruptionBudget")["spec"]["maxUnavailable"] == 1
    test_pod = find(docs, "Pod")
    assert test_pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    script = test_pod["spec"]["containers"][0]["args"][0]
    for op in ("create-stream", "put-record", "get-records"):
        assert op in script
    kinds = {d["kind"] for _, d in docs}
    assert ("ServiceMonitor" in kinds) == values.get("metrics", {}).get("serviceMonitor", {}).get("enabled", False)
    cm = values.get("tls", {}).get("certManager", {}).get("enabled", False)
    assert ("Certificate" in kinds) == cm
    if cm:
        cert = find(docs, "Certificate")
        assert f"{RELEASE}.{NAMESPACE}.svc" in cert["spec"]["dnsNames"]


def test_notes_have_aws_example():
    notes = render({})["spate/templates/NOTES.txt"]
    assert "aws --endpoint-url http://127.0.0.1:4567 kinesis put-record" in notes

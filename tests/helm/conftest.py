"""Shared helpers: render the chart with Helm's own engine (helm-python-sdk)."""
from __future__ import annotations

import pathlib

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "spate"
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
RELEASE = "spate"
NAMESPACE = "kinesis"

# (id, values dict): the chart's defaults plus every ci/*-values.yaml.
VALUE_SETS = [("defaults", {})] + [
    (p.name.removesuffix("-values.yaml"), yaml.safe_load(p.read_text()) or {}) for p in CI_VALUES
]


def render(values: dict, name: str = RELEASE, namespace: str = NAMESPACE) -> dict[str, str]:
    import helm_python as helm

    with helm.Chart.load(str(CHART)) as chart:
        return chart.render(values, name=name, namespace=namespace, is_install=True)


def documents(values: dict, **kw) -> list[tuple[str, dict]]:
    """(template path, manifest) for every rendered Kubernetes object (NOTES.txt excluded)."""
    out = []
    for path, text in sorted(render(values, **kw).items()):
        if not path.endswith((".yaml", ".yml")):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                out.append((path, doc))
    return out


def find(docs, kind: str, name_suffix: str = "") -> dict:
    hits = [d for _, d in docs if d["kind"] == kind and d["metadata"]["name"].endswith(name_suffix)]
    assert len(hits) == 1, f"expected one {kind}*{name_suffix}, got {[h['metadata']['name'] for h in hits]}"
    return hits[0]


@pytest.fixture(params=VALUE_SETS, ids=[v[0] for v in VALUE_SETS])
def value_set(request):
    return request.param

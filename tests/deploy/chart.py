"""The Helm chart through the real Helm engine (helm-python-sdk: Helm v4 as a native
library): lint, render to objects, and the kustomize view of deploy/ to compare with.

Run as a module to regenerate the plain rules file from the chart's alert template:
``.venv/bin/python -m tests.deploy.chart``.
"""

from __future__ import annotations

import copy
import functools
import json
from collections.abc import Mapping
from typing import Any

import helm_python as helm
import yaml

from tests.deploy import helpers

#: Every optional piece switched on, everything that has a default changed somewhere.
NON_DEFAULT: dict[str, Any] = {
    "image": {"repository": "registry.example/joulie-tasks", "tag": "9.9.9"},
    "imagePullSecrets": [{"name": "regcred"}],
    "config": {
        "reconcileInterval": "30s",
        "nodeSelector": "pool in (gpu,cpu),!joulie.io/skip",
        "policyType": "queue_aware_v1",
        "staticHpFrac": 0.3,
        "queueHpMax": 50,
        "performanceCapWatts": 4500.5,
        "maxTransitionsPerTick": 5,
        "lockTtl": "45s",
    },
    "scheduling": {
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}],
    },
    "podAnnotations": {"example.com/team": "platform"},
    "worker": {"concurrency": 4, "autoscaling": {"enabled": True, "maxReplicas": 6}},
    "beat": {"replicas": 1},
    "metrics": {"port": 9100},
    "redis": {"enabled": False},
    "externalRedis": {"existingSecret": "joulie-redis", "secretKey": "url"},
    "serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
    "prometheusRule": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
    "alerts": {"draining": {"for": "30m"}, "labels": {"severity": "page", "team": "infra"}},
    "dashboard": {"enabled": True},
}

CHART = helpers.ROOT / "charts" / "joulie-tasks"
RELEASE = "joulie-tasks"
NAMESPACE = "joulie-system"
RULES_FILE = helpers.ROOT / "monitoring" / "joulie-tasks.rules.yaml"
DASHBOARD_FILE = CHART / "dashboards" / "joulie-tasks.json"

#: Labels Helm (the chart's standard labels) adds on top of the kustomize manifests.
HELM_LABELS = {
    "helm.sh/chart",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/managed-by",
}
#: Pod-template annotation that rolls the pods when the ConfigMap changes (Helm only).
HELM_ANNOTATIONS = {"checksum/config"}


@functools.cache
def _chart() -> helm.Chart:
    return helm.Chart.load(CHART)


def chart() -> helm.Chart:
    return _chart()


def lint(values: Mapping[str, Any] | None = None) -> dict[str, Any]:
    return helm.lint(CHART, dict(values) if values else None, strict=True, namespace=NAMESPACE)


def render_files(
    values: Mapping[str, Any] | None = None, *, release: str = RELEASE, namespace: str = NAMESPACE
) -> dict[str, str]:
    """Template path → rendered text, as ``helm template`` renders an install."""
    return chart().render(
        dict(values) if values else None, name=release, namespace=namespace, is_install=True
    )


def render(
    values: Mapping[str, Any] | None = None, *, release: str = RELEASE, namespace: str = NAMESPACE
) -> list[dict[str, Any]]:
    """Every object the chart installs for ``values`` (templates, then crds/)."""
    out: list[dict[str, Any]] = []
    for path, text in sorted(render_files(values, release=release, namespace=namespace).items()):
        if path.endswith("NOTES.txt"):
            continue
        out.extend(d for d in yaml.safe_load_all(text) if d)
    return out


def crds() -> list[dict[str, Any]]:
    return [d for c in chart().crds for d in yaml.safe_load_all(c["data"]) if d]


def find(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [
        o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)
    ]


def one(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = find(objects, kind, name)
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def alert_groups(values: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The rule groups of the PrometheusRule rendered with ``values`` (a rules file)."""
    merged = {**(values or {}), "prometheusRule": {"enabled": True}}
    rule = one(render(merged), "PrometheusRule")
    return {"groups": rule["spec"]["groups"]}


def dashboard() -> dict[str, Any]:
    data = json.loads(DASHBOARD_FILE.read_text())
    assert isinstance(data, dict)
    return data


def dashboard_exprs() -> list[tuple[str, str]]:
    """(panel title, PromQL) of every panel target and of the query variables."""
    exprs = [
        (panel["title"], target["expr"])
        for panel in dashboard()["panels"]
        for target in panel.get("targets", [])
    ]
    for var in dashboard()["templating"]["list"]:
        if var["type"] == "query":
            query = var["query"]["query"]
            # label_values(metric, label) is Grafana's, not PromQL: check the metric.
            assert query.startswith("label_values("), query
            exprs.append((f"${var['name']}", query.removeprefix("label_values(").split(",")[0]))
    return exprs


def concrete(expr: str, *, rate_interval: str = "1m", node: str = ".*") -> str:
    """A dashboard expression with Grafana's variables replaced, as Grafana sends it."""
    return expr.replace("$__rate_interval", rate_interval).replace("$node", node)


# --- deploy/ as kustomize builds it ------------------------------------------------------------


def kustomized(with_monitoring: bool = False) -> list[dict[str, Any]]:
    """deploy/ with what its kustomization.yaml does applied (namespace, the common
    ``part-of`` label without selectors, the image tag), like ``kubectl kustomize``."""
    base = helpers.documents(helpers.DEPLOY / "kustomization.yaml")[0]
    files = [helpers.DEPLOY / r for r in base["resources"]]
    if with_monitoring:
        component = helpers.documents(helpers.DEPLOY / "monitoring" / "kustomization.yaml")[0]
        files += [helpers.DEPLOY / "monitoring" / r for r in component["resources"]]
    labels: dict[str, str] = {}
    for entry in base["labels"]:
        assert entry.get("includeSelectors") is False
        labels.update(entry["pairs"])
    tags = {i["name"]: i["newTag"] for i in base["images"]}
    out = []
    for path in files:
        for doc in helpers.documents(path):
            obj = copy.deepcopy(doc)
            obj["metadata"].setdefault("labels", {}).update(labels)
            for container in _containers(obj):
                if container["image"] in tags:
                    container["image"] += f":{tags[container['image']]}"
            out.append(obj)
    return out


def _containers(obj: dict[str, Any]) -> list[dict[str, Any]]:
    if obj["kind"] != "Deployment":
        return []
    containers: list[dict[str, Any]] = obj["spec"]["template"]["spec"]["containers"]
    return containers


def without_helm_additions(obj: dict[str, Any]) -> dict[str, Any]:
    """A copy without the labels Helm adds (in metadata, selectors and pod templates) and
    without the config-checksum pod annotation."""
    out = copy.deepcopy(obj)

    def strip(labels: dict[str, str] | None) -> None:
        for key in HELM_LABELS & set(labels or {}):
            del labels[key]  # type: ignore[union-attr]

    strip(out["metadata"].get("labels"))
    spec = out.get("spec", {})
    if out["kind"] == "Deployment":
        strip(spec["selector"]["matchLabels"])
        template = spec["template"]["metadata"]
        strip(template.get("labels"))
        annotations = template.get("annotations", {})
        for key in HELM_ANNOTATIONS & set(annotations):
            del annotations[key]
        if not annotations:
            template.pop("annotations", None)
    elif out["kind"] == "Service":
        strip(spec["selector"])
    elif out["kind"] == "ServiceMonitor":
        strip(spec["selector"]["matchLabels"])
    return out


def rules_file_text() -> str:
    header = (
        "# Generated from charts/joulie-tasks/templates/_alerts.tpl with the chart's default\n"
        "# values: python -m tests.deploy.chart (a test keeps them identical).\n"
        "# Load it in a Prometheus without the Prometheus Operator (rule_files).\n"
    )
    return header + yaml.safe_dump(alert_groups(), sort_keys=False, width=1000)


if __name__ == "__main__":
    RULES_FILE.write_text(rules_file_text())
    print(f"wrote {RULES_FILE.relative_to(helpers.ROOT)}")

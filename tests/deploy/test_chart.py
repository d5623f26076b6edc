"""charts/joulie-tasks through the real Helm engine (helm-python-sdk, Helm v4): strict
lint, render with default and non-default values, strict schema validation of every
rendered object, values.schema.json, and no drift from the kustomize manifests: with
default values the chart renders exactly the objects of deploy/ (modulo the labels
Helm adds and the config-checksum pod annotation; the Namespace is left to
``helm install --create-namespace``)."""

from __future__ import annotations

import json
import re
from typing import Any

import helm_python as helm
import pytest
import yaml

from joulie_tasks import config
from tests.deploy import chart, helpers

K8S_VERSIONS = ("1.28", "1.33")

VALUES = {"default": None, "non-default": chart.NON_DEFAULT}


def _key(obj: dict[str, Any]) -> tuple[str, str]:
    return obj["kind"], obj["metadata"]["name"]


# --- lint and strict validation ----------------------------------------------------------------


@pytest.mark.parametrize("values", VALUES.values(), ids=VALUES.keys())
def test_helm_lint_strict_reports_nothing_above_info(values: dict[str, Any] | None) -> None:
    report = chart.lint(values)
    assert report["total_charts_linted"] == 1
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("values", VALUES.values(), ids=VALUES.keys())
def test_every_rendered_object_validates_strictly(
    values: dict[str, Any] | None, version: str
) -> None:
    objects = chart.render(values) + chart.crds()
    assert objects
    for obj in objects:
        helpers.validate(obj, version)
    assert len({_key(o) for o in objects}) == len(objects), "two objects share a kind/name"


def test_the_validators_reject_typos_in_the_render() -> None:
    rule = chart.one(chart.render(chart.NON_DEFAULT), "PrometheusRule")
    rule["spec"]["groups"][0]["rules"][0]["anotations"] = {}
    with pytest.raises(Exception, match="anotations"):
        helpers.validate(rule, K8S_VERSIONS[-1])
    worker = chart.one(chart.render(), "Deployment", "joulie-tasks-worker")
    worker["spec"]["template"]["spec"]["containers"][0]["evnFrom"] = []
    with pytest.raises(Exception, match="evnFrom"):
        helpers.validate(worker, K8S_VERSIONS[-1])


# --- no drift from deploy/ ---------------------------------------------------------------------


def test_default_render_is_exactly_deploy() -> None:
    rendered = {_key(o): chart.without_helm_additions(o) for o in chart.render()}
    expected = {
        _key(o): o
        for o in chart.kustomized()
        if o["kind"] not in ("Namespace", "CustomResourceDefinition")
    }
    assert sorted(rendered) == sorted(expected)
    for key, obj in expected.items():
        assert rendered[key] == obj, f"{key} differs from deploy/"


def test_chart_crds_are_the_deploy_crds() -> None:
    expected = [
        *helpers.documents(helpers.DEPLOY / "crd" / "nodepowerprofiles.yaml"),
        *helpers.documents(helpers.DEPLOY / "crd" / "nodetwins.yaml"),
        *helpers.documents(helpers.DEPLOY / "crd" / "nodehardwares.yaml"),
    ]
    assert sorted(chart.crds(), key=str) == sorted(expected, key=str)


def test_service_monitor_is_the_deploy_monitoring_component() -> None:
    rendered = chart.one(chart.render({"serviceMonitor": {"enabled": True}}), "ServiceMonitor")
    expected = chart.one(chart.kustomized(with_monitoring=True), "ServiceMonitor")
    assert chart.without_helm_additions(rendered) == expected


def test_helm_labels_are_standard_and_selectors_carry_the_instance() -> None:
    for obj in chart.render():
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/managed-by"] == "Helm", _key(obj)
        assert labels["app.kubernetes.io/instance"] == chart.RELEASE, _key(obj)
        assert labels["helm.sh/chart"] == "joulie-tasks-0.1.0", _key(obj)
        if obj["kind"] == "Deployment":
            selector = obj["spec"]["selector"]["matchLabels"]
            assert selector["app.kubernetes.io/instance"] == chart.RELEASE
            assert selector.items() <= obj["spec"]["template"]["metadata"]["labels"].items()


def test_two_releases_in_one_namespace_do_not_collide() -> None:
    first = chart.render({"redis": {"name": ""}}, release="joulie-a")
    second = chart.render({"redis": {"name": ""}}, release="joulie-b")
    assert not {_key(o) for o in first} & {_key(o) for o in second}
    data = chart.one(first, "ConfigMap", "joulie-a-joulie-tasks")["data"]
    assert data["REDIS_URL"] == "redis://joulie-a-joulie-tasks-redis:6379/0"
    assert chart.find(first, "Service", "joulie-a-joulie-tasks-redis")


# --- settings ----------------------------------------------------------------------------------


def _settings_keys() -> set[str]:
    # In the cluster the worker uses its ServiceAccount: no kubeconfig or context. The
    # Sentinel master's name is there only with externalRedis.sentinelMaster
    # (test_chart_sentinel.py).
    return helpers.settings_env_names() - {"KUBECONFIG", "KUBE_CONTEXT", "REDIS_SENTINEL_MASTER"}


def test_configmap_carries_every_setting_with_the_operator_defaults() -> None:
    data = chart.one(chart.render(), "ConfigMap", "joulie-tasks")["data"]
    assert set(data) == _settings_keys()
    settings = config.read_settings(data)
    for name, field in config.Settings.model_fields.items():
        if name.upper() in data and name != "redis_url":
            assert getattr(settings, name) == field.default, name


def test_non_default_settings_reach_the_configmap_and_parse() -> None:
    objects = chart.render(chart.NON_DEFAULT)
    data = chart.one(objects, "ConfigMap", "joulie-tasks")["data"]
    assert set(data) == _settings_keys() - {"REDIS_URL"}, "REDIS_URL comes from the Secret"
    settings = config.read_settings({**data, "REDIS_URL": "redis://elsewhere:6379/0"})
    assert settings.reconcile_interval == 30
    assert settings.node_selector == "pool in (gpu,cpu),!joulie.io/skip"
    assert settings.policy_type == "queue_aware_v1"
    assert settings.static_hp_frac == 0.3
    assert settings.queue_hp_max == 50
    assert settings.performance_cap_watts == 4500.5
    assert settings.max_transitions_per_tick == 5
    assert settings.lock_ttl == 45
    assert data["METRICS_ADDR"] == ":9100"


def test_values_yaml_documents_every_setting_by_its_variable_name() -> None:
    text = (chart.CHART / "values.yaml").read_text()
    documented = set(re.findall(r"# -- ([A-Z_]+): ", text))
    assert documented == _settings_keys() - {"REDIS_URL", "METRICS_ADDR"}
    assert "METRICS_ADDR" in text
    assert "REDIS_URL" in text


# --- non-default values ------------------------------------------------------------------------


def test_non_default_values_render_what_they_say() -> None:
    objects = chart.render(chart.NON_DEFAULT)
    kinds = {o["kind"] for o in objects}
    assert {"HorizontalPodAutoscaler", "ServiceMonitor", "PrometheusRule"} <= kinds
    assert "PersistentVolumeClaim" not in kinds, "no bundled Redis"
    assert not [o for o in objects if "redis" in o["metadata"]["name"]]
    worker = chart.one(objects, "Deployment", "joulie-tasks-worker")
    assert "replicas" not in worker["spec"], "the HPA owns the replica count"
    hpa = chart.one(objects, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "joulie-tasks-worker"
    assert hpa["spec"]["maxReplicas"] == 6
    for component in ("worker", "beat", "metrics"):
        deployment = chart.one(objects, "Deployment", f"joulie-tasks-{component}")
        pod = deployment["spec"]["template"]
        container = pod["spec"]["containers"][0]
        assert container["image"] == "registry.example/joulie-tasks:9.9.9"
        assert container["env"] == [
            {
                "name": "REDIS_URL",
                "valueFrom": {"secretKeyRef": {"name": "joulie-redis", "key": "url"}},
            }
        ]
        assert pod["spec"]["imagePullSecrets"] == [{"name": "regcred"}]
        assert pod["spec"]["nodeSelector"] == {"kubernetes.io/os": "linux"}
        assert pod["spec"]["tolerations"][0]["key"] == "dedicated"
        assert pod["metadata"]["annotations"]["example.com/team"] == "platform"
    assert worker["spec"]["template"]["spec"]["containers"][0]["args"] == [
        "worker",
        "--concurrency=4",
    ]
    assert chart.one(objects, "Deployment", "joulie-tasks-beat")["spec"]["replicas"] == 1
    metrics = chart.one(objects, "Deployment", "joulie-tasks-metrics")
    assert metrics["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] == 9100
    assert chart.one(objects, "Service", "joulie-tasks-metrics")["spec"]["ports"][0]["port"] == 9100
    monitor = chart.one(objects, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    rule = chart.one(objects, "PrometheusRule")
    draining = next(
        r for r in rule["spec"]["groups"][0]["rules"] if r["alert"] == "JoulieNodeDrainingTooLong"
    )
    assert draining["for"] == "30m"
    assert draining["labels"] == {"severity": "page", "team": "infra"}


def test_config_change_rolls_the_operator_pods() -> None:
    def checksums(values: dict[str, Any] | None) -> set[str]:
        return {
            d["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
            for d in chart.find(chart.render(values), "Deployment")
            if d["metadata"]["name"] != "redis"
        }

    before, after = checksums(None), checksums({"config": {"reconcileInterval": "2m"}})
    assert len(before) == len(after) == 1
    assert before != after


def test_redis_without_persistence_uses_an_empty_dir() -> None:
    objects = chart.render({"redis": {"persistence": {"enabled": False}}})
    assert not chart.find(objects, "PersistentVolumeClaim")
    redis = chart.one(objects, "Deployment", "redis")
    assert redis["spec"]["template"]["spec"]["volumes"] == [{"name": "data", "emptyDir": {}}]


# --- values.schema.json ------------------------------------------------------------------------

BAD_VALUES = [
    ({"config": {"reconcileInterval": "1 minute"}}, "/config/reconcileInterval"),
    ({"config": {"staticHpFrac": 1.5}}, "/config/staticHpFrac"),
    ({"config": {"staticHpFrac": "half"}}, "/config/staticHpFrac"),
    ({"config": {"policyType": "greedy"}}, "/config/policyType"),
    ({"config": {"ecoCapWatts": 0}}, "/config/ecoCapWatts"),
    ({"config": {"writeConcurrency": 65}}, "/config/writeConcurrency"),
    ({"config": {"queueHpMin": 1.5}}, "/config/queueHpMin"),
    ({"config": {"drainingLabel": "bad key!"}}, "/config/drainingLabel"),
    ({"config": {"reconcileIntervall": "1m"}}, "/config"),
    ({"worker": {"replica": 3}}, "/worker"),
    ({"metrics": {"port": 70000}}, "/metrics/port"),
    ({"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy"),
    ({"redis": {"enabled": False}}, "/externalRedis/existingSecret"),
    ({"alerts": {"paused": {"for": "two hours"}}}, "/alerts/paused/for"),
]


@pytest.mark.parametrize(
    ("values", "where"), BAD_VALUES, ids=[w + ":" + json.dumps(v) for v, w in BAD_VALUES]
)
def test_schema_rejects_bad_values_naming_the_key(values: dict[str, Any], where: str) -> None:
    with pytest.raises(helm.HelmValuesError) as schema_error:
        chart.chart().validate_schema(values)
    assert f"at '{where}'" in str(schema_error.value)
    # helm install/template refuse them the same way, before rendering anything.
    with pytest.raises(helm.HelmValuesError, match=re.escape(f"at '{where}'")):
        chart.render(values)


@pytest.mark.parametrize("values", VALUES.values(), ids=VALUES.keys())
def test_schema_accepts_the_default_and_the_non_default_values(
    values: dict[str, Any] | None,
) -> None:
    chart.chart().validate_schema(values)


def test_schema_accepts_string_and_number_fractions() -> None:
    for frac in ("0.25", 0.25, "1", 0, ".5"):
        chart.chart().validate_schema({"config": {"queueHpBaseFrac": frac}})


# --- monitoring files --------------------------------------------------------------------------


def test_plain_rules_file_is_the_chart_render() -> None:
    shipped = yaml.safe_load(chart.RULES_FILE.read_text())
    assert shipped == chart.alert_groups(), (
        "monitoring/joulie-tasks.rules.yaml is stale: run .venv/bin/python -m tests.deploy.chart"
    )


def test_dashboard_configmap_ships_the_dashboard_file_for_the_sidecar() -> None:
    objects = chart.render({"dashboard": {"enabled": True}})
    cm = chart.one(objects, "ConfigMap", "joulie-tasks-dashboard")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(cm["data"]["joulie-tasks.json"]) == chart.dashboard()


def test_notes_tell_how_to_see_status() -> None:
    notes = chart.render_files()["joulie-tasks/templates/NOTES.txt"]
    assert "joulie-tasks status" in notes
    assert "kubectl get nodepowerprofiles" in notes
    assert "-n joulie-system" in notes

"""Alert rules and dashboard expressions checked by the real promtool: syntax
(``check rules``), behaviour (``test rules``: input series → expected alerts, for every
alert), and every dashboard query; plus the runbook has a section for every alert."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from joulie_tasks.core import models
from joulie_tasks.ports import metrics
from tests.deploy import chart, helpers
from tests.integration.monitoring.tools import promtool

RULES_TESTS = helpers.ROOT / "monitoring" / "joulie-tasks.rules.test.yaml"
OPERATIONS = helpers.ROOT / "docs" / "OPERATIONS.md"

#: What the issue asks the dashboard to show (panel titles).
DASHBOARD_PANELS = {
    "Nodes by state",
    "Nodes by profile",
    "Transitions applied and deferred",
    "Draining nodes",
    "Tick duration by stage (p50 / p95)",
    "Ticks by result",
    "API requests by verb and resource",
    "API errors by verb, resource and status",
    "Retries and conflicts",
    "Failed writes",
    "Lock holder changes",
    "Paused",
    "Transitions held by damping",
}


def _alerts() -> list[dict[str, Any]]:
    groups = yaml.safe_load(chart.RULES_FILE.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def test_promtool_checks_the_plain_rules_file() -> None:
    done = promtool("check", "rules", chart.RULES_FILE)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(_alerts())} rules found" in done.stdout


def test_promtool_checks_the_prometheus_rule_rendered_with_other_values(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump(chart.alert_groups(chart.NON_DEFAULT)))
    done = promtool("check", "rules", rules)
    assert done.returncode == 0, done.stdout + done.stderr


def test_promtool_unit_tests_of_every_alert_pass() -> None:
    done = promtool("test", "rules", RULES_TESTS.name, cwd=RULES_TESTS.parent)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_every_alert_has_a_unit_test_that_fires_it_and_one_that_does_not() -> None:
    tests = yaml.safe_load(RULES_TESTS.read_text())
    assert tests["rule_files"] == [chart.RULES_FILE.name]
    fired: set[str] = set()
    quiet: set[str] = set()
    for case in tests["tests"]:
        for check in case["alert_rule_test"]:
            (fired if check["exp_alerts"] else quiet).add(check["alertname"])
    names = {a["alert"] for a in _alerts()}
    assert fired == names
    assert quiet == names


def test_every_alert_has_summary_description_and_a_runbook_section() -> None:
    runbook = OPERATIONS.read_text()
    headings = {h.strip().lower() for h in re.findall(r"^#+ (.+)$", runbook, flags=re.M)}
    for alert in _alerts():
        annotations = alert["annotations"]
        assert annotations["summary"], alert["alert"]
        assert annotations["description"], alert["alert"]
        anchor = annotations["runbook_url"].rpartition("#")[2]
        assert anchor == alert["alert"].lower()
        assert anchor in headings, f"docs/OPERATIONS.md has no section {alert['alert']}"


# --- the dashboard ---------------------------------------------------------------------------


def test_promtool_checks_every_dashboard_expression(tmp_path: Path) -> None:
    exprs = chart.dashboard_exprs()
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:panel_{i}", "expr": chart.concrete(expr)}
                    for i, (_, expr) in enumerate(exprs)
                ],
            }
        ]
    }
    path = tmp_path / "dashboard.rules.yaml"
    path.write_text(yaml.safe_dump(rules))
    done = promtool("check", "rules", path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(exprs)} rules found" in done.stdout


def test_dashboard_has_the_panels_and_a_node_variable() -> None:
    dash = chart.dashboard()
    titles = {p["title"] for p in dash["panels"]}
    assert titles >= DASHBOARD_PANELS, DASHBOARD_PANELS - titles
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["node"]["definition"] == "label_values(joulie_operator_node_state, node)"
    assert variables["node"]["includeAll"] is True
    for title, expr in chart.dashboard_exprs():
        if "joulie_operator_" in expr and not title.startswith("$"):
            assert 'node=~"$node"' in expr, title
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))


def _exported_names() -> set[str]:
    names = {
        getattr(metrics, n)
        for n in dir(metrics)
        if n.isupper() and isinstance(getattr(metrics, n), str) and n != "DURATION_BUCKETS"
    }
    names = {n for n in names if n.startswith("joulie_")}
    names |= {metrics.TICK_DURATION + s for s in ("_bucket", "_sum", "_count")}
    return names | {"joulie_redis_up", "up"}


def test_dashboard_and_alerts_only_use_metrics_the_operator_exports() -> None:
    exprs = [e for _, e in chart.dashboard_exprs()] + [a["expr"] for a in _alerts()]
    used = {m for e in exprs for m in re.findall(r"\b(joulie_[a-z_]+|up)\b(?=[{\[)\s]|$)", e)}
    assert used, exprs
    assert used <= _exported_names(), used - _exported_names()


def test_label_values_in_queries_are_values_the_operator_writes() -> None:
    exprs = [e for _, e in chart.dashboard_exprs()] + [a["expr"] for a in _alerts()]
    text = " ".join(exprs)
    states = set(re.findall(r'state="([^"]+)"', text))
    assert states
    assert states <= {s.value for s in models.NodeState}
    results = set(re.findall(r'result="([^"]+)"', text)) | {
        r for group in re.findall(r'result=~"([^"]+)"', text) for r in group.split("|")
    }
    # The tick results the operator counts (README: joulie_ticks_total{result}).
    known = {"completed", "failed", "failed_writes", "skipped_locked", "duplicate", "expired"}
    assert results
    assert results <= known | {"fenced"}

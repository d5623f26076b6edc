"""Settings (docs/SPEC.md §3): defaults, Go durations, selectors, one line per bad variable."""

from __future__ import annotations

import pytest

from joulie_tasks import config, errors
from joulie_tasks.core import models


def test_defaults_are_the_spec_defaults() -> None:
    s = config.read_settings({})
    assert s.reconcile_interval == 60
    assert s.node_selector == "joulie.io/managed=true"
    assert s.reserved_label_key == "joulie.io/reserved"
    assert s.power_profile_label == "joulie.io/power-profile"
    assert s.draining_label == "joulie.io/draining"
    assert s.policy is models.PolicyName.STATIC_PARTITION
    assert (s.static_hp_frac, s.queue_hp_base_frac) == (0.5, 0.6)
    assert (s.queue_hp_min, s.queue_hp_max, s.queue_perf_per_hp_node) == (1, 1_000_000, 10)
    assert (s.performance_cap_watts, s.eco_cap_watts) == (5000, 120)
    assert s.metrics_addr == ":8081"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("1m", 60), ("1m30s", 90), ("500ms", 0.5), ("1h", 3600)],
    ids=["30s", "1m", "1m30s", "500ms", "1h"],
)
def test_reconcile_interval_takes_go_durations(text: str, seconds: float) -> None:
    assert config.read_settings({"RECONCILE_INTERVAL": text}).reconcile_interval == seconds


@pytest.mark.parametrize("name", ["rule_swap_v1", "RULE_SWAP_V1", " Rule_Swap_V1 "])
def test_policy_type_is_case_insensitive(name: str) -> None:
    s = config.read_settings({"POLICY_TYPE": name})
    assert s.policy is models.PolicyName.RULE_SWAP_V1
    assert not s.policy_fell_back


def test_an_unknown_policy_falls_back_to_static_partition_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    s = config.load_settings({"POLICY_TYPE": "greedy"})
    assert s.policy is models.PolicyName.STATIC_PARTITION
    assert s.policy_fell_back
    assert "greedy" in caplog.text


INVALID = [
    ("RECONCILE_INTERVAL", "soon", "Go duration"),
    ("RECONCILE_INTERVAL", "-5s", "> 0"),
    ("RECONCILE_INTERVAL", "0s", "> 0"),
    ("NODE_SELECTOR", "a in (b", "label selector"),
    ("NODE_SELECTOR", "a=b,,", "label selector"),
    ("RESERVED_LABEL_KEY", "", "non-empty"),
    ("POWER_PROFILE_LABEL", "", "non-empty"),
    ("DRAINING_LABEL", "", "non-empty"),
    ("STATIC_HP_FRAC", "1.5", "fraction between 0 and 1"),
    ("STATIC_HP_FRAC", "-0.1", "fraction between 0 and 1"),
    ("STATIC_HP_FRAC", "half", "a number"),
    ("QUEUE_HP_BASE_FRAC", "2", "fraction between 0 and 1"),
    ("QUEUE_HP_MIN", "one", "whole number"),
    ("QUEUE_HP_MAX", "1.5", "whole number"),
    ("QUEUE_PERF_PER_HP_NODE", "ten", "whole number"),
    ("PERFORMANCE_CAP_WATTS", "-1", "≥ 1"),
    ("ECO_CAP_WATTS", "0", "≥ 1"),
    ("ECO_CAP_WATTS", "lots", "a number"),
    ("METRICS_ADDR", "8081", "[host]:port"),
    ("METRICS_ADDR", ":99999", "[host]:port"),
    ("REDIS_URL", "localhost:6379", "redis://"),
    ("LOCK_TTL", "forever", "Go duration"),
    ("KUBE_REQUEST_TIMEOUT", "x", "Go duration"),
    ("KUBE_POOL_SIZE", "0", "≥ 1"),
    ("LIST_PAGE_SIZE", "0", "≥ 1"),
    ("WRITE_BATCH_SIZE", "none", "whole number"),
    ("WRITE_CONCURRENCY", "0", "≥ 1"),
    ("MAX_TRANSITIONS_PER_TICK", "-1", "≥ 0"),
    ("POWER_PROFILE_LABEL", "bad key!", "label key"),
    ("DRAINING_LABEL", "/x", "label key"),
    ("RESERVED_LABEL_KEY", "a/b/c", "label key"),
    ("PERFORMANCE_CAP_WATTS", "inf", "finite number"),
    ("ECO_CAP_WATTS", "nan", "finite number"),
]


@pytest.mark.parametrize(
    ("name", "value", "expected"), INVALID, ids=[f"{n}={v!r}" for n, v, _ in INVALID]
)
def test_an_invalid_value_gives_one_line_naming_variable_value_and_expectation(
    name: str, value: str, expected: str
) -> None:
    with pytest.raises(errors.ConfigError) as info:
        config.read_settings({name: value})
    assert len(info.value.lines) == 1
    line = info.value.lines[0]
    assert line.startswith(f"{name}={value!r}: expected ")
    assert expected in line


def test_every_bad_variable_is_reported_not_just_the_first() -> None:
    with pytest.raises(errors.ConfigError) as info:
        config.read_settings({"STATIC_HP_FRAC": "7", "ECO_CAP_WATTS": "-3"})
    assert [line.split("=")[0] for line in info.value.lines] == ["ECO_CAP_WATTS", "STATIC_HP_FRAC"]


def test_load_settings_exits_2_with_one_line_and_no_traceback(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as info:
        config.load_settings({"RECONCILE_INTERVAL": "fast"})
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "joulie-tasks: invalid configuration: RECONCILE_INTERVAL='fast': "
        "expected a Go duration such as 30s, 1m30s, 500ms"
    ]


def test_unrelated_environment_variables_are_ignored() -> None:
    assert config.read_settings({"HOME": "/root", "PATH": "/bin"}).reconcile_interval == 60


@pytest.mark.parametrize(
    ("addr", "expected"),
    [
        (":8081", ("0.0.0.0", 8081)),
        ("127.0.0.1:9000", ("127.0.0.1", 9000)),
        ("[::1]:80", ("::1", 80)),
    ],
)
def test_metrics_addr_splits_into_host_and_port(addr: str, expected: tuple[str, int]) -> None:
    assert config.host_port(addr) == expected


@pytest.mark.parametrize(
    ("text", "mode"),
    [
        (None, models.OutputApi.NODEPOWERPROFILE),
        ("nodepowerprofile", models.OutputApi.NODEPOWERPROFILE),
        ("nodetwin", models.OutputApi.NODETWIN),
        (" NodeTwin ", models.OutputApi.NODETWIN),
        ("both", models.OutputApi.BOTH),
    ],
    ids=["default", "nodepowerprofile", "nodetwin", "trimmed-any-case", "both"],
)
def test_output_api_selects_the_published_objects(text: str | None, mode: models.OutputApi) -> None:
    s = config.read_settings({} if text is None else {"OUTPUT_API": text})
    assert s.output_api is mode
    assert mode.writes_profiles == (mode is not models.OutputApi.NODETWIN)
    assert mode.writes_twins == (mode is not models.OutputApi.NODEPOWERPROFILE)


@pytest.mark.parametrize("text", ["twin", "", "nodetwins", "nodepowerprofiles"])
def test_a_bad_output_api_is_one_line_and_exit_2(
    text: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        config.load_settings({"OUTPUT_API": text})
    assert exc.value.code == config.EXIT_CONFIG
    lines = [line for line in capsys.readouterr().err.splitlines() if "OUTPUT_API" in line]
    assert lines == [
        f"joulie-tasks: invalid configuration: OUTPUT_API={text!r}: "
        "expected one of nodepowerprofile, nodetwin, both"
    ]


def test_nodetwin_cpu_caps_default_to_100_and_60_percent() -> None:
    s = config.read_settings({"CPU_ECO_CAP_PCT_OF_MAX": "42.5"})
    assert (s.cpu_performance_cap_pct_of_max, s.cpu_eco_cap_pct_of_max) == (100, 42.5)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0", "a number > 0.0"),
        ("100.5", "a number ≤ 100.0"),
        ("-1", "a number > 0.0"),
        ("nan", "a finite number"),
        ("sixty", "a number"),
    ],
)
def test_a_bad_cap_percentage_is_one_line_and_exit_2(
    value: str, expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        config.load_settings({"CPU_ECO_CAP_PCT_OF_MAX": value})
    assert exc.value.code == config.EXIT_CONFIG
    line = f"CPU_ECO_CAP_PCT_OF_MAX={value!r}: expected {expected}"
    assert capsys.readouterr().err.splitlines() == [f"joulie-tasks: invalid configuration: {line}"]


def test_nodetwin_gpu_caps_default_to_100_and_60_percent_and_accept_0() -> None:
    s = config.read_settings({"GPU_ECO_CAP_PCT_OF_MAX": "0"})
    assert (s.gpu_performance_cap_pct_of_max, s.gpu_eco_cap_pct_of_max) == (100, 0)


def test_a_gpu_cap_above_100_percent_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        config.load_settings({"GPU_PERFORMANCE_CAP_PCT_OF_MAX": "101"})
    line = "GPU_PERFORMANCE_CAP_PCT_OF_MAX='101': expected a number ≤ 100.0"
    assert capsys.readouterr().err.splitlines() == [f"joulie-tasks: invalid configuration: {line}"]


# --- the NodeTwin cap and order variables (docs/SPEC.md §13.10, §13.11) -----------------

NODETWIN_INVALID = [
    ("CPU_WRITE_ABSOLUTE_CAPS", "sometimes", "expected a boolean"),
    ("GPU_WRITE_ABSOLUTE_CAPS", "2", "expected a boolean"),
    ("GPU_MODEL_CAPS_JSON", "{", "(not valid JSON)"),
    ("GPU_MODEL_CAPS_JSON", "[]", "expected a JSON object"),
    ("GPU_MODEL_CAPS_JSON", '{"L40S": {"maxCapWatts": "350"}}', "'L40S' needs"),
    ("GPU_MODEL_CAPS_JSON", '{"L40S": {"maxCapWatts": 300, "minCapWatts": 400}}', "'L40S' needs"),
    ("GPU_MODEL_CAPS_JSON", '{"L40S": {"maxWatts": 300}}', "'L40S' has other fields"),
    ("GPU_PRODUCT_LABEL_KEYS", ",", "expected comma-separated label keys"),
    ("GPU_PRODUCT_LABEL_KEYS", "a,bad key!", "'bad key!'"),
    ("NODE_ORDER", "densest", "expected one of name, density"),
]


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    NODETWIN_INVALID,
    ids=[f"{n}={v}" for n, v, _ in NODETWIN_INVALID],
)
def test_the_nodetwin_variables_refuse_bad_values_with_one_line(
    name: str, value: str, expected: str
) -> None:
    with pytest.raises(errors.ConfigError) as caught:
        config.read_settings({name: value})
    (line,) = caught.value.lines
    assert line.startswith(f"{name}={value!r}: expected")
    assert expected in line


def test_the_nodetwin_variables_defaults_and_parsed_values() -> None:
    default = config.read_settings({})
    assert default.node_order is models.NodeOrder.NAME
    assert not default.reads_hardware
    assert default.twin_caps().gpu_model_caps == {}
    assert default.product_label_keys[0] == "joulie.io/gpu.product"
    s = config.read_settings(
        {
            "NODE_ORDER": " Density ",
            "GPU_MODEL_CAPS_JSON": '{"NVIDIA-L40S": {"minCapWatts": 200, "maxCapWatts": 350}}',
            "GPU_PRODUCT_LABEL_KEYS": " example.com/gpu , ",
            "GPU_WRITE_ABSOLUTE_CAPS": "yes",
        }
    )
    assert s.node_order is models.NodeOrder.DENSITY
    assert s.reads_hardware
    found = s.twin_caps()
    assert found.gpu_absolute
    assert not found.cpu_absolute
    assert found.gpu_model_caps["NVIDIA-L40S"].min_cap_watts == 200
    assert found.product_label_keys == ("example.com/gpu",)
    assert config.read_settings({"GPU_PRODUCT_LABEL_KEYS": ""}).product_label_keys[0] == (
        "joulie.io/gpu.product"
    )

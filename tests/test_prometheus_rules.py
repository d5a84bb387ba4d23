"""The Prometheus rules and the Grafana dashboard shipped in deploy/ are valid and speak of the
metrics the bus really exports: ``promtool check rules``, ``promtool test rules`` (burn-rate
alerts on synthetic series), and the dashboard's structure and expressions."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.harness import make_world
from tests.providers import Provider

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
RULES = DEPLOY / "prometheus" / "dargah-rules.yml"
RULE_TESTS = DEPLOY / "prometheus" / "dargah-rules.test.yml"
DASHBOARD = DEPLOY / "grafana" / "dargah-bus.json"
METRIC = re.compile(r"\b(gsb[_:][a-z0-9_:]+)")


def _promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        reason = "promtool is not installed (apt-get install prometheus)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return found


def test_promtool_accepts_the_rules() -> None:
    r = subprocess.run(
        [_promtool(), "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout


def test_the_burn_rate_alerts_fire_and_stay_quiet_as_their_unit_tests_say() -> None:
    r = subprocess.run(
        [_promtool(), "test", "rules", RULE_TESTS.name],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=RULE_TESTS.parent,
    )
    assert r.returncode == 0, r.stdout + r.stderr


def _exported(tmp_path: Path, provider: Provider) -> set[str]:
    """The metric names of a real bus's /metrics after one call."""
    w = make_world(tmp_path / "home", provider.url)
    sid = w.add_service("metrics.v1")
    w.grant("cons", sid)
    w.start()
    try:
        assert w.call(sid, "/x", token=w.token()).status_code == 200
        text = httpx.get(f"{w.url}/metrics").text
    finally:
        w.stop()
    names = set()
    for line in text.splitlines():
        if line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names


def test_every_rule_and_dashboard_panel_uses_metrics_the_bus_exports(
    tmp_path: Path, provider: Provider
) -> None:
    exported = _exported(tmp_path, provider)
    assert {"gsb_calls_total", "gsb_call_duration_seconds_bucket", "gsb_log_writable"} <= exported
    # one key per line in the rules file (promtool checks the YAML itself)
    text = RULES.read_text(encoding="utf-8")
    recorded = set(re.findall(r"^\s*- record: (\S+)$", text, re.M))
    rule_exprs = re.findall(r"^\s*expr: (.+)$", text, re.M)
    alerts = set(re.findall(r"^\s*- alert: (\S+)$", text, re.M))
    assert len(recorded) == 8 and len(rule_exprs) == 13
    assert {"DargahErrorBudgetBurnFast", "DargahErrorBudgetBurnSlow"} <= alerts
    for expr in rule_exprs:
        for name in METRIC.findall(str(expr)):
            assert name in exported or name in recorded, f"{name} in rule {expr}"

    dash = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert dash["uid"] == "dargah-bus" and dash["title"] and isinstance(dash["schemaVersion"], int)
    panels = dash["panels"]
    assert panels and len({p["id"] for p in panels}) == len(panels)
    used = set()
    for p in panels:
        assert p["type"] in {"timeseries", "stat", "gauge", "table", "bargauge"}, p["title"]
        assert p["title"].strip()
        pos = p["gridPos"]
        assert 0 <= pos["x"] and pos["x"] + pos["w"] <= 24 and pos["h"] > 0, p["title"]
        assert p["targets"], p["title"]
        for t in p["targets"]:
            assert t["refId"] and t["expr"].strip(), p["title"]
            names = METRIC.findall(t["expr"])
            assert names, f"panel {p['title']!r} uses no bus metric"
            for name in names:
                assert name in exported or name in recorded, f"{name} in panel {p['title']!r}"
                used.add(name)
    assert "gsb:error_ratio:rate1h" in used  # the burn rate is on the dashboard

"""Lighthouse and axe-core over the portal's pages, for ``tests/test_page_quality.py``.

Both are npm packages pinned in ``tools/browser-checks`` (``package.json`` and its lock) and
installed by ``make test`` (``npm ci``); the embedded default never needs them. Lighthouse runs
its own Chromium (Debian's, ``/usr/bin/chromium``) with the default mobile settings: a Moto G
Power sized screen and simulated slow 4G with a four times slower CPU. axe-core is injected into
pages opened by Playwright. Reports land in ``test-artifacts/page-checks/``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.browser import CHROMIUM

ROOT = Path(__file__).parent.parent
TOOLS = ROOT / "tools" / "browser-checks"
LIGHTHOUSE = TOOLS / "node_modules" / "lighthouse" / "cli" / "index.js"
AXE = TOOLS / "node_modules" / "axe-core" / "axe.min.js"
REPORTS = ROOT / "test-artifacts" / "page-checks"
CATEGORIES = ("performance", "accessibility", "best-practices", "seo")
THRESHOLDS = {"performance": 0.95, "accessibility": 1.0, "best-practices": 1.0}
RUNS = int(os.environ.get("DARGAH_TEST_LIGHTHOUSE_RUNS", "3"))  # the median run is judged
CHROME_FLAGS = "--headless=new --no-sandbox --disable-gpu --disable-dev-shm-usage --no-first-run"


def require_tools() -> None:
    """Fail (in CI) or skip (elsewhere) with the reason when Node, the packages or Chromium are
    missing; ``make test`` installs the packages, ``.ci/run`` Node and Chromium."""
    missing = []
    if shutil.which("node") is None:
        missing.append("Node.js (apt-get install nodejs npm)")
    if not Path(CHROMIUM).exists():
        missing.append(f"Chromium at {CHROMIUM} (apt-get install chromium)")
    if missing:
        reason = "the page checks need " + " and ".join(missing)
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    if not LIGHTHOUSE.exists() or not AXE.exists():
        pytest.fail(
            "Lighthouse and axe-core are not installed: run `make test`, or "
            f"`npm ci --prefix {TOOLS.relative_to(ROOT)}`"
        )


@dataclass
class Scores:
    """One page's Lighthouse result: category scores and what held each category back."""

    name: str
    url: str
    scores: dict[str, float | None] = field(default_factory=dict)
    held_back: dict[str, list[str]] = field(default_factory=dict)
    error: str = ""
    performance_runs: list[float] = field(default_factory=list)  # every run's, in order

    def failing(self) -> list[str]:
        if self.error:
            return ["lighthouse"]
        return [c for c, least in THRESHOLDS.items() if (self.scores.get(c) or 0.0) < least]


def _held_back(report: dict[str, Any], category: str) -> list[str]:
    """The audits of ``category`` that lost points, heaviest first, as one line each."""
    audits = report["audits"]
    lines = []
    refs = sorted(report["categories"][category]["auditRefs"], key=lambda r: -r.get("weight", 0))
    for ref in refs:
        audit = audits.get(ref["id"], {})
        score = audit.get("score")
        mode = audit.get("scoreDisplayMode")
        if score is None or mode in {"notApplicable", "manual", "informative"} or score >= 1:
            continue
        if category == "performance" and ref.get("weight", 0) == 0 and score >= 0.9:
            continue
        shown = audit.get("displayValue", "")
        line = f"{ref['id']} ({score:.2f}{', ' + shown if shown else ''}): {audit['title']}"
        if ref["id"] == "errors-in-console":  # which address, which error
            items = audit.get("details", {}).get("items", [])[:3]
            line += "".join(f"\n      {i.get('description', '')[:160]} {_url(i)}" for i in items)
        lines.append(line)
    return lines


def _url(item: dict[str, Any]) -> str:
    return str(item.get("sourceLocation", {}).get("url", item.get("url", "")))


def _run_once(name: str, url: str, headers: dict[str, str] | None) -> Scores:
    """One Lighthouse run (mobile, simulated throttling); its JSON and HTML under REPORTS."""
    out = REPORTS / f"lighthouse-{name}"
    command = [
        "node",
        str(LIGHTHOUSE),
        url,
        "--quiet",
        "--output=json",
        "--output=html",
        f"--output-path={out}",
        f"--only-categories={','.join(CATEGORIES)}",
        f"--chrome-flags={CHROME_FLAGS}",
        "--max-wait-for-load=30000",
    ]
    if headers:
        command.append("--extra-headers=" + json.dumps(headers))
    env = {**os.environ, "CHROME_PATH": CHROMIUM}
    result = Scores(name, url)
    try:
        run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        result.error = "Lighthouse did not finish in 120 s"
        return result
    report_file = out.with_name(out.name + ".report.json")
    if run.returncode != 0 or not report_file.exists():
        result.error = f"Lighthouse exited {run.returncode}: {run.stderr[-600:]}"
        return result
    report = json.loads(report_file.read_text(encoding="utf-8"))
    if report.get("runtimeError"):
        result.error = str(report["runtimeError"].get("message", report["runtimeError"]))
    final = report.get("finalDisplayedUrl", "")
    if urlsplit(final).path != urlsplit(url).path:  # e.g. sent to sign in: not the page meant
        result.error = f"Lighthouse ended at {final}, not at {url}"
    for category in CATEGORIES:
        result.scores[category] = report["categories"][category]["score"]
        result.held_back[category] = _held_back(report, category)
    return result


def lighthouse(name: str, url: str, headers: dict[str, str] | None = None) -> Scores:
    """The median of ``RUNS`` Lighthouse runs over ``url``, by performance score.

    Lighthouse's own advice on variability: a single run's performance score moves by several
    hundredths on a busy machine; the median of runs is what to judge. The median run's
    reports are kept as ``lighthouse-<name>.report.*``, the others as ``…-run<N>.report.*``.
    """
    REPORTS.mkdir(parents=True, exist_ok=True)
    runs = []
    for n in range(RUNS):
        one = _run_once(f"{name}-run{n + 1}", url, headers)
        if one.error:
            one.name = name
            return one
        runs.append((one.scores.get("performance") or 0.0, n + 1, one))
    runs.sort(key=lambda r: (r[0], r[1]))
    _score, chosen, median = runs[len(runs) // 2]
    for suffix in (".report.json", ".report.html"):
        kept = REPORTS / f"lighthouse-{name}-run{chosen}{suffix}"
        kept.replace(REPORTS / f"lighthouse-{name}{suffix}")
    median.name = name
    median.performance_runs = [r[0] for r in sorted(runs, key=lambda r: r[1])]
    return median


def score_table(results: list[Scores]) -> str:
    """Every page's scores, then what held back each failing category, for a failure message."""
    head = f"{'page':<18} {'perf':>5} {'a11y':>5} {'b.p.':>5} {'seo':>5}  url"
    lines = [head]
    for r in results:
        cells = [r.scores.get(c) for c in CATEGORIES]
        shown = " ".join(f"{c:>5.2f}" if c is not None else "    —" for c in cells)
        runs = " ".join(f"{p:.2f}" for p in r.performance_runs)
        lines.append(
            f"{r.name:<18} {shown}  {r.url}" + (f"  (performance runs: {runs})" if runs else "")
        )
    for r in results:
        if r.error:
            lines.append(f"\n{r.name}: {r.error}")
        for category in r.failing():
            if category == "lighthouse":
                continue
            lines.append(
                f"\n{r.name}: {category} {r.scores.get(category)} < {THRESHOLDS[category]}"
            )
            lines.extend("  - " + line for line in r.held_back.get(category, [])[:12])
    lines.append(f"\nreports: {REPORTS.relative_to(ROOT)}/lighthouse-<page>.report.html")
    return "\n".join(lines)


def axe_violations(page: Any) -> list[dict[str, Any]]:
    """axe-core's violations on the page as it is now (every rule axe runs by default).

    Everything is laid out first: content a page renders only when scrolled near
    (``content-visibility: auto``) would otherwise leave axe unable to judge its contrast."""
    page.add_style_tag(content="* { content-visibility: visible !important; }")
    if page.evaluate("typeof window.axe") == "undefined":
        page.add_script_tag(path=str(AXE))
    found: list[dict[str, Any]] = page.evaluate(
        "async () => (await axe.run(document, {resultTypes: ['violations']})).violations"
    )
    return found


def describe_violations(where: str, violations: list[dict[str, Any]]) -> list[str]:
    lines = []
    for v in violations:
        targets = [", ".join(map(str, n.get("target", []))) for n in v.get("nodes", [])[:3]]
        lines.append(f"{where}: {v['id']} ({v.get('impact')}) {v['help']} -> {'; '.join(targets)}")
    return lines

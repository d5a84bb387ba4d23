"""``dargah serve PART…`` runs what it is asked for, and refuses what cannot go together."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import httpx

from tests.harness import DARGAH, free_port


def test_the_sandbox_agencies_run_alone_and_refuse_calls_without_the_bus(tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [DARGAH, "serve", "sandbox", "--home", str(tmp_path / "h"), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        index = httpx.get(f"http://127.0.0.1:{port}/").json()
        assert len(index["agencies"]) >= 5
        direct = httpx.get(f"http://127.0.0.1:{port}/sabt/persons/0499370899")
        assert direct.status_code == 401
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_the_bus_and_the_sandbox_are_not_served_by_one_process(tmp_path: Path) -> None:
    r = subprocess.run(
        [DARGAH, "serve", "bus", "sandbox", "--home", str(tmp_path / "h")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 1 and "outside agencies" in r.stderr

"""``dargah demo`` as a real process on a free loopback port, for tests that drive the sandbox."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx

from tests.harness import DARGAH


class Demo:
    def __init__(self, home: Path, port: int, env: dict[str, str] | None = None) -> None:
        self.home = home
        self.port = port
        self.env = env or {}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> dict[str, Any]:
        log = open(self.home.parent / "demo.log", "ab")
        self.proc = subprocess.Popen(
            [DARGAH, "demo", "--home", str(self.home), "--port", str(self.port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, "DARGAH_LOG_LEVEL": "warning", **self.env},
        )
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, (self.home.parent / "demo.log").read_text()[-2000:]
            try:
                if (
                    httpx.get(f"http://127.0.0.1:{self.port}/readyz", timeout=1).status_code == 200
                    and (self.home / "demo.json").exists()
                ):
                    return json.loads((self.home / "demo.json").read_text(encoding="utf-8"))  # type: ignore[no-any-return]
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError("demo did not start in 40 s")

    def stop(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=30)
        self.proc = None
        return code

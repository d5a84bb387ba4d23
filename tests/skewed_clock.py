"""Run ``dargah ARGS…`` in a process whose wall clock is OFFSET seconds off, for tests.

``python -m tests.skewed_clock OFFSET ARGS…`` shifts :func:`time.time` and
:func:`time.time_ns` (what every module of this process reads the wall clock with) by
OFFSET seconds before the command starts: a machine whose clock is ahead (OFFSET > 0) or
behind. Used only by tests that show shared state does not depend on the nodes' clocks.
"""

from __future__ import annotations

import sys
import time


def _shift(offset: float) -> None:
    real_time, real_time_ns = time.time, time.time_ns
    offset_ns = int(offset * 1e9)
    time.time = lambda: real_time() + offset  # type: ignore[assignment]
    time.time_ns = lambda: real_time_ns() + offset_ns  # type: ignore[assignment]


def main() -> None:
    _shift(float(sys.argv[1]))
    from dargah.cli.main import main as dargah

    sys.argv = ["dargah", *sys.argv[2:]]
    dargah()


if __name__ == "__main__":
    main()

"""Whether a cause's failure persists: the monitor's rounds as a short history per cause.

Pure and per process. Each round adds one sample per cause (a provider host): the time, and
the services found failing (none: a good round). A failure *persists* when the newest
``open_after`` samples all failed and were all taken after ``since`` (the cause's last
resolution: a streak that began before another process resolved it does not count, so no
process reopens what another has just closed on old evidence); a recovery is *sustained*
when the newest ``resolve_after`` samples are all good and after ``since`` (the incident's
last opening).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

KEEP = 64


@dataclass(slots=True)
class Sample:
    at: float
    failing: frozenset[str]


@dataclass(slots=True)
class History:
    samples: deque[Sample] = field(default_factory=lambda: deque(maxlen=KEEP))
    seen_up: bool = False

    def add(self, at: float, failing: frozenset[str], reachable: bool) -> None:
        self.samples.append(Sample(at, failing))
        if reachable:
            self.seen_up = True

    def _run(self, bad: bool, since: float) -> list[Sample]:
        out: list[Sample] = []
        for s in reversed(self.samples):
            if bool(s.failing) != bad or s.at <= since:
                break
            out.append(s)
        return out

    def persists(self, open_after: int, since: float = 0.0) -> bool:
        return len(self._run(True, since)) >= open_after

    def sustained(self, resolve_after: int, since: float = 0.0) -> bool:
        return len(self._run(False, since)) >= resolve_after

    def failing_services(self, since: float = 0.0) -> frozenset[str]:
        """Every service failing in the current run of failed samples."""
        out: frozenset[str] = frozenset()
        for s in self._run(True, since):
            out |= s.failing
        return out

    def started(self, since: float = 0.0) -> float | None:
        """When the current run of failed samples began."""
        run = self._run(True, since)
        return run[-1].at if run else None

    def recovered(self, since: float = 0.0) -> float | None:
        """When the current run of good samples began."""
        run = self._run(False, since)
        return run[-1].at if run else None

"""What a log writer's thread does between commits: seals, lookup index batches, WAL
checkpoints and signed instance checkpoints (protocol §6), each on its own schedule.

:class:`LogUpkeep` is the part of :class:`dargah.bus.log.writer.LogWriter` that does them; the
writer holds the state they read (its backend, its chain's tail, its signer).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from dargah.bus.log.backends import LogBackend
from dargah.bus.log.chain import canonical_value, checkpoint_payload, seal_payload
from dargah.bus.log.lookup import INDEX_BATCH, INDEX_SECONDS
from dargah.core.clock import now_rfc3339
from dargah.core.keys import EdDSASigner

log = logging.getLogger("dargah.log")
CHECKPOINT_SECONDS = 0.5  # how often a writer moves the WAL into the database (SQLite)
# How often a writer of a named chain signs an instance checkpoint while its chain grows (the
# protocol asks for one at least every second while any chain grows; the writer's thread looks
# at least every 0.25 s). Each checkpoint names every chain's head, and verification keeps the
# heads named in memory: a chain that grows all day gets about 115,000 of them.
INSTANCE_CHECKPOINT_SECONDS = 0.75


@dataclass(frozen=True, slots=True)
class SealAt:
    """From the event loop to the thread: seal this record."""

    seq: int
    hash: str


class LogUpkeep:
    """Seals, index batches and checkpoints, for the writer's thread."""

    chain: str
    healthy: bool
    _backend: LogBackend | None
    _signer: EdDSASigner
    _tail: tuple[int, str]
    _seal_records: int
    _seal_seconds: float
    _last_sealed: int
    _last_seal_time: float
    _last_index_time: float
    _last_checkpoint_time: float
    _index_behind: bool
    _checkpointed: tuple[int, str] | None
    _last_instance_checkpoint: float

    def _maybe_seal(self) -> None:
        tail_seq = self._tail[0]
        if not self.healthy or tail_seq <= self._last_sealed:
            return
        due = time.monotonic() - self._last_seal_time >= self._seal_seconds
        if due or tail_seq - self._last_sealed >= self._seal_records:
            try:
                self._seal(force=False)
            except Exception as exc:
                log.error("sealing the log failed: %s", exc)
                self.healthy = False

    def _maybe_index(self) -> None:
        """Bring the lookup indexes up to date by a batch, every INDEX_SECONDS (between commits)."""
        if not self.healthy:
            return
        if not self._index_behind and time.monotonic() - self._last_index_time < INDEX_SECONDS:
            return
        self._last_index_time = time.monotonic()
        assert self._backend is not None
        try:
            # A full batch means more is waiting: the next one follows the next commit, so that
            # the lock is held a short time at once and the index never falls further behind.
            self._index_behind = self._backend.index_lookups() >= INDEX_BATCH
        except Exception as exc:  # derived data: the records are safe; the next round retries
            self._index_behind = False
            log.warning("indexing the log by subject and request id failed: %s", exc)

    def _maybe_checkpoint(self) -> None:
        """Every CHECKPOINT_SECONDS, between commits and outside the log's lock."""
        if not self.healthy or time.monotonic() - self._last_checkpoint_time < CHECKPOINT_SECONDS:
            return
        self._last_checkpoint_time = time.monotonic()
        assert self._backend is not None
        try:
            self._backend.checkpoint()
        except Exception as exc:  # the records are committed; the next round retries
            log.warning("checkpointing the message log failed: %s", exc)

    def _maybe_instance_checkpoint(self) -> None:
        if not self.chain or not self.healthy or self._tail == self._checkpointed:
            return
        if time.monotonic() - self._last_instance_checkpoint < INSTANCE_CHECKPOINT_SECONDS:
            return
        try:
            self._instance_checkpoint(force=False)
        except Exception as exc:  # the records are committed and sealed; the next round retries
            log.warning("signing an instance checkpoint failed: %s", exc)

    def _instance_checkpoint(self, *, force: bool) -> None:
        """Sign the heads of every chain of the instance (named chains only)."""
        if not self.chain:
            return
        assert self._backend is not None
        own = self._tail
        self._last_instance_checkpoint = time.monotonic()
        heads = [
            {"chain": chain, "seq": seq, "hash": hash_}
            for chain, seq, hash_ in self._backend.heads()
        ]
        if not heads and not force:
            return
        heads.sort(key=lambda h: str(h["chain"]))
        ts = now_rfc3339()
        signature = self._signer.sign_bytes(checkpoint_payload(ts, heads))
        self._backend.add_checkpoint(ts, canonical_value(heads), self._signer.kid, signature)
        self._checkpointed = own

    def _seal_record(self, at: SealAt) -> None:
        """The seal the event loop asked for (unless a later one came first)."""
        if not self.healthy or at.seq <= self._last_sealed:
            return
        self._last_seal_time = time.monotonic()
        try:
            self._write_seal(at.seq, at.hash)
        except Exception as exc:
            log.error("sealing the log failed: %s", exc)
            self.healthy = False

    def _seal(self, *, force: bool) -> None:
        assert self._backend is not None
        seq, hash_ = self._backend.tail() if force else self._tail
        self._last_seal_time = time.monotonic()
        if seq == 0 or (seq <= self._last_sealed and not force):
            return
        self._write_seal(seq, hash_)

    def _write_seal(self, seq: int, hash_: str) -> None:
        assert self._backend is not None
        ts = now_rfc3339()
        signature = self._signer.sign_bytes(seal_payload(seq, hash_, ts))
        self._backend.add_seal(seq, hash_, ts, self._signer.kid, signature)
        self._last_sealed = seq

"""Which chain of the message log a bus process writes (protocol §6, "Several chains").

With one chain (``DARGAH_LOG_CHAINS=single``, the default on SQLite) every process
writes the unnamed chain, in turns. With a chain per process (the default on
PostgreSQL) a process writes ``{node}-{n}``: ``node`` is the machine's name
(``DARGAH_NODE_NAME``, else the host name with four random hex digits, so that two
homes on one machine never share a name, kept in ``{home}/node-name`` so that it
stays the same across restarts), ``n`` the first slot of the node no live process
holds (a lock file in ``{home}/run``, held while the process lives). A restarted
process takes its slot back, so a node's chains stay few and stable.
"""

from __future__ import annotations

import fcntl
import os
import re
import secrets
import socket
from dataclasses import dataclass

from dargah.core.settings import Settings

MODES = ("auto", "single", "per-process")
MAX_NODE = 28  # a chain id is at most 32 characters: {node}-{n}
MAX_SLOTS = 256
_NODE = re.compile(r"[A-Za-z0-9._-]{1,28}")


@dataclass
class ChainSlot:
    """A chain and the lock file that keeps it this process's own."""

    chain: str
    fd: int | None = None

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def chain_mode(settings: Settings) -> str:
    mode = settings.log_chains
    if mode not in MODES:
        raise ValueError(f"DARGAH_LOG_CHAINS must be one of {', '.join(MODES)}, not {mode!r}")
    if mode == "auto":
        return "single" if settings.is_sqlite else "per-process"
    return mode


def node_name(settings: Settings) -> str:
    """The configured node name, else the one kept in the home, else a new one (kept)."""
    if settings.node_name:
        if not _NODE.fullmatch(settings.node_name):
            raise ValueError("DARGAH_NODE_NAME takes 1 to 28 letters, digits, '.', '_' or '-'")
        return settings.node_name
    path = settings.home / "node-name"
    try:
        kept = path.read_text().strip()
    except FileNotFoundError:
        kept = ""
    if _NODE.fullmatch(kept):
        return kept
    host = re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname())[: MAX_NODE - 5].strip("-")
    name = f"{host or 'node'}-{secrets.token_hex(2)}"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(".node-name.tmp")
    tmp.write_text(name + "\n")
    os.replace(tmp, path)
    return name


def claim_chain(settings: Settings) -> ChainSlot:
    """The chain this process writes; a named chain's slot stays held until released."""
    if chain_mode(settings) == "single":
        return ChainSlot("")
    node = node_name(settings)
    run = settings.home / "run"
    run.mkdir(parents=True, exist_ok=True)
    for n in range(MAX_SLOTS):
        fd = os.open(run / f"log-chain-{n}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        return ChainSlot(f"{node}-{n}", fd)
    raise RuntimeError(f"{MAX_SLOTS} bus processes already write the log from {settings.home}")

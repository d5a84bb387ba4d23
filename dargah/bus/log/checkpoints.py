"""Reading the signed instance checkpoints of a log of several chains (protocol §6).

A checkpoint is ``{ts, heads: [{chain, seq, hash}, ...]}`` signed with the seal key.
:func:`checkpoint_heads` checks every checkpoint's signature and gathers the heads they
name, for the verification of each chain (:mod:`dargah.bus.log.verify`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import Connection, text

from dargah.bus.log.chain import checkpoint_payload
from dargah.core.keys import b64url, b64url_decode

_CHECKPOINTS = text("SELECT id, ts, heads, kid, signature FROM message_log_checkpoint ORDER BY id")


def checkpoint_heads(
    conn: Connection, keys: Mapping[str, Ed25519PublicKey]
) -> tuple[dict[str, dict[int, str]], int, list[str]]:
    """({chain: {seq: hash}} the good checkpoints name, how many are good, what is wrong with
    the others): a checkpoint that cannot be read or whose signature does not verify, and two
    that name different records at one place."""
    heads: dict[str, dict[int, str]] = {}
    good, problems = 0, []
    for id_, ts, raw, kid, signature in conn.execute(_CHECKPOINTS):
        try:
            listed = json.loads(raw)
            named = [(str(h["chain"]), int(h["seq"]), str(h["hash"])) for h in listed]
        except (ValueError, TypeError, KeyError):
            problems.append(f"the instance checkpoint {id_} of {ts} cannot be read")
            continue
        key = keys.get(str(kid))
        try:
            raw_signature = b64url_decode(str(signature))
            if key is None or b64url(raw_signature) != signature:
                raise InvalidSignature
            key.verify(raw_signature, checkpoint_payload(str(ts), listed))
        except (InvalidSignature, TypeError, ValueError):
            problems.append(
                f"the instance checkpoint {id_} of {ts} has a signature that does not verify"
            )
            continue
        good += 1
        for chain, seq, hash_ in named:
            if heads.setdefault(chain, {}).setdefault(seq, hash_) != hash_:
                problems.append(f"two instance checkpoints name different records {chain}:{seq}")
    return heads, good, problems

"""Duplicate public services: the same service offered twice, across agencies or within one.

:func:`score_pairs` scores every pair of active services 0..1: TF-IDF over the word tokens of
the title (Persian through :func:`dargah.core.persian.normalize`, English lower-cased, without
punctuation, lightly stemmed) and over character trigrams of the title's
:func:`~dargah.core.persian.compact` form (so ZWNJ, space or no joint, typos and letter
variants still meet), cosine similarity per language, the title weighted above the
description. It is computed sparsely through an inverted index: pairs that share no feature
score 0 and are not listed. Pairs whose titles differ only in their object (« پرداخت قبض برق »
and « پرداخت قبض گاز ») are flagged ``object_differs`` and scaled down.

Only an operator's decision (:func:`decide`) makes a pair ``confirmed`` or ``dismissed``;
:func:`duplicates` lists candidates and decided pairs, best first.
"""

from __future__ import annotations

import math
import re
from bisect import bisect_left
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from sqlalchemy import Connection, Engine, select

from dargah.core.clock import now_rfc3339
from dargah.core.persian import normalize
from dargah.registry import audit
from dargah.registry.audit import Action
from dargah.store.db import READ_ONLY
from dargah.store.tables import duplicate_decisions, public_services

__all__ = [
    "DESCRIPTION_WEIGHT",
    "OBJECT_DIFFERS_FACTOR",
    "Pair",
    "ServiceText",
    "decide",
    "decisions",
    "duplicates",
    "load_services",
    "score_pairs",
]

OBJECT_DIFFERS_FACTOR = 0.6
"""A pair whose titles differ only in their object keeps this share of its score."""

DESCRIPTION_WEIGHT = 0.15
"""The description's share of the score when both services have one in a common language."""

STATUSES = ("confirmed", "dismissed")


_WORD = re.compile(r"[^\W_]+", re.UNICODE)
_STOP = frozenset(
    "و در با از به برای یا را که این ان a an and the of for to in on or by with from at via"
    " online e".split()
)
_TITLE_GROUPS = ("fa_w", "fa_c", "en_w", "en_c")
_GROUPS = (*_TITLE_GROUPS, "fa_d", "en_d")


@dataclass(frozen=True)
class ServiceText:
    """What the duplicate finder reads of one service."""

    service_id: str
    agency: str
    title_fa: str | None = None
    title_en: str | None = None
    description_fa: str | None = None
    description_en: str | None = None


@dataclass(frozen=True)
class Pair:
    """Two services (``a`` < ``b``) and how alike they are."""

    a: str
    b: str
    score: float
    object_differs: bool
    same_agency: bool


def _stem(word: str) -> str:
    if not word.isascii() or len(word) <= 3:
        return word
    for suffix in ("ies", "ing", "es", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3 and not word.endswith("ss"):
            return word[: -len(suffix)] + ("y" if suffix == "ies" else "")
    return word


def words(text: str | None) -> list[str]:
    """The normalised, lightly stemmed word tokens of ``text``."""
    if not text:
        return []
    return list(_words(text))


@lru_cache(maxsize=1 << 16)
def _words(text: str) -> tuple[str, ...]:
    return tuple(_stem(w) for w in _WORD.findall(normalize(text)))


def _trigrams(tokens: list[str]) -> list[str]:
    joined = "".join(tokens)
    if len(joined) < 3:
        return [joined] if joined else []
    return [joined[i : i + 3] for i in range(len(joined) - 2)]


def _features(s: ServiceText) -> dict[str, Counter[str]]:
    out: dict[str, Counter[str]] = {}
    for lang, title, desc in (
        ("fa", s.title_fa, s.description_fa),
        ("en", s.title_en, s.description_en),
    ):
        tw = words(title)
        if tw:
            out[f"{lang}_w"] = Counter([w for w in tw if w not in _STOP] or tw)
            out[f"{lang}_c"] = Counter(_trigrams(tw))
        dw = [w for w in words(desc) if w not in _STOP]
        if dw:
            out[f"{lang}_d"] = Counter(dw)
    return out


def _content(title: str | None) -> list[str]:
    return [w for w in words(title) if w not in _STOP]


def _alike(x: str, y: str) -> bool:
    """Two words that are one with a typo: most of their padded trigrams are shared."""
    gx = {f"  {x} "[i : i + 3] for i in range(len(x) + 1)}
    gy = {f"  {y} "[i : i + 3] for i in range(len(y) + 1)}
    return len(gx & gy) / len(gx | gy) >= 0.5


def object_differs(title_a: str | None, title_b: str | None) -> bool:
    """Whether the titles share content words but each has a content word the other lacks
    (not a mere joint, spelling variant or typo): « قبض برق » against « قبض گاز »."""
    wa, wb = _content(title_a), _content(title_b)
    sa, sb = set(wa), set(wb)
    only_a = [w for w in wa if w not in sb]
    only_b = [w for w in wb if w not in sa]
    if not (sa & sb) or not only_a or not only_b:
        return False
    # A joint, not an object: گواهی‌نامه / گواهی نامه, کسب‌وکار / کسب و کار.
    fa, fb = words(title_a), words(title_b)
    if "".join(w for w in fa if w not in set(fb)) == "".join(w for w in fb if w not in set(fa)):
        return False
    return not (
        all(any(_alike(x, y) for y in only_b) for x in only_a)
        and all(any(_alike(y, x) for x in only_a) for y in only_b)
    )


def _object_differs(a: ServiceText, b: ServiceText) -> bool:
    if a.title_fa and b.title_fa:
        return object_differs(a.title_fa, b.title_fa)
    if a.title_en and b.title_en:
        return object_differs(a.title_en, b.title_en)
    return False


def _vectors(
    feats: list[dict[str, Counter[str]]],
) -> tuple[list[dict[str, dict[str, float]]], dict[str, Counter[str]]]:
    """Per service and group, the L2-normalised TF-IDF vector (sublinear tf, smooth idf)."""
    n = len(feats)
    df: dict[str, Counter[str]] = {g: Counter() for g in _GROUPS}
    for f in feats:
        for g, counts in f.items():
            df[g].update(counts.keys())
    idf = {g: {t: math.log((1 + n) / (1 + c)) + 1.0 for t, c in df[g].items()} for g in _GROUPS}
    out: list[dict[str, dict[str, float]]] = []
    for f in feats:
        vecs: dict[str, dict[str, float]] = {}
        for g, counts in f.items():
            v = {t: (1.0 + math.log(c)) * idf[g][t] for t, c in counts.items()}
            norm = math.sqrt(sum(x * x for x in v.values()))
            if norm > 0:
                vecs[g] = {t: x / norm for t, x in v.items()}
        out.append(vecs)
    return out, df


def _combine(sims: Mapping[str, float], va: Mapping[str, Any], vb: Mapping[str, Any]) -> float:
    title = 0.0
    for lang in ("fa", "en"):
        if f"{lang}_w" in va and f"{lang}_w" in vb:
            title = max(title, sims.get(f"{lang}_w", 0.0), sims.get(f"{lang}_c", 0.0))
    described = any(f"{lang}_d" in va and f"{lang}_d" in vb for lang in ("fa", "en"))
    if not described:
        return min(title, 1.0)
    desc = max(sims.get("fa_d", 0.0), sims.get("en_d", 0.0))
    return min((1.0 - DESCRIPTION_WEIGHT) * title + DESCRIPTION_WEIGHT * desc, 1.0)


def _dot(x: Mapping[str, float], y: Mapping[str, float]) -> float:
    if len(x) > len(y):
        x, y = y, x
    return sum(w * y[t] for t, w in x.items() if t in y)


def _pair(sa: ServiceText, sb: ServiceText, score: float) -> Pair:
    if sa.service_id > sb.service_id:
        sa, sb = sb, sa
    differs = _object_differs(sa, sb)
    if differs:
        score *= OBJECT_DIFFERS_FACTOR
    return Pair(sa.service_id, sb.service_id, round(score, 4), differs, sa.agency == sb.agency)


def _candidates(
    vecs: list[dict[str, dict[str, float]]], df: dict[str, Counter[str]], floor: float
) -> set[int]:
    """Pairs (as ``i * n + j``, i < j) whose cosine in some title group can reach the title
    similarity ``t`` they need to score ``floor`` (lower when both have a description).

    Prefix filtering (AllPairs): features are ordered rarest first and only a vector's prefix
    is indexed, up to where what is left has a norm below ``t``; two unit vectors whose cosine
    reaches ``t`` share a feature of that prefix. Each vector probes the index with all its
    features, and a pair stays a candidate only when the dot product found plus the norm of
    the unindexed rest can still reach ``t``. The very common features (long posting lists,
    little weight) are thus never walked pair by pair.
    """
    n = len(vecs)
    keys: set[int] = set()
    relaxed = (floor - DESCRIPTION_WEIGHT) / (1.0 - DESCRIPTION_WEIGHT)
    described = [("fa_d" in v or "en_d" in v) for v in vecs]
    for g in _TITLE_GROUPS:
        counts = df[g]
        index: dict[str, list[tuple[int, float]]] = defaultdict(list)
        rest = [0.0] * n  # the norm of each indexed vector's unindexed suffix
        start: list[tuple[int, str]] = [(0, "")] * n  # where that suffix starts
        for i, v in enumerate(vecs):
            vec = v.get(g)
            if not vec:
                continue
            acc: dict[int, float] = defaultdict(float)
            for term, w in vec.items():
                for j, wj in index.get(term, ()):
                    acc[j] += w * wj
            order = sorted(((counts[term], term), w) for term, w in vec.items())
            marks = [k for k, _ in order]
            tail = [0.0] * (len(order) + 1)  # tail[k]: squared norm of order[k:]
            for k in range(len(order) - 1, -1, -1):
                tail[k] = tail[k + 1] + order[k][1] ** 2
            for j, a in acc.items():
                t = relaxed if described[i] and described[j] else floor
                # What the unindexed suffix of j adds is at most its norm times the norm of
                # i's features from where that suffix starts (the features are ordered alike).
                if a + rest[j] * math.sqrt(tail[bisect_left(marks, start[j])]) >= t - 1e-9:
                    keys.add(j * n + i)
            t = relaxed if described[i] else floor
            k = 0
            while k < len(order) and tail[k] >= t * t:
                index[order[k][0][1]].append((i, order[k][1]))
                k += 1
            rest[i] = math.sqrt(tail[k])
            start[i] = marks[k] if k < len(order) else (n + 1, "")
    return keys


def _all_sharing(vecs: list[dict[str, dict[str, float]]]) -> set[int]:
    """Every pair that shares any feature (``floor`` = 0)."""
    n = len(vecs)
    keys: set[int] = set()
    for g in _GROUPS:
        index: dict[str, list[int]] = defaultdict(list)
        for i, v in enumerate(vecs):
            for term in v.get(g, {}):
                postings = index[term]
                keys.update(j * n + i for j in postings)
                postings.append(i)
    return keys


def score_pairs(services: Iterable[ServiceText], *, floor: float = 0.5) -> list[Pair]:
    """Pairs of ``services`` (pass only active ones) scored 0..1, best first.

    Every pair is considered, but only those whose similarity reaches ``floor`` are listed,
    with their exact score; an ``object_differs`` pair is listed when its similarity before
    the scaling reaches ``floor``. ``floor`` = 0 lists every pair that shares any feature
    (millions of pairs on a large catalogue: slow).
    """
    items = list(services)
    n = len(items)
    feats = [_features(s) for s in items]
    vecs, df = _vectors(feats)
    if floor > 0:
        keys = _candidates(vecs, df, floor)
    else:
        keys = _all_sharing(vecs)
    pairs: list[Pair] = []
    for key in keys:
        i, j = divmod(key, n)
        vi, vj = vecs[i], vecs[j]
        sims = {g: _dot(vi[g], vj[g]) for g in _GROUPS if g in vi and g in vj}
        score = _combine(sims, vi, vj)
        if score <= 0.0 or score < floor:
            continue
        pairs.append(_pair(items[i], items[j], score))
    pairs.sort(key=lambda p: (-p.score, p.a, p.b))
    return pairs


def load_services(conn: Connection, *, active_only: bool = True) -> list[ServiceText]:
    """The stored services as the duplicate finder reads them (active ones by default)."""
    c = public_services.c
    q = select(
        c.service_id,
        c.member_id,
        c.title_fa,
        c.title_en,
        c.description_fa,
        c.description_en,
        c.status,
    ).order_by(c.service_id)
    out = []
    for r in conn.execute(q):
        if active_only and r.status != "active":
            continue
        out.append(
            ServiceText(
                r.service_id,
                r.member_id,
                r.title_fa,
                r.title_en,
                r.description_fa,
                r.description_en,
            )
        )
    return out


def _ordered(a: str, b: str) -> tuple[str, str]:
    if a == b:
        raise ValueError(f"a service is not a duplicate of itself: {a}")
    return (a, b) if a < b else (b, a)


def decide(conn: Connection, a: str, b: str, status: str, actor: str, reason: str | None) -> None:
    """Record an operator's decision on a pair (``confirmed`` or ``dismissed``), audited.

    A later decision on the same pair replaces the earlier one (both stay in the audit log).
    """
    if status not in STATUSES:
        raise ValueError(f"status must be one of {', '.join(STATUSES)}, not {status!r}")
    a, b = _ordered(a, b)
    known = set(
        conn.execute(
            select(public_services.c.service_id).where(public_services.c.service_id.in_([a, b]))
        ).scalars()
    )
    missing = [s for s in (a, b) if s not in known]
    if missing:
        raise ValueError(f"no such service: {', '.join(missing)}")
    t = duplicate_decisions
    before_row = (
        conn.execute(select(t).where(t.c.service_a == a, t.c.service_b == b)).mappings().first()
    )
    after = {
        "service_a": a,
        "service_b": b,
        "status": status,
        "decided_by": actor,
        "decided_at": now_rfc3339(),
        "reason": reason,
    }
    if before_row is None:
        conn.execute(t.insert().values(**after))
    else:
        conn.execute(t.update().where(t.c.service_a == a, t.c.service_b == b).values(**after))
    before = dict(before_row) if before_row is not None else None
    audit.record(conn, actor, Action.DUPLICATE_DECIDE, f"duplicate:{a}:{b}", before, after)


def decisions(conn: Connection) -> dict[tuple[str, str], dict[str, Any]]:
    """Every decided pair: (a, b) → its row."""
    t = duplicate_decisions
    return {(r["service_a"], r["service_b"]): dict(r) for r in conn.execute(select(t)).mappings()}


def duplicates(engine: Engine, min_score: float = 0.5) -> list[dict[str, Any]]:
    """Candidate pairs scoring at least ``min_score`` and every decided pair (whatever its
    score), best first: ``{"a", "b", "score", "status", "object_differs", "same_agency"}``."""
    with engine.connect().execution_options(**READ_ONLY) as conn, conn.begin():
        services = load_services(conn)
        decided = decisions(conn)
    by_id = {s.service_id: s for s in services}
    found = {(p.a, p.b): p for p in score_pairs(services, floor=min_score)}
    missing = [(a, b) for a, b in decided if (a, b) not in found and a in by_id and b in by_id]
    if missing:
        vecs = dict(zip(by_id, _vectors([_features(s) for s in services])[0], strict=True))
        for a, b in missing:
            sims = {g: _dot(vecs[a].get(g, {}), vecs[b].get(g, {})) for g in _GROUPS}
            found[(a, b)] = _pair(by_id[a], by_id[b], _combine(sims, vecs[a], vecs[b]))
    out: list[dict[str, Any]] = []
    for p in sorted(found.values(), key=lambda p: (-p.score, p.a, p.b)):
        a, b = p.a, p.b
        row = decided.get((a, b))
        if row is None and p.score < min_score:
            continue
        out.append(
            {
                "a": a,
                "b": b,
                "score": p.score,
                "status": row["status"] if row else "candidate",
                "object_differs": p.object_differs,
                "same_agency": p.same_agency,
            }
        )
    return out

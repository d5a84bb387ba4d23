"""Shipping the message log and events to NATS JetStream: every record and every event
arrives once, in order, also when NATS goes away and comes back while the bus is working.

Runs its own ``nats-server -js`` on a free loopback port (Debian's ``nats-server``; in CI its
absence fails the test) so that it can be stopped and started again."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from dargah.bus.stream import names, topic_subject
from dargah.store.tables import message_log
from tests.harness import World, free_port
from tests.webhooks import add_topic, make_event

NATS_SERVER = shutil.which("nats-server") or "/usr/sbin/nats-server"


class NatsServer:
    def __init__(self, store: Path) -> None:
        self.port = free_port()
        self.store = store
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [NATS_SERVER, "-a", "127.0.0.1", "-p", str(self.port), "-js", "-sd", str(self.store)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                import socket

                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.1)
        raise AssertionError("nats-server did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    if not Path(NATS_SERVER).exists():
        reason = "nats-server is not installed (apt-get install nats-server)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    server = NatsServer(tmp_path / "nats")
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def _read(url: str, stream: str) -> list[tuple[dict[str, str], bytes]]:
    import nats

    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        info = await js.stream_info(stream)
        out = []
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            msg = await js.get_msg(stream, seq=seq)
            out.append((dict(msg.headers or {}), msg.data or b""))
        return out
    finally:
        await nc.close()


def _wait_for(check: Any, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.3)


def test_every_record_and_event_reaches_jetstream_once_in_order_across_a_nats_outage(
    world: World, nats_server: NatsServer
) -> None:
    w = world
    sid = w.add_service("plain.v1")
    w.grant("cons", sid)
    topic = add_topic(w)
    w.start(DARGAH_NATS_URL=nats_server.url, DARGAH_NATS_STREAM="T_SHIP")
    token = w.token()
    pub = w.clients["sabt"]
    pub_token = httpx.post(
        f"{w.url}/oauth/token",
        data={"grant_type": "client_credentials", "client_id": pub.id, "client_secret": pub.secret},
    ).json()["access_token"]

    def traffic(n: int) -> list[str]:
        ids = []
        for i in range(n):
            assert w.call(sid, "/x", token=token).status_code == 200
            event = make_event(i)
            r = httpx.post(
                f"{w.url}/e1/{topic}",
                content=json.dumps(event).encode(),
                headers={
                    "content-type": "application/cloudevents+json",
                    "authorization": f"Bearer {pub_token}",
                },
            )
            assert r.status_code == 202, r.text
            ids.append(event["id"])
        return ids

    event_ids = traffic(20)
    nats_server.stop()  # NATS goes away while calls and events go on
    event_ids += traffic(20)
    nats_server.start()
    event_ids += traffic(10)

    stream, subject = names("TEST", "T_SHIP")
    with w.engine.connect() as conn:
        logged = conn.execute(select(func.count()).select_from(message_log)).scalar_one()
        chain = [
            (r.seq, r.hash)
            for r in conn.execute(select(message_log.c.seq, message_log.c.hash).order_by("seq"))
        ]
    shipped = _wait_for(
        lambda: (got := asyncio.run(_read(nats_server.url, f"{stream}_LOG")))
        and len(got) >= logged
        and got
    )
    assert [(int(h["Dargah-Seq"]), json.loads(d)["hash"]) for h, d in shipped] == chain
    events_shipped = _wait_for(
        lambda: (got := asyncio.run(_read(nats_server.url, f"{stream}_EVENTS")))
        and len(got) >= len(event_ids)
        and got
    )
    assert [json.loads(d)["id"] for _h, d in events_shipped] == event_ids
    assert {h["Dargah-Topic"] for h, _d in events_shipped} == {topic}
    assert topic_subject(topic) and subject == "t.ship"


def test_each_node_ships_only_its_own_chain_and_jetstream_keeps_every_chain_once(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    from dargah.bus.stream import Shipper
    from tests.log_factory import append_many, open_logdb, run_writers

    chains = ("node-a-0", "node-b-0")
    with open_logdb(tmp_path / "home") as db:
        writers = [db.writer(chain=c) for c in chains]

        async def body(*ws: Any) -> None:
            await asyncio.gather(*(append_many(w, 40, start=i * 100) for i, w in enumerate(ws)))

        run_writers(writers, body)
        stream, _subject = names("TEST", "T_CHAINS")

        async def ship() -> list[int]:
            # node a ships twice over (a restart), node b once: JetStream keeps each record once
            shippers = [
                Shipper(db.engine, nats_server.url, "TEST", "T_CHAINS", chain)
                for chain in (chains[0], chains[0], chains[1])
            ]
            for s in shippers:
                s.start()
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and any(s.shipped["log"] < 40 for s in shippers):
                await asyncio.sleep(0.2)
            for s in shippers:
                await s.stop()
            return [s.shipped["log"] for s in shippers]

        assert asyncio.run(ship()) == [40, 40, 40]  # none shipped another node's records
        shipped = asyncio.run(_read(nats_server.url, f"{stream}_LOG"))
        with db.engine.connect() as conn:
            logged = {
                (r.chain, r.seq): r.hash
                for r in conn.execute(
                    select(message_log.c.chain, message_log.c.seq, message_log.c.hash)
                )
            }
    got = [(h["Dargah-Chain"], int(h["Dargah-Seq"]), h["Nats-Msg-Id"]) for h, _d in shipped]
    assert len(got) == len(logged) == 80
    assert {
        (c, s): json.loads(d)["hash"] for (c, s, _i), (_h, d) in zip(got, shipped, strict=True)
    } == logged
    assert {i for _c, _s, i in got} == {f"log-{c}:{s}" for c, s in logged}
    for chain in chains:  # each chain in seq order
        seqs = [s for c, s, _i in got if c == chain]
        assert seqs == list(range(1, 41))

"""The bus forwards a granted call to the provider and logs it, on each storage backend."""

from __future__ import annotations

import json

from dargah.bus.log.chain import log_id
from tests.harness import PURPOSE, SUBJECT, World


def test_a_granted_call_reaches_the_provider_and_is_logged(world_db: World) -> None:
    w = world_db
    sid = w.add_service("person-inquiry.v1", personal_data=True)
    w.grant("cons", sid)
    w.start()
    r = w.call(sid, "/persons/1?x=1", token=w.token())
    assert r.status_code == 200, r.text
    seen = r.json()
    assert seen["path"] == "/echo/persons/1"
    assert seen["headers"]["gsb-client"] == w.clients["cons"].id
    assert seen["headers"]["gsb-purpose"] == PURPOSE
    assert seen["headers"]["gsb-subject"] == SUBJECT
    rows = w.log_rows()
    assert [log_id(row["chain"], row["seq"]) for row in rows] == [r.headers["gsb-log-id"]]
    assert rows[0]["outcome"] == "ok" and rows[0]["subject_ref"] != SUBJECT
    assert SUBJECT not in json.dumps(rows, default=str)

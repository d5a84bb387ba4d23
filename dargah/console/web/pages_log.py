"""Following a call up: the message-log search, with each record's chain position and seal."""

from __future__ import annotations

from urllib.parse import urlencode

from starlette.responses import Response

from dargah.bus.log.search import LogQuery, search_log
from dargah.console.web import inputs
from dargah.console.web.guard import Page, requires
from dargah.console.web.policy import READERS
from dargah.core.errors import BadRequest
from dargah.core.identifiers import is_national_code
from dargah.registry.instance import subject_ref

PAGE_SIZE = 50
FILTERS = ("request_id", "client", "service", "outcome", "national_code", "since", "until")
OUTCOMES = (
    "ok",
    "provider-error",
    "access-denied",
    "unauthenticated",
    "unknown-service",
    "rate-limited",
    "provider-unavailable",
    "provider-timeout",
    "circuit-open",
    "bad-request",
    "subject-invalid",
    "purpose-required",
    "purpose-not-allowed",
    "payload-too-large",
    "response-too-large",
    "service-disabled",
    "log-unavailable",
)


@requires(*READERS)
def log_search(page: Page) -> Response:
    q = page.query
    request_id = inputs.text(q, "request_id", 64)
    client = inputs.client_id(q, "client")
    service = inputs.service_id(q, "service")
    outcome = inputs.text(q, "outcome", 40)
    if outcome is not None and not all(c.isascii() and (c.isalpha() or c == "-") for c in outcome):
        raise BadRequest("outcome is malformed", "نتیجه نامعتبر است")
    code = inputs.text(q, "national_code", 10)
    since = inputs.moment(q, "since")
    until = inputs.moment(q, "until")
    before = inputs.number(q, "before", 1, 2**62)
    searched = any(q.get(name) for name in FILTERS) or before is not None
    records: list[dict[str, object]] = []
    with page.engine.connect() as conn:
        ref = None
        if code is not None:
            if not is_national_code(code):
                raise BadRequest("national_code fails the checksum", "کد ملی معتبر نیست")
            ref = subject_ref(conn, code)
        if searched:
            records = search_log(
                conn,
                LogQuery(
                    request_id=request_id,
                    client=client,
                    service=service,
                    outcome=outcome,
                    subject_ref=ref,
                    since=since,
                    until=until,
                    before=before,
                    limit=PAGE_SIZE,
                ),
            )
    kept = {name: q.get(name, "")[:200] for name in FILTERS}
    more = None
    if len(records) >= PAGE_SIZE:  # a page may end with several chains' records at one seq
        more = "?" + urlencode(
            {**{k: v for k, v in kept.items() if v}, "before": records[-1]["seq"]}
        )
    return page.render(
        "log.html",
        records=records,
        searched=searched,
        values=kept,
        outcomes=OUTCOMES,
        more=more,
    )


PAGES = [("/console/log", log_search, False)]

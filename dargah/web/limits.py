"""A bound on request bodies for the web parts (portal, console, dashboard, management API).

A body announced larger than the bound (``Content-Length``) is refused with 413 before it is
read; a chunked body is cut at the bound and the request answered 413 as well, so that no
request makes a process hold more than the bound in memory, whatever the page then does.
The bus's own paths have their per-service limits and are not wrapped.
"""

from __future__ import annotations

from typing import Any

PAGE = (
    '<!doctype html><html lang="fa" dir="rtl"><meta charset="utf-8">'
    "<title>درخواست بیش از اندازه بزرگ است</title>"
    "<h1>درخواست بیش از اندازه بزرگ است</h1><p>آنچه فرستادید بزرگ‌تر از حد مجاز است.</p></html>"
).encode()


async def _refuse(send: Any) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"text/html; charset=utf-8"),
                (b"content-length", str(len(PAGE)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": PAGE})


def limit_body(app: Any, max_bytes: int) -> Any:
    """``app`` with request bodies bounded to ``max_bytes``."""

    async def limited(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    announced = int(value)
                except ValueError:
                    announced = max_bytes + 1
                if announced > max_bytes:
                    await _refuse(send)
                    return
        state = {"received": 0, "cut": False, "answered": False}

        async def bounded_receive() -> Any:
            if state["cut"]:
                return {"type": "http.request", "body": b"", "more_body": False}
            message = await receive()
            if message["type"] == "http.request":
                state["received"] += len(message.get("body", b""))
                if state["received"] > max_bytes:
                    state["cut"] = True
                    return {"type": "http.request", "body": b"", "more_body": False}
            return message

        async def guarded_send(message: Any) -> None:
            if state["cut"]:
                if not state["answered"] and message["type"] == "http.response.start":
                    state["answered"] = True
                    await _refuse(send)
                return  # whatever the page made of a cut body is dropped
            await send(message)

        await app(scope, bounded_receive, guarded_send)

    if hasattr(app, "state"):
        limited.state = app.state  # type: ignore[attr-defined]
    return limited

"""A citizen's browser without a browser: sign-in, forms with CSRF tokens, cookies by hand.

The portal's session cookie is ``Secure``; Python's cookie jar will not send it back over
plain HTTP, so these helpers carry cookies themselves.
"""

from __future__ import annotations

import re
from typing import Any

import httpx

from dargah.client.consumer import GsbClient

_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_of(html: str) -> str:
    found = _CSRF.search(html)
    assert found, "the page has no CSRF token"
    return found.group(1)


class Citizen:
    def __init__(self, base: str, national_code: str, mobile: str) -> None:
        self.base = base.rstrip("/")
        self.national_code = national_code
        self.mobile = mobile
        self.cookies: dict[str, str] = {}
        self.http = httpx.Client(base_url=self.base, timeout=20, follow_redirects=False)

    def _keep(self, r: httpx.Response) -> httpx.Response:
        for header in r.headers.get_list("set-cookie"):
            name, _, rest = header.partition("=")
            value = rest.split(";", 1)[0]
            if "max-age=0" in header.lower() or "expires=thu, 01 jan 1970" in header.lower():
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = value
        return r

    def _headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        h = {"cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())}
        return h | (extra or {})

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return self._keep(self.http.get(path, headers=self._headers(kw.pop("headers", None)), **kw))

    def post(self, path: str, data: dict[str, str], **kw: Any) -> httpx.Response:
        headers = self._headers(kw.pop("headers", None))
        return self._keep(self.http.post(path, data=data, headers=headers, **kw))

    def latest_code(self) -> str:
        box = httpx.get(f"{self.base}/sandbox/outbox.json", timeout=10).json()
        codes = [m["code"] for m in box if m["to"] == self.mobile and m.get("code")]
        assert codes, f"no code was sent to {self.mobile}"
        return str(codes[-1])

    def request_code(self, national_code: str | None = None) -> httpx.Response:
        token = csrf_of(self.get("/login").text)
        return self.post(
            "/login", {"csrf": token, "national_code": national_code or self.national_code}
        )

    def sign_in(self) -> Citizen:
        r = self.request_code()
        assert r.status_code == 200, r.text[:500]
        r = self.post(
            "/login/verify",
            {
                "csrf": csrf_of(r.text),
                "national_code": self.national_code,
                "code": self.latest_code(),
            },
        )
        assert r.status_code == 303 and "dargah_portal" in self.cookies, r.text[:500]
        return self

    def form_token(self, path: str) -> str:
        return csrf_of(self.get(path).text)


def register_birth(doc: dict[str, Any], mother: str, father: str, first_name: str) -> None:
    """Register a boy's birth at civil registration over the bus, as the sandbox's tester client
    (the event that opens the welfare agency's newborn package)."""
    client = doc["clients"][0]
    reg = next(e for e in client["allowed"] if e["service"].endswith("/birth-registration.v1"))
    with GsbClient(doc["bus_url"], client["id"], client_secret=client["client_secret"]) as gsb:
        r = gsb.call(
            reg["service"],
            "/births",
            method="POST",
            purpose=reg["purposes"][0],
            subject=mother,
            json={
                "first_name": first_name,
                "gender": "male",
                "father_national_code": father,
                "mother_national_code": mother,
            },
        )
    assert r.status_code == 201, r.text

"""Sign-in with a national code and a one-time code sent to the citizen's registered mobile.

Authentication: none (these pages sign a citizen in); every form carries a CSRF token.
The mobile comes over the bus from the authentic source of ``person.mobile`` (the call is in
the message log with purpose ``identity-verification``), never from the citizen.

Besides the limits per national code (:mod:`dargah.portal.otp`), one client address gets at
most :data:`~dargah.web.attempts.PORTAL_CODES` codes sent and
:data:`~dargah.web.attempts.PORTAL_FAILURES` failures (a wrong or dead code, a national code
with no mobile) an hour, shared by every process; then 429 with ``Retry-After``.
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from dargah.core.identifiers import is_national_code
from dargah.core.persian import to_latin_digits
from dargah.portal import otp
from dargah.portal.context import PortalContext, page_route, read_form, safe_next
from dargah.portal.gateway import SIGN_IN_PURPOSE, BusUnavailable
from dargah.web import attempts
from dargah.web.sessions import mask_token

MOBILE_ITEM = "person.mobile"


def clean_digits(raw: object, most: int = 20) -> str:
    """Persian, Arabic or Latin digits, spaces and dashes dropped: ``۰۰۱۲-۳۴`` -> ``001234``."""
    text = to_latin_digits(str(raw or ""))[:100]
    return "".join(ch for ch in text if not ch.isspace() and ch not in "-_")[:most]


def routes(ctx: PortalContext) -> list[Route]:
    def show(
        request: Request,
        status: int = 200,
        *,
        step: str = "code-request",
        national_code: str = "",
        error: str = "",
        info: str = "",
    ) -> Response:
        token = ctx.sessions.pre_token(request)
        response = ctx.page(
            request,
            "login.html",
            status,
            step=step,
            national_code=national_code,
            error=error,
            info=info,
            next=safe_next(request.query_params.get("next")),
            citizen=None,
            csrf=mask_token(token),
        )
        ctx.sessions.set_pre_token(response, token)
        return response

    async def login_page(request: Request) -> Response:
        if ctx.sessions.current(request) is not None:
            return RedirectResponse(safe_next(request.query_params.get("next")), status_code=303)
        return show(request)

    def refused(request: Request, busy: attempts.TooManyAttempts, **kw: str) -> Response:
        response = show(request, 429, error=busy.message_fa, **kw)
        response.headers["Retry-After"] = str(busy.retry_after)
        return response

    def count(source: str, *limits: attempts.Limit) -> None:
        with ctx.engine.begin() as conn:
            for limit in limits:
                attempts.record(conn, limit, source)

    def check(source: str, *limits: attempts.Limit) -> None:
        with ctx.engine.connect() as conn:
            for limit in limits:
                attempts.check(conn, limit, source)

    async def request_code(request: Request) -> Response:
        form = await read_form(request)
        if not ctx.sessions.csrf_ok(request, form.get("csrf"), None):
            return show(request, 403, error="نشست فرم منقضی شده است. صفحه را دوباره باز کنید.")
        address = attempts.source_of(request, ctx.settings.trusted_proxies)
        try:
            await run_in_threadpool(check, address, attempts.PORTAL_FAILURES, attempts.PORTAL_CODES)
        except attempts.TooManyAttempts as busy:
            return refused(request, busy)
        code = clean_digits(form.get("national_code"))
        if not (len(code) == 10 and is_national_code(code)):
            return show(
                request,
                400,
                national_code=code,
                error="کد ملی باید ۱۰ رقم و معتبر باشد. آن را دوباره بررسی کنید.",
            )
        source = ctx.sources.source_of(MOBILE_ITEM)
        if not ctx.bus.available or source is None or source.person_path is None:
            return show(
                request, 503, national_code=code, error="ورود فعلاً ممکن نیست. کمی بعد بیایید."
            )
        path = source.person_path.replace("{national_code}", code)
        try:
            answer = await run_in_threadpool(
                ctx.bus.call, source.service_id, path, purpose=SIGN_IN_PURPOSE, subject=code
            )
        except BusUnavailable:
            return show(
                request,
                503,
                national_code=code,
                error="سامانه استعلام تلفن همراه در دسترس نیست. چند دقیقه دیگر دوباره امتحان کنید.",
            )
        mobile = answer.body.get("mobile") if isinstance(answer.body, dict) else None
        if answer.status == 404 or not isinstance(mobile, str):
            await run_in_threadpool(count, address, attempts.PORTAL_FAILURES)
            return show(
                request,
                400,
                national_code=code,
                error="برای این کد ملی تلفن همراهی ثبت نشده است. به دفتر پیشخوان مراجعه کنید.",
            )
        try:
            await run_in_threadpool(otp.issue, ctx.engine, code, mobile, ctx.settings.otp_ttl)
        except otp.SignInRefused as limited:
            return show(request, 429, national_code=code, error=limited.message_fa)
        await run_in_threadpool(count, address, attempts.PORTAL_CODES)
        return show(
            request,
            step="code-entry",
            national_code=code,
            info=f"کد ورود به شماره {otp.mask_mobile(mobile)} فرستاده شد.",
        )

    async def verify_code(request: Request) -> Response:
        form = await read_form(request)
        code = clean_digits(form.get("national_code"))
        if not ctx.sessions.csrf_ok(request, form.get("csrf"), None):
            return show(request, 403, error="نشست فرم منقضی شده است. صفحه را دوباره باز کنید.")
        if not (len(code) == 10 and is_national_code(code)):
            return show(request, 400, error="کد ملی معتبر نیست. از ابتدا وارد شوید.")
        address = attempts.source_of(request, ctx.settings.trusted_proxies)
        try:
            await run_in_threadpool(check, address, attempts.PORTAL_FAILURES)
        except attempts.TooManyAttempts as busy:
            return refused(request, busy, step="code-entry", national_code=code)
        try:
            await run_in_threadpool(otp.verify, ctx.engine, code, clean_digits(form.get("code")))
        except otp.SignInRefused as wrong:
            await run_in_threadpool(count, address, attempts.PORTAL_FAILURES)
            return show(request, 400, step="code-entry", national_code=code, error=wrong.message_fa)
        response = RedirectResponse(safe_next(form.get("next")), status_code=303)
        await run_in_threadpool(ctx.sessions.create, response, code)
        response.delete_cookie(ctx.sessions.pre_cookie, path="/")
        return response

    async def logout(request: Request) -> Response:
        form = await read_form(request)
        session = ctx.sessions.current(request)
        response = RedirectResponse("/", status_code=303)
        if session is not None and ctx.sessions.csrf_ok(request, form.get("csrf"), session):
            ctx.sessions.end(request, response)
        return response

    return [
        page_route("/login", login_page, auth="public"),
        page_route("/login", request_code, auth="public", methods=("POST",)),
        page_route("/login/verify", verify_code, auth="public", methods=("POST",)),
        page_route("/logout", logout, auth="citizen", methods=("POST",)),
    ]

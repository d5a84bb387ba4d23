"""Signing in and out of the console."""

from __future__ import annotations

from starlette.responses import RedirectResponse, Response

from dargah.console.web.accounts import MAX_FAILURES, SignInRefused, sign_in
from dargah.console.web.guard import Page, public, requires
from dargah.console.web.policy import ALL
from dargah.core.persian import to_persian_digits
from dargah.web.attempts import TooManyAttempts, source_of

HOME = "/console/status"


def _safe_next(value: str | None) -> str:
    if value and value.startswith("/console/") and "//" not in value and "\\" not in value:
        return value[:500]
    return HOME


def _login_form(page: Page, status: int = 200, error: str | None = None) -> Response:
    token = page.store.pre_token(page.request)
    response = page.render(
        "login.html",
        status,
        pre_csrf=token,
        error=error,
        next=_safe_next(page.query.get("next") or page.form.get("next")),
        username=page.form.get("username", "")[:64],
    )
    page.store.set_pre_token(response, token)
    return response


@public("the sign-in form itself")
def login_form(page: Page) -> Response:
    if page.user is not None:
        return RedirectResponse(HOME, 303)
    return _login_form(page)


@public("signing in: checks the password, counts failures")
def login(page: Page) -> Response:
    username = page.form.get("username", "")
    password = page.form.get("password", "")
    if not username.strip() or not password:
        return _login_form(page, 400, "نام کاربری و گذرواژه را بنویسید.")
    settings = getattr(page.state, "settings", None)
    source = source_of(page.request, settings.trusted_proxies if settings else "")
    try:
        user = sign_in(page.engine, username, password, source)
    except SignInRefused as refused:
        if refused.from_address:
            message = TooManyAttempts(refused.retry_after).message_fa
        elif refused.locked:
            message = (
                f"پس از {to_persian_digits(MAX_FAILURES)} تلاش ناموفق، ورود با این نام کاربری "
                "تا ۱۵ دقیقه بسته است."
            )
        else:
            return _login_form(page, 401, "نام کاربری یا گذرواژه درست نیست.")
        response = _login_form(page, 429, message)
        response.headers["Retry-After"] = str(refused.retry_after)
        return response
    response = RedirectResponse(_safe_next(page.form.get("next")), 303)
    if page.session is not None:
        page.store.end(page.request, response)
    page.store.create(response, user.username)
    return response


@requires(*ALL)
def logout(page: Page) -> Response:
    response = RedirectResponse("/console/login", 303)
    page.store.end(page.request, response)
    return response


@requires(*ALL)
def home(page: Page) -> Response:
    return RedirectResponse(HOME, 303)


PAGES = [
    ("/console/login", login_form, False),
    ("/console/login", login, True),
    ("/console/logout", logout, True),
    ("/console/", home, False),
    ("/console", home, False),
]

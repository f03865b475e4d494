"""The dashboard: one page for marketers and operators, behind the admin token.

``GET /dashboard`` shows a sign-in form until the browser holds a valid sign-in cookie
(``engine.api.sessions``), then the dashboard itself: plain HTML, CSS and JavaScript
from ``engine/dashboard/`` (no build step, nothing fetched from elsewhere), which reads
the admin API with that cookie. ``POST /dashboard/login`` takes the token from the form,
``POST /dashboard/logout`` ends the sign-in. The language is the reader's choice
(``journey_lang`` cookie, set by the switch on every page), else the browser's
``Accept-Language``: Simplified Chinese or English.
"""

from __future__ import annotations

import html
import time
from pathlib import Path
from urllib.parse import parse_qs

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from engine.api import sessions
from engine.settings import Settings

STATIC = Path(__file__).resolve().parent.parent / "dashboard"
LANG_COOKIE = "journey_lang"
LANGUAGES = ("en", "zh-CN")
MAX_FORM = 4096

HEADERS = {
    # Everything comes from this server; nothing runs inline; no other site may frame it.
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

LOGIN_TEXT = {
    "en": {
        "title": "Journey engine · Sign in",
        "heading": "Sign in to the dashboard",
        "token": "Admin token",
        "hint": "The token printed by `journey run`, or one of JOURNEY_ADMIN_TOKENS.",
        "submit": "Sign in",
        "wrong": "That token is not valid.",
        "none": "No admin token is configured on this server: set JOURNEY_ADMIN_TOKEN.",
    },
    "zh-CN": {
        "title": "旅程引擎 · 登录",
        "heading": "登录控制台",
        "token": "管理令牌",
        "hint": "即 `journey run` 启动时打印的令牌，或 JOURNEY_ADMIN_TOKENS 中的任一令牌。",
        "submit": "登录",
        "wrong": "令牌无效。",
        "none": "服务器未配置管理令牌：请设置 JOURNEY_ADMIN_TOKEN。",
    },
}


def language(request: Request) -> str:
    """The reader's language: their choice, else the best of Accept-Language we speak."""
    chosen = request.cookies.get(LANG_COOKIE)
    if chosen in LANGUAGES:
        return chosen
    best, best_q = "en", -1.0
    for index, part in enumerate(request.headers.get("accept-language", "").split(",")):
        tag, _, params = part.strip().partition(";")
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                continue
        tag = tag.strip().lower()
        speaks = "zh-CN" if tag.startswith("zh") else "en" if tag.startswith("en") else None
        if speaks and q - index * 1e-6 > best_q:
            best, best_q = speaks, q - index * 1e-6
    return best


def _login_page(lang: str, error: str | None = None) -> str:
    text = LOGIN_TEXT[lang]
    other = "zh-CN" if lang == "en" else "en"
    other_label = "中文" if other == "zh-CN" else "English"
    message = f'<p class="error" role="alert">{html.escape(error)}</p>' if error else ""
    return f"""<!doctype html>
<html lang="{lang}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(text["title"])}</title>
<link rel="stylesheet" href="/dashboard/static/app.css">
<link rel="icon" href="data:,">
</head>
<body class="login">
<main class="login-card">
  <div class="brand"><span class="logo" aria-hidden="true"></span> journey engine</div>
  <h1>{html.escape(text["heading"])}</h1>
  {message}
  <form method="post" action="/dashboard/login">
    <label for="token">{html.escape(text["token"])}</label>
    <input type="text" name="username" value="admin" autocomplete="username" hidden>
    <input id="token" name="token" type="password" autocomplete="current-password" required
      autofocus>
    <p class="hint">{html.escape(text["hint"])}</p>
    <input type="hidden" name="lang" value="{lang}">
    <button type="submit">{html.escape(text["submit"])}</button>
  </form>
  <p class="lang-switch"><a href="/dashboard?lang={other}" hreflang="{other}">{other_label}</a></p>
</main>
</body>
</html>
"""


def _page(body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(body, status_code=status, headers=HEADERS)


def router(settings: Settings) -> APIRouter:
    pages = APIRouter(prefix="/dashboard", include_in_schema=False)
    index = (STATIC / "index.html").read_text("utf-8")

    def signed_in(request: Request) -> str | None:
        tokens = settings.named_admin_tokens()
        return sessions.verify(request.cookies.get(sessions.COOKIE), tokens, time.time())

    def remember_language(response: Response, request: Request, lang: str | None) -> None:
        if lang in LANGUAGES:
            response.set_cookie(
                LANG_COOKIE, lang, max_age=365 * 86400, path="/dashboard", samesite="strict"
            )

    @pages.get("")
    def dashboard(request: Request, lang: str | None = None) -> Response:
        chosen = lang if lang in LANGUAGES else language(request)
        name = signed_in(request)
        if name is None:
            response: Response = _page(_login_page(chosen))
        else:
            page = index.replace("{{lang}}", chosen).replace("{{admin}}", html.escape(name))
            response = _page(page)
        remember_language(response, request, lang)
        return response

    @pages.post("/login")
    async def login(request: Request) -> Response:
        body = await request.body()
        form = parse_qs(body[:MAX_FORM].decode("utf-8", "replace")) if len(body) <= MAX_FORM else {}
        token = (form.get("token") or [""])[0].strip()
        lang = (form.get("lang") or [""])[0]
        chosen = lang if lang in LANGUAGES else language(request)
        tokens = settings.named_admin_tokens()
        if not tokens:
            return _page(_login_page(chosen, LOGIN_TEXT[chosen]["none"]), 503)
        name = sessions.token_name(token, tokens)
        if name is None:
            return _page(_login_page(chosen, LOGIN_TEXT[chosen]["wrong"]), 401)
        response = RedirectResponse("/dashboard", status_code=303, headers=HEADERS)
        response.set_cookie(
            sessions.COOKIE,
            sessions.issue(name, tokens[name], time.time()),
            max_age=sessions.LIFETIME,
            path="/",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        remember_language(response, request, lang)
        return response

    @pages.post("/logout")
    def logout() -> Response:
        response = RedirectResponse("/dashboard", status_code=303, headers=HEADERS)
        response.delete_cookie(sessions.COOKIE, path="/", httponly=True, samesite="strict")
        return response

    return pages


def mount(app: FastAPI, settings: Settings) -> None:
    """The dashboard's pages and its static files (which hold no data: no sign-in needed)."""
    app.include_router(router(settings))
    app.mount("/dashboard/static", StaticFiles(directory=STATIC / "static"), name="dashboard")

"""The annotation page's routes (aiohttp): server-rendered Jinja pages, a small script for the
keyboard shortcuts, and the guards every request passes (session token, CSRF, Origin).

Routes:
    GET  /login?token=T                        start a session (the URL printed at start-up)
    GET  /                                     the batches, and who is labelling
    POST /annotator                            set who is labelling (a cookie)
    GET  /batches/{batch}[?after=N]            the annotator's next unlabelled item, or "done"
    GET  /batches/{batch}/items/{n}            item n of the batch
    POST /batches/{batch}/items/{n}/label      label it (then the next item, or its verdicts)
    POST /batches/{batch}/undo                 remove the annotator's last label in the batch
    GET  /static/...                           the stylesheet and the script

Store calls run one at a time on a worker thread, so a lock wait never blocks the event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote, unquote

from aiohttp import web
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from evaluator.core.errors import DatasetError, EvaluatorError, StoreError
from evaluator.humans.annotate import security
from evaluator.humans.annotate.queue import AnnotationQueue, LabelRejected, clean_annotator

HERE = Path(__file__).parent
ANNOTATOR_COOKIE = "evaluator_annotator"
MAX_NOTE_CHARS = 4000
T = TypeVar("T")


@dataclass(frozen=True)
class PageConfig:
    queue: AnnotationQueue
    token: str
    annotator: str | None = None
    """Everyone labels as this name (no switching); None: each browser says who it is."""
    batch: str | None = None
    """Open this batch's queue from the start page."""
    show_verdicts: bool = False
    """After labelling an item, show the judge's verdicts on it (blind labelling otherwise)."""


CONFIG = web.AppKey("config", PageConfig)
EXECUTOR = web.AppKey("executor", ThreadPoolExecutor)
TEMPLATES = web.AppKey("templates", Environment)


def build_app(config: PageConfig) -> web.Application:
    app = web.Application(middlewares=[_errors, _guard])
    app[CONFIG] = config
    app[EXECUTOR] = ThreadPoolExecutor(max_workers=1, thread_name_prefix="annotate-store")
    app[TEMPLATES] = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=True,
                                 undefined=StrictUndefined)
    app.on_response_prepare.append(_security_headers)
    app.on_cleanup.append(_shutdown_executor)
    app.router.add_get("/login", login)
    app.router.add_get("/", index)
    app.router.add_post("/annotator", set_annotator)
    app.router.add_get("/batches/{batch}", next_item)
    app.router.add_get(r"/batches/{batch}/items/{position:\d+}", item)
    app.router.add_post(r"/batches/{batch}/items/{position:\d+}/label", label)
    app.router.add_post("/batches/{batch}/undo", undo)
    app.router.add_static("/static", HERE / "static")
    return app


async def _shutdown_executor(app: web.Application) -> None:
    app[EXECUTOR].shutdown(wait=True)


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    response.headers["Content-Security-Policy"] = (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self';"
        " form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"  # no-referrer makes Chrome send Origin: null
    if not request.path.startswith("/static/"):
        response.headers["Cache-Control"] = "no-store"


async def _store(request: web.Request, call: Callable[..., T], *args: Any) -> T:
    return await asyncio.get_running_loop().run_in_executor(request.app[EXECUTOR], call, *args)


def _page(request: web.Request, template: str, status: int = 200, **context: Any) -> web.Response:
    config = request.app[CONFIG]
    html = request.app[TEMPLATES].get_template(template).render(
        annotator=_annotator(request), fixed_annotator=config.annotator is not None,
        csrf=security.csrf_token(config.token), csrf_field=security.CSRF_FIELD, **context)
    return web.Response(text=html, status=status, content_type="text/html")


def _error(request: web.Request, status: int, message: str) -> web.Response:
    return _page(request, "error.html", status=status, message=message)


def _redirect(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})


def _annotator(request: web.Request) -> str | None:
    fixed = request.app[CONFIG].annotator
    if fixed is not None:
        return fixed
    try:
        return clean_annotator(unquote(request.cookies.get(ANNOTATOR_COOKIE, "")))
    except ValueError:
        return None


@web.middleware
async def _errors(request: web.Request,
                  handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    try:
        return await handler(request)
    except _NoAnnotator:
        back = request.path_qs if request.method == "GET" else f"/batches/{request.match_info['batch']}"
        return _page(request, "index.html", batches=None, next_path=back)
    except LabelRejected as exc:
        return _error(request, 400, f"The label was not saved: {exc}")
    except StoreError as exc:
        return _error(request, 503, f"The store is busy or unavailable, nothing was saved; "
                                    f"try again in a moment. ({exc})")
    except DatasetError as exc:
        return _error(request, 404, str(exc))
    except EvaluatorError as exc:
        return _error(request, 500, str(exc))


@web.middleware
async def _guard(request: web.Request,
                 handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    """Every page but login and static files needs the session; every POST the CSRF token."""
    if request.path == "/login" or request.path.startswith("/static/"):
        return await handler(request)
    config = request.app[CONFIG]
    if not security.same(request.cookies.get(security.SESSION_COOKIE, ""), config.token):
        return _error(request, 403, "This page needs the token `evaluator annotate` printed when it "
                                    "started: open the link it printed.")
    if request.method == "POST":
        try:
            form = await request.post()
        except ValueError as exc:  # UnicodeDecodeError included: not a form a browser sends
            return _error(request, 400, f"The form could not be read ({exc}); nothing was saved.")
        given = form.get(security.CSRF_FIELD)
        if not (isinstance(given, str) and security.same(given, security.csrf_token(config.token))
                and security.origin_allowed(request.headers.get("Origin"), request.scheme,
                                            request.host)):
            return _error(request, 403, "The form came from another page (CSRF check failed): "
                                        "reload the page and try again.")
    return await handler(request)


# -- routes ---------------------------------------------------------------------------------------


async def login(request: web.Request) -> web.Response:
    config = request.app[CONFIG]
    if not security.same(request.query.get("token", ""), config.token):
        return _error(request, 403, "Wrong or missing token: open the link `evaluator annotate` "
                                    "printed when it started.")
    response = _redirect("/")
    response.set_cookie(security.SESSION_COOKIE, config.token, httponly=True, samesite="Strict",
                        path="/")
    return response


async def index(request: web.Request) -> web.Response:
    config = request.app[CONFIG]
    switching = "switch" in request.query
    if config.batch is not None and _annotator(request) is not None and not switching:
        return _redirect(f"/batches/{quote(config.batch)}")
    batches = await _store(request, config.queue.batches)
    return _page(request, "index.html", batches=batches, next_path="/")


async def set_annotator(request: web.Request) -> web.Response:
    form = await request.post()
    next_path = str(form.get("next", "/"))
    if not next_path.startswith("/") or next_path.startswith("//"):
        next_path = "/"
    if request.app[CONFIG].annotator is not None:
        return _error(request, 400, "This page labels as the --annotator it was started with.")
    try:
        name = clean_annotator(str(form.get("annotator", "")))
    except ValueError as exc:
        return _error(request, 400, f"{exc}.")
    response = _redirect(next_path)
    response.set_cookie(ANNOTATOR_COOKIE, quote(name, safe=""), samesite="Strict", path="/",
                        max_age=365 * 24 * 3600)
    return response


class _NoAnnotator(Exception):
    """The browser has not said who is labelling: the page asks first."""


def _labeller(request: web.Request) -> str:
    annotator = _annotator(request)
    if annotator is None:
        raise _NoAnnotator
    return annotator


async def next_item(request: web.Request) -> web.Response:
    annotator = _labeller(request)
    queue = request.app[CONFIG].queue
    batch, progress = await _store(request, queue.progress, request.match_info["batch"], annotator)
    after = request.query.get("after", "0")
    position = progress.next_position(int(after) if after.isdigit() else 0)
    if position is None:
        return _page(request, "done.html", batch=batch, progress=progress)
    return _redirect(f"/batches/{quote(batch.batch_id)}/items/{position}")


async def item(request: web.Request) -> web.Response:
    annotator = _labeller(request)
    config = request.app[CONFIG]
    view = await _store(request, config.queue.item, request.match_info["batch"],
                        int(request.match_info["position"]), annotator, config.show_verdicts)
    return _page(request, "item.html", view=view, show_verdicts=config.show_verdicts)


async def label(request: web.Request) -> web.Response:
    annotator = _labeller(request)
    config = request.app[CONFIG]
    form = await request.post()
    chosen, note = str(form.get("label", "")), str(form.get("note", "")).strip() or None
    if note is not None and len(note) > MAX_NOTE_CHARS:
        return _error(request, 400, f"A note is at most {MAX_NOTE_CHARS} characters; "
                                    "nothing was saved.")
    position = int(request.match_info["position"])
    batch = await _store(request, config.queue.label, request.match_info["batch"], position,
                         annotator, chosen, note)
    batch_path = f"/batches/{quote(batch.batch_id)}"
    if config.show_verdicts:
        return _redirect(f"{batch_path}/items/{position}")
    return _redirect(f"{batch_path}?after={position}")


async def undo(request: web.Request) -> web.Response:
    annotator = _labeller(request)
    batch, position = await _store(request, request.app[CONFIG].queue.undo,
                                   request.match_info["batch"], annotator)
    batch_path = f"/batches/{quote(batch.batch_id)}"
    return _redirect(batch_path if position is None else f"{batch_path}/items/{position}")

"""The HTTP JSON APIs a drill reads (Prometheus, Alertmanager): one session, one error mapping.

Every response on the session is classified by its status code in one place, a response hook,
so a call made by `prometheus_api_client` on our session is classified exactly like our own
GETs — before that library looks at the status, so its text-only exception never arises. Every
`requests` exception is classified in one other place. Connection errors, 429, 5xx and
unreadable bodies are transient (retried under the boundary's policy); other 4xx, a malformed
URL and a certificate we cannot verify are our input (permanent, never retried), and so is a
server that answers with an HTML page (a login page, a web UI): that is not the API, whatever
its status says. Errors are one line: the OS's reason (connection refused) or "timed out",
never the library's retry dump with the whole query in it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

import requests

from drillkit.errors import PermanentError, RejectedRequest, TransientError
from drillkit.retry import retrying
from drillkit.signals import StopFlag

T = TypeVar("T")

# A malformed URL, header or a certificate our CA setting does not verify is our input.
_OUR_INPUT = (
    requests.exceptions.MissingSchema,
    requests.exceptions.InvalidSchema,
    requests.exceptions.InvalidURL,
    requests.exceptions.InvalidHeader,
    requests.exceptions.SSLError,
)
# A body that is not the JSON the API documents (requests' JSONDecodeError is a ValueError).
_BAD_BODY = (ValueError, KeyError, TypeError)


class HttpApi:
    """One API at `url`: `session` carries auth and the status hook; `call` runs one request
    (and its parsing) under the boundary's retry policy, `once` without retrying."""

    def __init__(
        self,
        service: str,
        url: str,
        *,
        timeout: float,
        stop: StopFlag | None,
        attempts: int,
        max_delay: float,
        hint: str,
    ) -> None:
        """`timeout` (s) per request; `attempts` within `max_delay` (s) per call; `hint` says
        which option to check when the API cannot be used at all."""
        self.service, self.url, self.timeout, self.stop = service, url.rstrip("/"), timeout, stop
        self.attempts, self.max_delay, self.hint = attempts, max_delay, hint
        self.session = requests.Session()
        self.session.hooks["response"].append(self._check_status)

    def close(self) -> None:
        self.session.close()

    def get(self, path: str, params: dict[str, Any] | None = None, timeout: float | None = None) -> Any:
        """One GET of `path` (within `timeout` s, default the API's); its JSON body. Errors
        unclassified: run it through `call`/`once`."""
        return self.session.get(f"{self.url}{path}", params=params, timeout=timeout or self.timeout).json()

    def timeout_within(self, deadline: float) -> float:
        """A request's timeout (s) inside a wait that ends at the monotonic `deadline`: the
        API's, cut to the time left, at least half a second (one try even at the deadline)."""
        return max(0.5, min(self.timeout, deadline - time.monotonic()))

    def call(self, what: str, fn: Callable[[], T]) -> T:
        """`fn` (one request and its parsing), retried while the failure is transient."""
        policy = retrying(f"{self.service} {what}", self.stop, attempts=self.attempts, max_delay=self.max_delay)
        result: T = policy(self.once, what, fn)
        return result

    def once(self, what: str, fn: Callable[[], T]) -> T:
        """`fn` with its `requests` exceptions and unreadable bodies turned into drillkit's."""
        try:
            return fn()
        except _OUR_INPUT as exc:
            raise PermanentError(f"{self.service} at {self.url!r} cannot be used ({self.hint}): {exc}") from None
        except requests.RequestException as exc:
            if isinstance(exc, requests.exceptions.JSONDecodeError):
                raise TransientError(f"{self.service} {what}: bad response: {exc}") from None
            root = _root(exc)
            if isinstance(root, TimeoutError):
                raise TransientError(f"{self.service} at {self.url}: {what}: timed out, no answer") from None
            why = root.strerror if isinstance(root, OSError) and root.strerror else " ".join(str(exc).split())
            raise TransientError(f"{self.service} at {self.url} unreachable: {what}: {why}") from None
        except _BAD_BODY as exc:
            raise TransientError(f"{self.service} {what}: bad response: {exc!r}") from None

    def _check_status(self, r: requests.Response, *args: Any, **kwargs: Any) -> None:
        """The session's response hook: anything but 200 (or a redirect, which requests then
        follows) raises. Reading the body here hands the connection back to the pool."""
        if r.status_code == 200 and _a_page(r):
            media = r.headers["Content-Type"].split(";")[0].strip()
            raise PermanentError(
                f"{self.service} at {self.url} is not the {self.service} API ({self.hint}): "
                f"{r.request.method} {urlsplit(r.url).path} answered HTTP 200 with {media}{_detail(r)}"
            )
        if r.status_code == 200 or r.is_redirect:
            return
        code = r.status_code
        what = f"{self.service} {r.request.method} {urlsplit(r.url).path}: HTTP {code}"
        detail = _detail(r)
        if code >= 500 or code == 429:
            raise TransientError(f"{what}{detail}")
        if code in (401, 403):
            raise PermanentError(f"{what}: check the token or credentials")
        if code in (400, 422):
            raise RejectedRequest(f"{what}{detail}", detail.removeprefix(": "))
        raise PermanentError(f"{what}{detail}")


def _a_page(r: requests.Response) -> bool:
    """An HTML page (a login page, a web UI, a proxy's error page) is never an API's answer."""
    return "html" in r.headers.get("Content-Type", "").lower()


def _root(exc: BaseException) -> BaseException:
    """The root cause of a `requests` error, down the chain requests -> urllib3 -> socket: the
    OS's error (connection refused, name not known) or a socket timeout, in a few words."""
    for _ in range(8):
        reason = getattr(exc, "reason", None)  # urllib3's MaxRetryError keeps the cause here
        below = reason if isinstance(reason, BaseException) else exc.__cause__ or exc.__context__
        if below is None:
            break
        exc = below
    return exc


def _detail(r: requests.Response) -> str:
    """The API's own error message (Prometheus: `error`, Alertmanager: a JSON string or
    `message`), else the start of the body."""
    text = r.text
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error") or body.get("message"), str):
        kind = body.get("errorType")
        message = str(body.get("error") or body.get("message"))
        return f": {kind}: {message}" if isinstance(kind, str) else f": {message}"
    if isinstance(body, str):
        return f": {body}"
    text = " ".join(text.split())[:200]  # one line
    return f": {text}" if text else ""

"""Who may see the technicians' page: a bearer token, HTTP Basic, or a login cookie.

Every secret comparison is constant-time (``hmac.compare_digest``). The login cookie holds no
secret: it is an expiry time, a random nonce, who logged in and an HMAC of the three under a key
made fresh at each start, so a restart logs everyone out and a stolen cookie dies with its shift.
``user_of`` says who a request is (recorded with feedback): the ``web.username`` of a password
login, ``token`` for the access token.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import threading
import time
from collections import OrderedDict, deque

from inspector.config.web import Credentials

COOKIE_NAME = "inspector_session"
TOKEN_USER = "token"  # who a request is when it came in with the access token


def same_secret(given: str | None, expected: str | None) -> bool:
    """True when both are set and equal, compared in constant time."""
    if given is None or expected is None:
        return False
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


class Authenticator:
    """Checks the credentials a request carries against the configured ones.

    Example:
        >>> auth = Authenticator(Credentials(token="s3cret", username=None, password=None))
        >>> auth.check_header("Bearer s3cret"), auth.check_header("Bearer guess")
        (True, False)
        >>> auth.check_cookie(auth.new_session())
        True
    """

    def __init__(self, credentials: Credentials, session_hours: float = 12.0) -> None:
        self._creds = credentials
        self._key = secrets.token_bytes(32)
        self.session_s = int(session_hours * 3600)
        self._revoked: dict[str, int] = {}  # payload of a logged-out cookie -> its expiry
        self._revoked_lock = threading.Lock()

    def check_header(self, authorization: str | None) -> bool:
        """An ``Authorization`` header: ``Bearer TOKEN``, or ``Basic base64(user:password)`` with
        ``web.username`` and its password (not the token under any name)."""
        if not authorization:
            return False
        scheme, _, value = authorization.partition(" ")
        scheme, value = scheme.lower(), value.strip()
        if scheme == "bearer":
            return same_secret(value, self._creds.token)
        if scheme == "basic":
            try:
                decoded = base64.b64decode(value, validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                return False
            username, sep, password = decoded.partition(":")  # web.username and its password
            return (
                bool(sep)
                and same_secret(username, self._creds.username)
                and same_secret(password, self._creds.password)
            )
        return False

    def login_user(self, username: str, secret: str) -> str | None:
        """Who logs in with these form fields (``token`` or the user name), None if nobody."""
        if same_secret(secret, self._creds.token):
            return TOKEN_USER
        if same_secret(username, self._creds.username) and same_secret(
            secret, self._creds.password
        ):
            return username
        return None

    def user_of(self, authorization: str | None, cookie: str | None) -> str | None:
        """Who a request is, by its ``Authorization`` header or else its login cookie."""
        if authorization:
            if not self.check_header(authorization):
                return None
            scheme, _, value = authorization.partition(" ")
            if scheme.lower() == "bearer":
                return TOKEN_USER
            return base64.b64decode(value.strip()).decode("utf-8").partition(":")[0]
        if not self.check_cookie(cookie):
            return None
        parts = cookie.rpartition(".")[0].split(".")
        try:
            return bytes.fromhex(parts[2]).decode("utf-8") if len(parts) > 2 else TOKEN_USER
        except ValueError:
            return None

    def _mac(self, payload: str) -> str:
        return hmac.new(self._key, payload.encode("ascii"), hashlib.sha256).hexdigest()

    def new_session(self, user: str = TOKEN_USER) -> str:
        """A cookie value good for ``session_hours``, naming ``user``."""
        who = user.encode("utf-8").hex()
        payload = f"{int(time.time()) + self.session_s}.{secrets.token_hex(8)}.{who}"
        return f"{payload}.{self._mac(payload)}"

    def check_cookie(self, value: str | None) -> bool:
        """True for an unexpired cookie made by this process."""
        if not value or not value.isascii():
            return False
        payload, _, mac = value.rpartition(".")
        expires, _, _ = payload.partition(".")
        # a forged expiry of thousands of digits would make int() raise
        if not expires.isdigit() or len(expires) > 12 or int(expires) < time.time():
            return False
        if not hmac.compare_digest(mac.encode("ascii"), self._mac(payload).encode("ascii")):
            return False
        with self._revoked_lock:
            return payload not in self._revoked

    def revoke(self, value: str | None) -> None:
        """Log a cookie out: it is refused from now on, even though it has not expired."""
        if not self.check_cookie(value):
            return
        payload = value.rpartition(".")[0]
        now = time.time()
        with self._revoked_lock:
            for old, expires in list(self._revoked.items()):  # forget what expired anyway
                if expires < now:
                    del self._revoked[old]
            self._revoked[payload] = int(payload.partition(".")[0])


class Throttle:
    """Wrong logins per client address: after ``limit`` within ``window_s`` that client gets
    429 until the oldest ages out; others are not affected.

    Example:
        >>> t = Throttle(limit=2)
        >>> t.failed("10.0.0.5"); t.failed("10.0.0.5")
        >>> t.blocked("10.0.0.5"), t.blocked("10.0.0.6")
        (True, False)
    """

    def __init__(self, limit: int = 10, window_s: float = 60.0, max_clients: int = 10_000) -> None:
        self.limit, self.window_s, self.max_clients = limit, window_s, max_clients
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def blocked(self, client: str) -> bool:
        """True while ``client`` has ``limit`` failures within the last ``window_s``."""
        now = time.monotonic()
        with self._lock:
            times = self._failures.get(client)
            while times and now - times[0] >= self.window_s:
                times.popleft()
            if times is not None and not times:
                del self._failures[client]
                return False
            return times is not None and len(times) >= self.limit

    def failed(self, client: str) -> None:
        """Count one wrong login (form or ``Authorization`` header) of ``client``."""
        with self._lock:
            times = self._failures.setdefault(client, deque(maxlen=self.limit))
            times.append(time.monotonic())
            self._failures.move_to_end(client)
            while len(self._failures) > self.max_clients:  # a flood of addresses: oldest go
                self._failures.popitem(last=False)

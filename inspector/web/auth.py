"""Who may see the technicians' page: a bearer token, HTTP Basic, or a login cookie.

Every secret comparison is constant-time (``hmac.compare_digest``). The login cookie holds no
secret: it is an expiry time, a random nonce and an HMAC of both under a key made fresh at each
start, so a restart logs everyone out and a stolen cookie dies with its shift.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time

from inspector.web.config import Credentials

COOKIE_NAME = "inspector_session"


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

    def check_login(self, username: str, secret: str) -> bool:
        """A login form's fields: the token alone, or the username with its password."""
        token_ok = same_secret(secret, self._creds.token)
        user_ok = same_secret(username, self._creds.username)
        password_ok = same_secret(secret, self._creds.password)
        return token_ok or (user_ok and password_ok)

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

    def _mac(self, payload: str) -> str:
        return hmac.new(self._key, payload.encode("ascii"), hashlib.sha256).hexdigest()

    def new_session(self) -> str:
        """A cookie value good for ``session_hours``."""
        payload = f"{int(time.time()) + self.session_s}.{secrets.token_hex(8)}"
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
        return hmac.compare_digest(mac.encode("ascii"), self._mac(payload).encode("ascii"))

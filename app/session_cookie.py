"""Dashboard sessions and CSRF tokens, without server-side state: the dashboard issues the
cookie and checks its forms' tokens (app.ui); the API accepts the cookie for reads (app.api.deps),
so that neither package imports the other.

Session cookie: ``<payload>.<signature>``, both base64url. The payload is JSON holding the
owner, a fingerprint of the key used to sign in (an HMAC of it, never the key), the expiry and a
random nonce; the signature is an HMAC-SHA256 with a key derived from every configured API key.
So every API process with the same keys accepts the same cookies (no session table), changing
the keys ends every session, and a cookie whose key was removed is refused even before it
expires (the key's entry also gives the caller's current admin flag).

CSRF: a form's token is an HMAC of the session's nonce when signed in, else the value of a
random ``aam_csrf`` cookie (double submit: the sign-in form, and an open loopback server, which
has no sessions). Both cookies are SameSite=Strict and HttpOnly; the token travels in the page.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass

from app.settings import ApiKey, Settings

SESSION_COOKIE = "aam_session"
CSRF_COOKIE = "aam_csrf"
CSRF_FIELD = "csrf_token"
SESSION_SECONDS = 12 * 3600
_LABEL = b"aam-ui-session-v1"


@dataclass(frozen=True)
class Session:
    owner: str
    admin: bool
    nonce: str
    expires: int


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def signing_key(settings: Settings) -> bytes:
    """HMAC key of cookies and tokens: a digest of every configured key (owner, key, admin)."""
    material = sorted(
        f"{k.owner}\x00{k.key.get_secret_value()}\x00{int(k.admin)}" for k in settings.api_keys
    )
    return hmac.new(_LABEL, "\x01".join(material).encode(), hashlib.sha256).digest()


def _mac(key: bytes, purpose: str, data: bytes) -> bytes:
    return hmac.new(key, purpose.encode() + b"\x00" + data, hashlib.sha256).digest()


def fingerprint(key: bytes, entry: ApiKey) -> str:
    return _b64(_mac(key, "key", entry.key.get_secret_value().encode())[:16])


def match_key(settings: Settings, presented: str) -> ApiKey | None:
    """The entry of ``presented``; every key is compared, in constant time."""
    found = None
    for entry in settings.api_keys:
        if hmac.compare_digest(entry.key.get_secret_value().encode(), presented.encode()):
            found = entry
    return found


def issue(settings: Settings, entry: ApiKey, *, now: float | None = None) -> str:
    """A session cookie's value for the owner of ``entry``."""
    key = signing_key(settings)
    payload = {
        "o": entry.owner,
        "k": fingerprint(key, entry),
        "e": int((time.time() if now is None else now) + SESSION_SECONDS),
        "n": secrets.token_urlsafe(16),
    }
    body = _b64(json.dumps(payload, separators=(",", ":")).encode())
    return f"{body}.{_b64(_mac(key, 'session', body.encode()))}"


def verify(settings: Settings, value: str | None, *, now: float | None = None) -> Session | None:
    """The session a cookie value stands for; None when it is missing, forged, expired, or
    signed in with a key that is no longer configured."""
    if not value or settings.open_mode or value.count(".") != 1:
        return None
    key = signing_key(settings)
    body, signature = value.split(".")
    try:
        expected = _mac(key, "session", body.encode())
        if not hmac.compare_digest(expected, _unb64(signature)):
            return None
        payload = json.loads(_unb64(body))
        owner, printed, expires, nonce = payload["o"], payload["k"], payload["e"], payload["n"]
    except (binascii.Error, ValueError, KeyError, TypeError):
        return None
    if not isinstance(expires, int) or expires < (time.time() if now is None else now):
        return None
    for entry in settings.api_keys:
        if entry.owner == owner and hmac.compare_digest(fingerprint(key, entry), str(printed)):
            return Session(owner=owner, admin=entry.admin, nonce=str(nonce), expires=expires)
    return None


def session_of(settings: Settings, cookies: Mapping[str, str]) -> Session | None:
    return verify(settings, cookies.get(SESSION_COOKIE))


def csrf_token(settings: Settings, session: Session | None, cookies: Mapping[str, str]) -> str:
    """The token forms must carry: derived from the session, else the ``aam_csrf`` cookie
    (empty when the browser has none yet: the page that renders the form sets it)."""
    if session is not None:
        return _b64(_mac(signing_key(settings), "csrf", session.nonce.encode()))
    return cookies.get(CSRF_COOKIE, "")


def csrf_ok(
    settings: Settings, session: Session | None, cookies: Mapping[str, str], sent: str | None
) -> bool:
    expected = csrf_token(settings, session, cookies)
    return bool(expected) and bool(sent) and hmac.compare_digest(expected, sent or "")


def new_csrf_cookie() -> str:
    return secrets.token_urlsafe(24)

"""The dashboard's session cookie and CSRF tokens (app/session_cookie.py), without HTTP."""

from __future__ import annotations

import base64
import json

from app import session_cookie as s
from app.settings import ApiKey, Settings

ALICE_KEY = "alice-key-0123456789abcdef"
BOB_KEY = "bob-key-0123456789abcdef00"


def keyed(*entries: tuple[str, str, bool]) -> Settings:
    keys = [ApiKey(owner=o, key=k, admin=a) for o, k, a in entries]  # type: ignore[arg-type]
    return Settings(api_keys=keys)


SETTINGS = keyed(("alice", ALICE_KEY, False), ("bob", BOB_KEY, True))
NOW = 1_700_000_000.0


def alice_cookie(settings: Settings = SETTINGS) -> str:
    entry = s.match_key(settings, ALICE_KEY)
    assert entry is not None
    return s.issue(settings, entry, now=NOW)


def test_a_cookie_names_its_owner_and_holds_no_key() -> None:
    cookie = alice_cookie()
    payload = json.loads(base64.urlsafe_b64decode(cookie.split(".")[0] + "=="))
    assert payload["o"] == "alice" and payload["e"] == NOW + s.SESSION_SECONDS
    assert ALICE_KEY not in cookie and ALICE_KEY not in json.dumps(payload)
    session = s.verify(SETTINGS, cookie, now=NOW + 1)
    assert session is not None and (session.owner, session.admin) == ("alice", False)


def test_the_admin_flag_comes_from_the_key_entry() -> None:
    entry = s.match_key(SETTINGS, BOB_KEY)
    assert entry is not None
    session = s.verify(SETTINGS, s.issue(SETTINGS, entry, now=NOW), now=NOW)
    assert session is not None and (session.owner, session.admin) == ("bob", True)


def test_forged_expired_and_revoked_cookies_are_refused() -> None:
    cookie = alice_cookie()
    body, signature = cookie.split(".")
    payload = json.loads(base64.urlsafe_b64decode(body + "=="))
    forged = base64.urlsafe_b64encode(json.dumps({**payload, "o": "bob"}).encode()).decode()
    assert s.verify(SETTINGS, f"{forged.rstrip('=')}.{signature}", now=NOW) is None
    assert s.verify(SETTINGS, f"{body}.{signature[:-2]}AA", now=NOW) is None
    assert s.verify(SETTINGS, "garbage", now=NOW) is None
    assert s.verify(SETTINGS, "a.b.c", now=NOW) is None
    assert s.verify(SETTINGS, cookie, now=NOW + s.SESSION_SECONDS + 1) is None
    # alice's key removed (bob's kept): her cookie no longer opens anything
    assert s.verify(keyed(("bob", BOB_KEY, True)), cookie, now=NOW) is None
    # alice's key replaced by another: the signing key changed with it
    other = keyed(("alice", "alice-new-key-0123456789", False), ("bob", BOB_KEY, True))
    assert s.verify(other, cookie, now=NOW) is None
    # an open server has no sessions
    assert s.verify(Settings(), cookie, now=NOW) is None


def test_match_key_finds_the_entry_or_none() -> None:
    entry = s.match_key(SETTINGS, BOB_KEY)
    assert entry is not None and entry.owner == "bob"
    assert s.match_key(SETTINGS, BOB_KEY[:-1]) is None
    assert s.match_key(SETTINGS, "") is None


def test_csrf_token_is_derived_from_the_session() -> None:
    one = s.verify(SETTINGS, alice_cookie(), now=NOW)
    two = s.verify(SETTINGS, alice_cookie(), now=NOW)
    assert one is not None and two is not None and one.nonce != two.nonce
    token = s.csrf_token(SETTINGS, one, {})
    assert token and token != s.csrf_token(SETTINGS, two, {})
    assert s.csrf_ok(SETTINGS, one, {}, token)
    assert not s.csrf_ok(SETTINGS, two, {}, token)  # another session's token
    assert not s.csrf_ok(SETTINGS, one, {}, None)
    assert not s.csrf_ok(SETTINGS, one, {}, token[:-1])


def test_without_a_session_the_token_is_the_double_submit_cookie() -> None:
    open_settings = Settings()
    value = s.new_csrf_cookie()
    cookies = {s.CSRF_COOKIE: value}
    assert s.csrf_token(open_settings, None, cookies) == value
    assert s.csrf_ok(open_settings, None, cookies, value)
    assert not s.csrf_ok(open_settings, None, cookies, value + "x")
    assert not s.csrf_ok(open_settings, None, {}, "")  # no cookie: nothing matches
    assert not s.csrf_ok(open_settings, None, {}, value)

"""What the tests read from a Dockerfile's final stage: the build's global ARGs, ENV, USER and
the exec-form CMD and HEALTHCHECK. hadolint (tests/deploy/test_dockerfiles.py) checks the rest."""

from __future__ import annotations

import json
import re
import shlex


def instructions(text: str) -> list[tuple[str, str]]:
    """``(KEYWORD, rest)`` per instruction, ``\\`` continuations joined; comments (also those
    inside a continuation, as Docker allows) and blank lines dropped."""
    result: list[tuple[str, str]] = []
    parts: list[str] = []
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("#") or not line:
            continue
        parts.append(line.removesuffix("\\").strip())
        if not line.endswith("\\"):
            keyword, _, rest = " ".join(parts).partition(" ")
            result.append((keyword.upper(), rest.strip()))
            parts = []
    return result


def global_args(text: str) -> dict[str, str]:
    """``ARG name=default`` lines before the first FROM (the only ones FROM can use)."""
    args: dict[str, str] = {}
    for keyword, rest in instructions(text):
        if keyword == "FROM":
            break
        if keyword == "ARG":
            name, _, default = rest.partition("=")
            args[name] = default
    return args


def final_stage(text: str, keyword: str) -> list[str]:
    """The arguments of each ``keyword`` instruction of the last build stage, in order."""
    stage: list[tuple[str, str]] = []
    for key, rest in instructions(text):
        if key == "FROM":
            stage = []
        stage.append((key, rest))
    return [rest for key, rest in stage if key == keyword]


def _exec_form(value: str) -> list[str] | None:
    try:
        loaded = json.loads(value)
    except json.JSONDecodeError:
        return None
    return loaded if isinstance(loaded, list) else None


def final_cmd(text: str) -> list[str] | None:
    """The final stage's CMD as an argument list; None when absent or in shell form."""
    cmds = final_stage(text, "CMD")
    return _exec_form(cmds[-1]) if cmds else None


def healthcheck_argv(text: str) -> list[str] | None:
    """The command of the final stage's ``HEALTHCHECK [options] CMD [...]``, as Docker runs it
    (exec form); None when absent, ``NONE`` or in shell form."""
    checks = final_stage(text, "HEALTHCHECK")
    match = re.search(r"(?:^|\s)CMD\s+(.*)$", checks[-1]) if checks else None
    return _exec_form(match[1]) if match else None


def final_env(text: str) -> dict[str, str]:
    """``ENV`` values of the final stage (``KEY=value`` form), later lines winning."""
    env: dict[str, str] = {}
    for rest in final_stage(text, "ENV"):
        for item in shlex.split(rest):
            key, _, value = item.partition("=")
            env[key] = re.sub(r"\$\{?(\w+)\}?", lambda m: env.get(m[1], m[0]), value)
    return env

"""A small Dockerfile reader and the review rules the images are held to (the hadolint rules
that matter here, written out because no hadolint binary is available on these machines).

``lint(text)`` returns one message per violation, ``"line N: ..."``; an empty list is a pass.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass

ROOT_USERS = {"root", "0", "0:0", "root:root"}


@dataclass(frozen=True)
class Instruction:
    line: int  # where the instruction starts (1-based)
    keyword: str  # upper case: FROM, RUN, ...
    value: str  # the rest, continuation lines joined with a space


def parse(text: str) -> list[Instruction]:
    """Instructions with ``\\`` continuations joined; comment lines (also those inside a
    continuation, as Docker allows) and blank lines dropped."""
    instructions: list[Instruction] = []
    parts: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not parts):
            continue
        if not parts:
            start = number
        continued = stripped.endswith("\\")
        parts.append(stripped[:-1].strip() if continued else stripped)
        if not continued:
            keyword, _, value = " ".join(p for p in parts if p).partition(" ")
            instructions.append(Instruction(start, keyword.upper(), value.strip()))
            parts = []
    if parts:
        keyword, _, value = " ".join(parts).partition(" ")
        instructions.append(Instruction(start, keyword.upper(), value.strip()))
    return instructions


def global_args(instructions: list[Instruction]) -> dict[str, str]:
    """``ARG name=default`` lines before the first FROM (the only ones FROM can use)."""
    values: dict[str, str] = {}
    for ins in instructions:
        if ins.keyword == "FROM":
            break
        if ins.keyword == "ARG":
            name, _, default = ins.value.partition("=")
            values[name.strip()] = default.strip()
    return values


def resolve(value: str, args: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args.get(m[1] or m[2], m[0]), value)


def stages(instructions: list[Instruction]) -> list[list[Instruction]]:
    """Instructions per build stage; each list starts with its FROM."""
    result: list[list[Instruction]] = []
    for ins in instructions:
        if ins.keyword == "FROM":
            result.append([])
        if result:
            result[-1].append(ins)
    return result


def exec_form(value: str) -> list[str] | None:
    """The JSON array of an exec-form CMD/ENTRYPOINT, or None for shell form."""
    try:
        loaded = json.loads(value)
    except json.JSONDecodeError:
        return None
    if isinstance(loaded, list) and all(isinstance(item, str) for item in loaded):
        return loaded
    return None


def final_cmd(text: str) -> list[str] | None:
    cmds = [i for i in stages(parse(text))[-1] if i.keyword == "CMD"]
    return exec_form(cmds[-1].value) if cmds else None


def healthcheck_command(text: str) -> str | None:
    """The shell command of the final stage's ``HEALTHCHECK [options] CMD <command>``."""
    checks = [i for i in stages(parse(text))[-1] if i.keyword == "HEALTHCHECK"]
    if not checks:
        return None
    match = re.search(r"(?:^|\s)CMD\s+(.*)$", checks[-1].value)
    return match[1] if match else None


def final_env(text: str) -> dict[str, str]:
    """``ENV`` values of the final stage (``KEY=value`` form), later lines winning."""
    env: dict[str, str] = {}
    for ins in stages(parse(text))[-1]:
        if ins.keyword == "ENV":
            for item in shlex.split(ins.value):
                key, sep, value = item.partition("=")
                if sep:
                    env[key] = resolve(value, env)
    return env


def _image_rule(ins: Instruction, args: dict[str, str], stage_names: set[str]) -> list[str]:
    words = ins.value.split()
    image = resolve(words[0], args) if words else ""
    if image in stage_names:
        return []
    if "$" in image:
        return [f"line {ins.line}: FROM {words[0]}: the image has no default (ARG before FROM)"]
    name, _, digest = image.partition("@")
    tag = name.rpartition(":")[2] if ":" in name.rpartition("/")[2] else ""
    if digest:
        return []
    if not tag:
        return [f"line {ins.line}: FROM {image}: pin the image with a version tag or a digest"]
    if tag == "latest" or not re.search(r"\d", tag):
        return [f"line {ins.line}: FROM {image}: the tag {tag!r} is not a pinned version"]
    return []


def _run_rules(ins: Instruction) -> list[str]:
    problems = []
    commands = re.split(r"&&|\|\||;|\|", ins.value)
    for command in commands:
        words = command.split()
        if "pip" in words and "install" in words and "--no-cache-dir" not in words:
            problems.append(f"line {ins.line}: pip install without --no-cache-dir")
        if "apt-get" in words and "install" in words and "--no-install-recommends" not in words:
            problems.append(f"line {ins.line}: apt-get install without --no-install-recommends")
        if words[:1] == ["cd"]:
            problems.append(f"line {ins.line}: cd in RUN; use WORKDIR")
        if "sudo" in words:
            problems.append(f"line {ins.line}: sudo in RUN")
    if "apt-get install" in ins.value and "rm -rf /var/lib/apt/lists" not in ins.value:
        problems.append(f"line {ins.line}: apt-get install without removing /var/lib/apt/lists")
    return problems


def lint(text: str) -> list[str]:
    instructions = parse(text)
    problems: list[str] = []
    args = global_args(instructions)
    all_stages = stages(instructions)
    if not all_stages:
        return ["no FROM instruction"]
    stage_names: set[str] = set()
    for stage in all_stages:
        problems += _image_rule(stage[0], args, stage_names)
        words = stage[0].value.split()
        if len(words) == 3 and words[1].upper() == "AS":
            stage_names.add(words[2])
        for ins in stage:
            if ins.keyword == "ADD":
                problems.append(f"line {ins.line}: ADD; use COPY")
            elif ins.keyword == "RUN":
                problems += _run_rules(ins)
            elif ins.keyword == "COPY":
                source = re.search(r"--from=(\S+)", ins.value)
                if source and source[1] not in stage_names:
                    problems.append(f"line {ins.line}: COPY --from={source[1]}: no such stage")
            elif ins.keyword == "MAINTAINER":
                problems.append(f"line {ins.line}: MAINTAINER is deprecated; use a LABEL")
    final = all_stages[-1]
    cmds = [i for i in final if i.keyword == "CMD"]
    if not cmds:
        problems.append("the final stage has no CMD")
    elif exec_form(cmds[-1].value) is None:
        problems.append(f"line {cmds[-1].line}: CMD in shell form; use the exec form [...]")
    if any(i.keyword == "ENTRYPOINT" and exec_form(i.value) is None for i in final):
        problems.append("ENTRYPOINT in shell form; use the exec form [...]")
    users = [i for i in final if i.keyword == "USER"]
    if not users:
        problems.append("the final stage has no USER: it would run as root")
    elif users[-1].value.strip() in ROOT_USERS:
        problems.append(f"line {users[-1].line}: the last USER is root")
    elif cmds and users[-1].line > cmds[-1].line:
        problems.append(f"line {users[-1].line}: USER comes after CMD")
    checks = [i for i in final if i.keyword == "HEALTHCHECK"]
    if not checks:
        problems.append("the final stage has no HEALTHCHECK")
    elif checks[-1].value.strip().upper() == "NONE":
        problems.append(f"line {checks[-1].line}: HEALTHCHECK NONE")
    elif healthcheck_command(text) is None:
        problems.append(f"line {checks[-1].line}: HEALTHCHECK without CMD")
    return problems

"""Helpers for tests/test_deploy.py: read the shipped deployment files the way their tools do.

- ``Dockerfile``: the instructions of Dockerfile.worker, and ``build_image_root``, which performs
  the Dockerfile's build steps on this machine (no Docker engine here): COPY from the build
  context honouring .dockerignore, and RUN of its ``uv`` steps, under the image's ENV.
- ``settings_names``: the environment variables the framework really reads, recorded while it
  reads them, and the HATCHET_CLIENT_* names hatchet-sdk's own config models accept.
- ``mentioned_variables``: every SCYTHE_* / HATCHET_CLIENT_* name a file mentions, and the
  literal values it assigns them.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import attrs

ROOT = Path(__file__).resolve().parents[2]

VARIABLE = re.compile(r"\b(?:SCYTHE|HATCHET_CLIENT)_[A-Z0-9_]*[A-Z0-9]\b")

# RUN steps that set up the operating system rather than the Python environment. They cannot
# run here (they would change this machine), so the recipe test checks their effect
# statically instead (the USER instruction names the uid they create).
SYSTEM_STEPS = ("useradd ", "groupadd ")


# --------------------------------------------------------------------------------- Dockerfile


@attrs.frozen
class Instruction:
    keyword: str
    args: str


def dockerfile_instructions(path: Path) -> list[Instruction]:
    """Instructions in order, with continuation lines joined and comments dropped."""
    instructions: list[Instruction] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        keyword, _, args = full.partition(" ")
        instructions.append(Instruction(keyword.upper(), args.strip()))
    return instructions


def _expand(value: str, env: Mapping[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: env.get(m[1] or m[2], ""), value)


def parse_env_args(args: str, env: Mapping[str, str]) -> dict[str, str]:
    """``ENV a=1 b="x y"`` -> {"a": "1", "b": "x y"}, expanding ${VAR} from ``env``."""
    pairs: dict[str, str] = {}
    for token in shlex.split(args):
        name, sep, value = token.partition("=")
        if not sep:
            raise ValueError(f"ENV {args!r}: only the name=value form is supported here")
        pairs[name] = _expand(value, {**env, **pairs})
    return pairs


@attrs.frozen
class Dockerfile:
    """What the recipe test needs from Dockerfile.worker."""

    path: Path
    instructions: list[Instruction]

    @classmethod
    def read(cls, path: Path) -> Dockerfile:
        return cls(path, dockerfile_instructions(path))

    def all(self, keyword: str) -> list[str]:
        return [i.args for i in self.instructions if i.keyword == keyword]

    def one(self, keyword: str) -> str:
        found = self.all(keyword)
        if len(found) != 1:
            raise AssertionError(f"{self.path.name}: expected one {keyword}, found {len(found)}")
        return found[0]

    def arg_defaults(self) -> dict[str, str]:
        return dict(a.partition("=")[::2] for a in self.all("ARG"))

    def env(self) -> dict[str, str]:
        """The image's ENV, in order, with ${VAR} expanded against the earlier ones."""
        env: dict[str, str] = {}
        for args in self.all("ENV"):
            env.update(parse_env_args(args, env))
        return env

    def cmd(self) -> list[str]:
        cmd: list[str] = json.loads(self.one("CMD"))
        return cmd

    def healthcheck(self) -> list[str]:
        """The HEALTHCHECK's command in exec form (after its CMD keyword)."""
        args = self.one("HEALTHCHECK")
        _options, sep, command = args.partition("CMD ")
        if not sep:
            raise AssertionError(f"HEALTHCHECK without CMD: {args!r}")
        exec_form: list[str] = json.loads(command)
        return exec_form


# ----------------------------------------------------------------------------- .dockerignore


def dockerignore_patterns(context: Path) -> list[str]:
    lines = (context / ".dockerignore").read_text().splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    if any(p.startswith("!") for p in patterns):
        raise AssertionError(".dockerignore exceptions (!) are not supported by this helper")
    return [p.strip("/") for p in patterns]


def _segment_match(parts: list[str], pattern: list[str]) -> bool:
    """Docker's rule: ``*`` stays inside one path segment, ``**`` spans any number of them."""
    if not pattern:
        return not parts
    if pattern[0] == "**":
        return any(_segment_match(parts[i:], pattern[1:]) for i in range(len(parts) + 1))
    return (
        bool(parts)
        and fnmatch.fnmatchcase(parts[0], pattern[0])
        and (_segment_match(parts[1:], pattern[1:]))
    )


def ignored(relative: str, patterns: list[str]) -> bool:
    """True when a pattern matches the path or one of its parent folders."""
    parts = relative.split("/")
    return any(
        _segment_match(parts[:n], p.split("/")) for p in patterns for n in range(1, len(parts) + 1)
    )


def copy_from_context(context: Path, source: str, destination: Path, patterns: list[str]) -> None:
    """COPY ``source`` (relative to the build context) into ``destination``."""
    origin = context / source
    if origin.is_file():
        if not ignored(source, patterns):
            destination.mkdir(parents=True, exist_ok=True)
            shutil.copy2(origin, destination / origin.name)
        return
    for path in sorted(origin.rglob("*")):
        relative = path.relative_to(context).as_posix()
        if path.is_dir() or ignored(relative, patterns):
            continue
        target = destination / path.relative_to(origin)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)


# ------------------------------------------------------------------------------ image build


@attrs.frozen
class ImageRoot:
    """The result of performing the Dockerfile's steps under ``root`` (which stands for /)."""

    root: Path
    workdir: Path
    env: dict[str, str]
    skipped_runs: list[str]
    log: str

    def map(self, value: str) -> str:
        """An image path or PATH-like value, rewritten to live under ``root``."""
        return re.sub(r"(?<![\w.])/code\b", str(self.root / "code"), value)


def build_image_root(
    dockerfile: Dockerfile, context: Path, root: Path, python: str, timeout: float
) -> ImageRoot:
    """Perform the image's build steps on this machine.

    Paths under /code are placed under ``root``; ``python`` stands in for the base image's
    interpreter. A RUN this helper does not know how to perform faithfully is an error, so the
    test cannot silently prove less than the Dockerfile does.
    """
    patterns = dockerignore_patterns(context)
    image_env: dict[str, str] = {}
    workdir = root
    skipped: list[str] = []
    log: list[str] = []

    def mapped(value: str) -> Path:
        return Path(str(root) + value) if value.startswith("/") else workdir / value

    for ins in dockerfile.instructions:
        if ins.keyword in ("ARG", "FROM", "HEALTHCHECK", "CMD", "USER"):
            continue
        if ins.keyword == "ENV":
            image_env.update(parse_env_args(ins.args, image_env))
        elif ins.keyword == "WORKDIR":
            workdir = mapped(ins.args)
            workdir.mkdir(parents=True, exist_ok=True)
        elif ins.keyword == "COPY":
            words = ins.args.split()
            if words[0].startswith("--from="):
                continue  # the uv binary: this machine's uv stands in for it
            *sources, destination = words
            for source in sources:
                copy_from_context(context, source, mapped(destination.rstrip("/")), patterns)
        elif ins.keyword == "RUN":
            if ins.args.startswith(SYSTEM_STEPS):
                skipped.append(ins.args)
                continue
            if not ins.args.startswith("uv "):
                raise AssertionError(f"RUN step this test cannot perform: {ins.args!r}")
            host = {k: v for k, v in os.environ.items() if k != "UV_PROJECT_ENVIRONMENT"}
            env = {
                **host,
                **{k: v for k, v in image_env.items() if k != "PATH"},
                "UV_PYTHON": python,
            }
            done = subprocess.run(
                ["bash", "-c", ins.args],
                cwd=workdir,
                env=env,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
            log.append(f"$ {ins.args}\n{done.stdout}{done.stderr}")
            if done.returncode != 0:
                raise AssertionError(f"RUN {ins.args} failed:\n{done.stdout}{done.stderr}")
        else:
            raise AssertionError(f"instruction this test does not know: {ins.keyword}")
    image = ImageRoot(root, workdir, {}, skipped, "\n".join(log))
    env = {k: image.map(v) for k, v in dockerfile.env().items()}
    return attrs.evolve(image, env=env)


# ------------------------------------------------------------------- settings the code reads


class RecordingEnviron(dict[str, str]):
    """os.environ stand-in that remembers every name looked up."""

    def __init__(self, values: Mapping[str, str], seen: set[str]) -> None:
        super().__init__(values)
        self.seen = seen

    def get(self, key: Any, default: Any = None) -> Any:
        self.seen.add(key)
        return super().get(key, default)

    def __getitem__(self, key: str) -> str:
        self.seen.add(key)
        return super().__getitem__(key)

    def __contains__(self, key: object) -> bool:
        if isinstance(key, str):
            self.seen.add(key)
        return super().__contains__(key)


@contextmanager
def environment(values: Mapping[str, str], seen: set[str] | None = None) -> Iterator[None]:
    """Run with exactly ``values`` as os.environ (recording lookups into ``seen``).

    In-process only: the readers look names up through ``os.environ``, which is what this
    replaces for a moment; no subprocess is started meanwhile.
    """
    saved = os.environ
    recording = RecordingEnviron(values, seen if seen is not None else set())
    os.environ = recording  # type: ignore[assignment]  # noqa: B003
    try:
        yield
    finally:
        os.environ = saved  # noqa: B003


def read_names(readers: list[Callable[[], object]]) -> set[str]:
    """The SCYTHE_* names the readers look up, found by watching them read."""
    seen: set[str] = set()
    with environment({}, seen):
        for reader in readers:
            reader()
    return {name for name in seen if name.startswith("SCYTHE_")}


def sdk_variables(config_class: type[Any]) -> dict[str, type[Any]]:
    """HATCHET_CLIENT_* name -> the pydantic-settings model that reads it, walking the nested
    settings models of hatchet-sdk's ClientConfig with their own env prefixes."""
    from pydantic_settings import BaseSettings

    found: dict[str, type[Any]] = {}
    prefix = str(config_class.model_config["env_prefix"])
    for field_name, field in config_class.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseSettings):
            found.update(sdk_variables(annotation))
        elif field_name != "logger":
            found[f"{prefix}{field_name}".upper()] = config_class
    return found


# ------------------------------------------------------------------------------ mentioned names


def mentioned_variables(text: str) -> set[str]:
    return set(VARIABLE.findall(text))


def assigned_literals(text: str) -> list[tuple[str, str]]:
    """NAME=value / NAME: "value" assignments of the framework's variables with a literal
    value (no shell or compose expansion, no TypeScript expression)."""
    found: list[tuple[str, str]] = []
    pattern = re.compile(
        r"^\s*(?:#\s*)?(?:export\s+)?(?P<name>(?:SCYTHE|HATCHET_CLIENT)_\w+)"
        r"(?:=(?P<shell>\S*)|\s*:\s*(?P<quoted>\"[^\"]*\"|'[^']*'|[^\s,]+),?\s*(?://.*)?$)",
        re.MULTILINE,
    )
    for match in pattern.finditer(text):
        value = match["shell"] if match["shell"] is not None else match["quoted"]
        value = value.strip().strip("\"'")
        if "$" in value or "`" in value or value.endswith(("(", ".arn", ".name")):
            continue
        if match["quoted"] is not None and not match["quoted"].startswith(("'", '"')):
            continue  # a TypeScript expression (a variable, a property), not a literal
        found.append((match["name"], value))
    return found

"""The Dockerfile, read as Docker reads it: two stages on a slim Python >= 3.11, the wheel built
in the builder, a final stage with no build tools that runs as an unprivileged numeric user,
no secrets, and an entry point that is the project's console script. (Building the image needs
a Docker engine; docs/deploy.md says how.)"""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import import_module
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"


@dataclass(frozen=True)
class Instruction:
    keyword: str
    arguments: str
    line: int


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]


@dataclass
class Dockerfile:
    global_args: dict[str, str]
    stages: list[Stage]

    @property
    def final(self) -> Stage:
        return self.stages[-1]


def parse_instructions(text: str) -> list[Instruction]:
    """Instructions with continuation lines joined; comments and blank lines dropped."""
    instructions: list[Instruction] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending.append(stripped[:-1].strip())
            continue
        pending.append(stripped)
        keyword, _, arguments = " ".join(p for p in pending if p).partition(" ")
        instructions.append(Instruction(keyword.upper(), arguments.strip(), start))
        pending = []
    assert not pending, "the Dockerfile ends inside a continued instruction"
    return instructions


def _substitute(text: str, args: dict[str, str]) -> str:
    return re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m[1], m[0]), text)


def parse(text: str) -> Dockerfile:
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for instruction in parse_instructions(text):
        if instruction.keyword == "FROM":
            words = instruction.arguments.split()
            words = [w for w in words if not w.startswith("--platform")]
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            assert len(words) in (1, 3), f"line {instruction.line}: FROM {instruction.arguments}"
            stages.append(Stage(_substitute(words[0], global_args), name))
        elif not stages:
            assert instruction.keyword == "ARG", f"line {instruction.line}: only ARG before FROM"
            key, _, default = instruction.arguments.partition("=")
            global_args[key.strip()] = default.strip()
        else:
            stages[-1].instructions.append(instruction)
    return Dockerfile(global_args, stages)


def env_keys(instruction: Instruction) -> list[str]:
    """The variables an ENV or ARG instruction sets (`K=V K2=V2`, or legacy `K V`)."""
    words = shlex.split(instruction.arguments)
    if instruction.keyword == "ENV" and words and "=" not in words[0]:
        return [words[0]]
    return [w.partition("=")[0] for w in words]


def copy_sources(instruction: Instruction) -> tuple[list[str], list[str]]:
    """(flags, sources) of a COPY or ADD; the last word is the destination."""
    words = shlex.split(instruction.arguments)
    flags = [w for w in words if w.startswith("--")]
    paths = [w for w in words if not w.startswith("--")]
    return flags, paths[:-1]


@pytest.fixture(scope="module")
def dockerfile() -> Dockerfile:
    return parse(DOCKERFILE.read_text())


@pytest.fixture(scope="module")
def pyproject() -> dict[str, object]:
    with (ROOT / "pyproject.toml").open("rb") as file:
        data: dict[str, object] = tomllib.load(file)
    return data


def _python_minor(image: str) -> int:
    match = re.fullmatch(
        r"(?:docker\.io/(?:library/)?)?python:3\.(\d+)(?:\.\d+)?-slim[\w.-]*(@.+)?", image
    )
    assert match, f"{image}: expected an official slim Python image (python:3.X-slim...)"
    return int(match[1])


# --- the parser itself ----------------------------------------------------------------------


def test_the_parser_joins_continuations_and_skips_comments() -> None:
    text = "# c\nARG B=python:3.12-slim\nFROM ${B} AS one\nRUN a \\\n  # inside\n  && b\nUSER 1\n"
    parsed = parse(text)
    assert parsed.global_args == {"B": "python:3.12-slim"}
    assert [(s.base, s.name) for s in parsed.stages] == [("python:3.12-slim", "one")]
    assert [(i.keyword, i.arguments, i.line) for i in parsed.final.instructions] == [
        ("RUN", "a && b", 4),
        ("USER", "1", 7),
    ]


# --- stages and base images -----------------------------------------------------------------


def test_a_builder_stage_and_a_final_stage_on_the_same_slim_python(
    dockerfile: Dockerfile, pyproject: dict[str, object]
) -> None:
    assert len(dockerfile.stages) >= 2
    names = [s.name for s in dockerfile.stages]
    assert all(names), f"every stage is named: {names}"
    assert len(set(names)) == len(names)
    project = pyproject["project"]
    assert isinstance(project, dict)
    required = re.fullmatch(r">=3\.(\d+)", project["requires-python"])
    assert required
    for stage in dockerfile.stages:
        assert _python_minor(stage.base) >= int(required[1]), stage.base
    # The virtual environment copied from the builder points at the builder's interpreter.
    assert dockerfile.stages[0].base == dockerfile.final.base


def test_the_wheel_is_built_and_installed_in_the_builder(dockerfile: Dockerfile) -> None:
    builder = dockerfile.stages[0]
    commands = " && ".join(i.arguments for i in builder.all("RUN"))
    assert re.search(r"pip wheel\b.*--no-deps", commands), commands
    assert re.search(r"pip install\b[^&]*\.whl", commands), commands


def test_the_builder_copies_what_the_wheel_is_built_from(
    dockerfile: Dockerfile, pyproject: dict[str, object]
) -> None:
    copied = {
        source.rstrip("/")
        for instruction in dockerfile.stages[0].all("COPY")
        for source in copy_sources(instruction)[1]
    }
    project = pyproject["project"]
    tool = pyproject["tool"]
    assert isinstance(project, dict) and isinstance(tool, dict)
    packages = {
        p.rstrip("*").rstrip(".") for p in tool["setuptools"]["packages"]["find"]["include"]
    }
    assert {"pyproject.toml", project["readme"], *packages} <= copied


def test_the_final_stage_has_no_build_tools_and_no_sources(dockerfile: Dockerfile) -> None:
    final = dockerfile.final
    builder_names = {s.name for s in dockerfile.stages[:-1]}
    for instruction in final.all("COPY"):
        flags, _ = copy_sources(instruction)
        origins = {f.partition("=")[2] for f in flags if f.startswith("--from=")}
        assert origins and origins <= builder_names, f"line {instruction.line}: {instruction}"
    assert not final.all("ADD")
    forbidden = re.compile(
        r"\b(gcc|g\+\+|make|build-essential|python3?-dev|pip (install|wheel)|apt-get install|"
        r"apk add|git)\b"
    )
    for instruction in final.all("RUN"):
        found = forbidden.search(instruction.arguments)
        assert found is None, f"line {instruction.line}: {found and found[0]}"


# --- user, secrets, entry point -------------------------------------------------------------


def test_the_final_stage_runs_as_the_numeric_unprivileged_user_it_creates(
    dockerfile: Dockerfile,
) -> None:
    users = dockerfile.final.all("USER")
    assert users, "the final stage sets USER"
    user, _, group = users[-1].arguments.partition(":")
    assert user.isdigit() and int(user) != 0, users[-1]
    assert not group or (group.isdigit() and int(group) != 0), users[-1]
    created = " ".join(i.arguments for i in dockerfile.final.all("RUN"))
    assert re.search(rf"useradd\b.*--uid {user}\b", created), created


SECRET_NAME = re.compile(r"token|secret|passw|credential|api_?key|private|kubeconfig", re.I)
SECRET_FILE = re.compile(r"kubeconfig|\.env$|\.pem$|\.key$|id_rsa|\.netrc|\.pypirc|\.docker", re.I)


def test_no_secrets_in_arguments_environment_or_copied_files(dockerfile: Dockerfile) -> None:
    for stage in dockerfile.stages:
        for instruction in stage.all("ENV") + stage.all("ARG"):
            for key in env_keys(instruction):
                assert not SECRET_NAME.search(key), f"line {instruction.line}: {key}"
        for instruction in stage.all("COPY") + stage.all("ADD"):
            for source in copy_sources(instruction)[1]:
                assert not SECRET_FILE.search(source), f"line {instruction.line}: {source}"
        for instruction in stage.all("RUN"):
            assert "--mount=type=secret" not in instruction.arguments
    for key in dockerfile.global_args:
        assert not SECRET_NAME.search(key), key


def test_the_entry_point_is_the_projects_console_script(
    dockerfile: Dockerfile, pyproject: dict[str, object], capsys: pytest.CaptureFixture[str]
) -> None:
    entrypoints = dockerfile.final.all("ENTRYPOINT")
    assert len(entrypoints) == 1
    command = json.loads(entrypoints[0].arguments)  # exec form: a JSON array
    assert command == ["vpa-fleet"]
    project = pyproject["project"]
    assert isinstance(project, dict)
    target = project["scripts"][command[0]]
    module_name, _, function = target.partition(":")
    main: Callable[[list[str]], int] = getattr(import_module(module_name), function)
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.startswith("vpa-fleet ")
    # `run` is the subcommand the chart passes.
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--help"])
    assert exit_info.value.code == 0
    assert "--leader-elect" in capsys.readouterr().out


# --- the build context ----------------------------------------------------------------------


def _pattern(glob: str) -> re.Pattern[str]:
    """A .dockerignore pattern (Go filepath.Match plus `**`) as a regular expression."""
    out = []
    i = 0
    while i < len(glob):
        if glob.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif glob.startswith("**", i):
            out.append(".*")
            i += 2
        elif glob[i] == "*":
            out.append("[^/]*")
            i += 1
        elif glob[i] == "?":
            out.append("[^/]")
            i += 1
        elif glob[i] == "[":
            end = glob.index("]", i)
            out.append(glob[i : end + 1])
            i = end + 1
        else:
            out.append(re.escape(glob[i]))
            i += 1
    return re.compile("".join(out))


def in_context(path: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Whether Docker sends `path` to the builder: the last rule matching the path or one of
    its parent directories decides."""
    parts = path.split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    included = True
    for exception, pattern in rules:
        if any(pattern.fullmatch(c) for c in candidates):
            included = exception
    return included


def dockerignore_rules() -> list[tuple[bool, re.Pattern[str]]]:
    rules = []
    for raw in DOCKERIGNORE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        exception = line.startswith("!")
        rules.append((exception, _pattern(line.lstrip("!").strip("/"))))
    return rules


def test_the_build_context_holds_the_sources_and_nothing_private() -> None:
    rules = dockerignore_rules()
    for path in (
        "pyproject.toml",
        "README.md",
        "recommender/cli.py",
        "analytics/usage.py",
        "proto/vpafleet/v1/inspection.proto",
    ):
        assert in_context(path, rules), path
    for path in (
        ".venv/bin/python",
        ".git/config",
        ".testbed/state.json",
        "tests/conftest.py",
        "testbed/pki.py",
        "bench/loop.py",
        "recommender/__pycache__/cli.cpython-311.pyc",
        "recommender/api/generated/vpafleet/v1/inspection_pb2.py",
        "vpa_fleet.egg-info/PKG-INFO",
        "kubeconfig",
        "Dockerfile",
    ):
        assert not in_context(path, rules), path

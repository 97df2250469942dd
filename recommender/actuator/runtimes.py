"""Runtimes that size their memory once, at boot: a JVM's heap (-Xmx, or a share of the
container's memory), Node's old space (--max-old-space-size), PostgreSQL's shared buffers,
Redis' maxmemory, Gunicorn's worker count. Changing such a container's memory in place gives
it memory the process never uses (or takes away memory it counts on), so the actuator changes
their memory only through a restart. Detection reads the container spec only (image, command,
args, env): it is pure and errs on the side of a restart.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

_JVM_IMAGES = re.compile(
    r"openjdk|jdk|jre|temurin|corretto|zulu|semeru|sapmachine|graalvm|java|tomcat|jetty|wildfly"
)
_JVM_FLAGS = re.compile(r"-Xmx\S*|-XX:(?:Max|Initial|Min)RAM(?:Percentage|Fraction)?\S*")
_JVM_ENV = ("JAVA_TOOL_OPTIONS", "JDK_JAVA_OPTIONS", "_JAVA_OPTIONS", "JAVA_OPTS")
_NODE_FLAG = re.compile(r"--max[-_]old[-_]space[-_]size\S*")
_POSTGRES_IMAGES = re.compile(r"^(postgres|postgresql|postgis|timescaledb.*|pgvector)$")
_REDIS_MAXMEMORY = re.compile(r"maxmemory(?!-)\S*")


@dataclass(frozen=True)
class BootMemory:
    """A container whose runtime reads its memory at boot, and what gave it away."""

    runtime: str
    evidence: str

    def describe(self) -> str:
        return f"{self.runtime} ({self.evidence})"


def image_name(image: str) -> str:
    """The last path part of an image reference, without tag or digest:
    `registry:5000/library/eclipse-temurin:21-jre@sha256:...` -> `eclipse-temurin`."""
    without_digest = image.split("@", 1)[0]
    last = without_digest.rsplit("/", 1)[-1]
    return last.split(":", 1)[0].lower()


def _executable(word: str) -> str:
    return word.rsplit("/", 1)[-1].lower()


def _words(command: Iterable[str], args: Iterable[str]) -> list[str]:
    # A shell command line (`sh -c "java -Xmx1g -jar app.jar"`) is one argument: split it.
    return [part for word in (*command, *args) for part in str(word).split()]


def detect(
    image: str,
    command: Iterable[str] = (),
    args: Iterable[str] = (),
    env: Mapping[str, str] | None = None,
) -> BootMemory | None:
    """The boot-memory runtime of a container, or None. Checked in order: JVM, Node,
    PostgreSQL, Redis, Gunicorn; the first found is reported."""
    env = env or {}
    words = _words(command, args)
    executables = {_executable(word) for word in words}
    name = image_name(image) if image else ""

    for word in words:
        if _JVM_FLAGS.fullmatch(word):
            return BootMemory("JVM", f"{word} in command/args")
    for variable in _JVM_ENV:
        if variable in env:
            flag = _JVM_FLAGS.search(env[variable])
            shown = flag.group(0) if flag else "set"
            return BootMemory("JVM", f"{variable} {shown}")
    if "java" in executables:
        return BootMemory("JVM", "java in command")
    if name and _JVM_IMAGES.search(name):
        return BootMemory("JVM", f"image {name}")

    for word in words:
        if _NODE_FLAG.fullmatch(word):
            return BootMemory("Node.js", f"{word} in command/args")
    flag = _NODE_FLAG.search(env.get("NODE_OPTIONS", ""))
    if flag:
        return BootMemory("Node.js", f"NODE_OPTIONS {flag.group(0)}")

    if executables & {"postgres", "postmaster"}:
        return BootMemory("PostgreSQL", "postgres in command")
    if name and _POSTGRES_IMAGES.fullmatch(name):
        return BootMemory("PostgreSQL", f"image {name}")

    redis = "redis-server" in executables or name in {"redis", "redis-stack-server", "valkey"}
    if redis:
        for word in words:
            if _REDIS_MAXMEMORY.fullmatch(word.lstrip("-")):
                return BootMemory("Redis", f"{word} in command/args")
        for variable, value in env.items():
            if "MAXMEMORY" in variable.upper() or _REDIS_MAXMEMORY.search(value):
                return BootMemory("Redis", f"maxmemory in {variable}")

    if "gunicorn" in executables or any(w.endswith("gunicorn") for w in words):
        return BootMemory("Gunicorn", "gunicorn in command (worker count fixed at boot)")
    for variable in ("GUNICORN_CMD_ARGS", "WEB_CONCURRENCY"):
        if variable in env:
            return BootMemory("Gunicorn", f"{variable} set (worker count fixed at boot)")
    return None


def detect_container(container: Mapping[str, object]) -> BootMemory | None:
    """`detect` for a container of a pod spec (JSON). Env values from secrets or config maps
    (`valueFrom`) count as set with an empty value."""
    env: dict[str, str] = {}
    for entry in container.get("env") or []:  # type: ignore[attr-defined]
        if isinstance(entry, Mapping) and "name" in entry:
            env[str(entry["name"])] = str(entry.get("value") or "")
    return detect(
        str(container.get("image") or ""),
        [str(w) for w in container.get("command") or []],  # type: ignore[attr-defined]
        [str(w) for w in container.get("args") or []],  # type: ignore[attr-defined]
        env,
    )

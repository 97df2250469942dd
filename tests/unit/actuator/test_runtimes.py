from __future__ import annotations

import pytest

from recommender.actuator.runtimes import detect, detect_container, image_name


@pytest.mark.parametrize(
    ("image", "command", "args", "env", "runtime"),
    [
        ("registry.example/app:1", ["java", "-Xmx512m", "-jar", "app.jar"], [], {}, "JVM"),
        ("registry.example/app:1", ["sh", "-c", "exec java -jar /app.jar"], [], {}, "JVM"),
        ("registry.example/app:1", [], [], {"JAVA_TOOL_OPTIONS": "-Xmx1g"}, "JVM"),
        ("eclipse-temurin:21-jre", [], [], {}, "JVM"),
        ("registry.example/app:1", [], ["-XX:MaxRAMPercentage=75"], {}, "JVM"),
        ("node:22", ["node", "--max-old-space-size=4096", "server.js"], [], {}, "Node.js"),
        ("app:1", [], [], {"NODE_OPTIONS": "--max-old-space-size=2048"}, "Node.js"),
        ("docker.io/library/postgres:17@sha256:abc", [], [], {}, "PostgreSQL"),
        ("redis:7", ["redis-server"], ["--maxmemory", "1gb"], {}, "Redis"),
        ("app:1", ["gunicorn", "-w", "4", "app:wsgi"], [], {}, "Gunicorn"),
        ("app:1", [], [], {"WEB_CONCURRENCY": "4"}, "Gunicorn"),
    ],
)
def test_boot_memory_runtimes_are_detected(
    image: str, command: list[str], args: list[str], env: dict[str, str], runtime: str
) -> None:
    found = detect(image, command, args, env)
    assert found is not None and found.runtime == runtime


@pytest.mark.parametrize(
    ("image", "command", "args", "env"),
    [
        ("registry.example/app:1", [], [], {}),
        ("nginx:1.27", ["nginx", "-g", "daemon off;"], [], {}),
        ("node:22", ["node", "server.js"], [], {}),  # heap follows the limit at boot only
        ("redis:7", ["redis-server"], [], {}),  # no maxmemory: no fixed size
        ("python:3.13", ["python", "-m", "http.server"], [], {}),
    ],
)
def test_other_containers_are_not(
    image: str, command: list[str], args: list[str], env: dict[str, str]
) -> None:
    assert detect(image, command, args, env) is None


def test_the_evidence_is_named() -> None:
    found = detect("app:1", ["java", "-Xmx512m", "-jar", "app.jar"])
    assert found is not None
    assert found.describe() == "JVM (-Xmx512m in command/args)"


def test_image_names() -> None:
    assert image_name("registry:5000/library/eclipse-temurin:21-jre@sha256:00") == "eclipse-temurin"
    assert image_name("postgres") == "postgres"


def test_container_json_env_from_secrets_counts_as_set() -> None:
    container = {
        "name": "app",
        "image": "app:1",
        "env": [{"name": "JAVA_TOOL_OPTIONS", "valueFrom": {"secretKeyRef": {"name": "s"}}}],
    }
    found = detect_container(container)
    assert found is not None and found.describe() == "JVM (JAVA_TOOL_OPTIONS set)"

# syntax=docker/dockerfile:1
# The vpa-fleet image: `vpa-fleet run` with an embedded Ray (docs/deploy.md).
#
#   docker build -t vpa-fleet:0.1.0 .
#
# Two stages: the builder builds the project's wheel and installs it with its dependencies from
# PyPI into a virtual environment; the final image holds that environment on the same slim
# Python base, runs as an unprivileged user, and has no compiler, no package cache and no
# sources. Pin the base by digest for byte-for-byte rebuilds:
#   docker build --build-arg PYTHON_IMAGE=python:3.11-slim-bookworm@sha256:<digest> .

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src
# What the wheel is built from: the project metadata (its readme included), the two
# import packages and the .proto files (the build generates the gRPC stubs from them).
# Tests, the testbed and benchmarks stay out (.dockerignore).
COPY pyproject.toml README.md ./
COPY proto/ proto/
COPY recommender/ recommender/
COPY analytics/ analytics/

RUN python -m pip wheel --no-deps --wheel-dir /wheels . \
 && python -m venv /opt/vpa-fleet \
 && /opt/vpa-fleet/bin/python -m pip install /wheels/*.whl \
 && /opt/vpa-fleet/bin/python -m pip uninstall --yes pip \
 && /opt/vpa-fleet/bin/vpa-fleet --version


FROM ${PYTHON_IMAGE} AS runtime

ENV PATH=/opt/vpa-fleet/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/home/vpa-fleet

RUN groupadd --system --gid 10001 vpa-fleet \
 && useradd --system --uid 10001 --gid 10001 --home-dir /home/vpa-fleet --create-home \
      --shell /usr/sbin/nologin vpa-fleet

COPY --from=builder /opt/vpa-fleet /opt/vpa-fleet

# Numeric, so that Kubernetes can check runAsNonRoot without reading /etc/passwd.
USER 10001:10001
WORKDIR /home/vpa-fleet

ENTRYPOINT ["vpa-fleet"]
CMD ["--help"]

# syntax=docker/dockerfile:1
# joulie-tasks: one image for every role. The role is the subcommand:
#   docker run IMAGE worker --concurrency=4   (default: worker)
#   docker run IMAGE beat | watch | metrics
#   docker run IMAGE reconcile --once --dry-run
# Configuration comes from the environment only (see .env.example and docs/SPEC.md §3).
# Every role runs as the numeric user 10001 on a read-only root filesystem (only /tmp
# needs to be writable: compose and the manifests mount an emptyDir/tmpfs there).
#
# BASE_IMAGE: any Debian-based image with python3 (>= 3.11) and its venv module. The
# default is the usual public one; with no registry, scripts/images.sh builds
# localhost/joulie-base:bookworm from the Debian mirror and passes it here.
ARG BASE_IMAGE=python:3.11-slim

# --- build: the operator and its dependencies in a venv (no test bed, no dev tools) ------
# The venv sits at the same path in both stages (same base, same python3), so the runtime
# stage copies it whole: no wheel files left in a layer of the final image.
FROM ${BASE_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python3 -m venv /opt/joulie
WORKDIR /src
COPY pyproject.toml README.md ./
COPY joulie_tasks ./joulie_tasks
RUN /opt/joulie/bin/pip install --quiet . \
 && /opt/joulie/bin/pip uninstall --quiet --yes pip

# --- runtime ------------------------------------------------------------------------------
FROM ${BASE_IMAGE}
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/joulie/bin:$PATH
COPY --from=build /opt/joulie /opt/joulie
RUN groupadd --system --gid 10001 joulie \
 && useradd --system --uid 10001 --gid joulie --home-dir /app --no-create-home \
      --shell /usr/sbin/nologin joulie
WORKDIR /app
# The per-role entry files (python worker/main.py is the same as joulie-tasks worker).
COPY worker ./worker
COPY beat ./beat
# Numeric user so Kubernetes can verify runAsNonRoot without a passwd lookup.
USER 10001:10001
EXPOSE 8081
ENTRYPOINT ["joulie-tasks"]
CMD ["worker"]

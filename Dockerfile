# syntax=docker/dockerfile:1
# joulie-tasks: one image for every role. The role is the subcommand:
#   docker run IMAGE worker --concurrency=4   (default: worker)
#   docker run IMAGE beat
#   docker run IMAGE metrics
#   docker run IMAGE reconcile --once --dry-run
# Configuration comes from the environment only (see .env.example and SPEC §3).

# --- build: the operator's wheel only (no test bed, no dev dependencies) ------------------
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY joulie_tasks ./joulie_tasks
RUN pip wheel --wheel-dir /wheels .

# --- runtime ------------------------------------------------------------------------------
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN groupadd --system --gid 10001 joulie \
 && useradd --system --uid 10001 --gid joulie --home-dir /app --no-create-home \
      --shell /usr/sbin/nologin joulie
COPY --from=build /wheels /wheels
RUN pip install --no-index --find-links=/wheels joulie-tasks && rm -rf /wheels
WORKDIR /app
# The per-role entry files (python worker/main.py is the same as joulie-tasks worker).
COPY worker ./worker
COPY beat ./beat
# Numeric user so Kubernetes can verify runAsNonRoot without a passwd lookup.
USER 10001:10001
EXPOSE 8081
ENTRYPOINT ["joulie-tasks"]
CMD ["worker"]

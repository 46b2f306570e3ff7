# syntax=docker/dockerfile:1
# One image for the code server, the webserver, the daemon (as Dagster's deploy_docker
# example does) and the receiver of Graph change notifications, holding nothing but the
# installed wheel: the install that CI tests from an empty folder, and the processes
# sync_pipeline_tests/test_topology.py runs. The webserver and
# the daemon need the package too: dagster.yaml's storage is sync_pipeline.core.instance.
# Build and run: docs/operations.md, "Deployment" (deploy/compose.yaml).

FROM python:3.11-slim AS build
WORKDIR /src
COPY . .
# sync_pipeline/sql and sync_pipeline/dagster.yaml are links into the root: the wheel carries
# their targets as package data.
RUN pip wheel --no-cache-dir --no-deps -w /wheels .

FROM python:3.11-slim
ENV DAGSTER_HOME=/opt/dagster/home \
    SYNC_PIPELINE_HOME=/opt/dagster/state \
    DAGSTER_DISABLE_TELEMETRY=1 \
    GX_ANALYTICS_ENABLED=False \
    PYTHONUNBUFFERED=1
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir /wheels/sync_pipeline-*.whl
# The instance: the dagster.yaml the wheel carries (runs, events and schedules in DATABASE_URL's
# Postgres, the run queue's per-tenant limit), and the workspace naming the code server.
RUN useradd --system --create-home --home-dir /opt/dagster dagster \
 && mkdir -p "$DAGSTER_HOME" "$SYNC_PIPELINE_HOME" \
 && python -c "import importlib.resources as r; print(r.files('sync_pipeline').joinpath('dagster.yaml').read_text(), end='')" \
    > "$DAGSTER_HOME/dagster.yaml" \
 && chown -R dagster "$DAGSTER_HOME" "$SYNC_PIPELINE_HOME"
COPY deploy/workspace.yaml /opt/dagster/workspace.yaml
USER dagster
WORKDIR /opt/dagster
EXPOSE 3000 4000 8000
# The code server by default; compose runs the webserver, the daemon and the receiver
# (`sync-pipeline notifications serve`, port 8000) from the same image.
CMD ["dagster", "code-server", "start", "-m", "sync_pipeline.definitions", \
     "-h", "0.0.0.0", "-p", "4000", "--location-name", "sync_pipeline"]

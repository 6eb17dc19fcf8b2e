# syntax=docker/dockerfile:1
# seawall's container image: the gateway in a virtualenv on a slim Python, run as a
# fixed non-root user, ready for a read-only root filesystem. The Helm chart
# (helm/seawall) runs it. Build: `docker build -t seawall:0.1.0 .`
# (docs/kubernetes.md#the-image).

ARG PYTHON_IMAGE=python:3.12-slim-bookworm

# -- builder: build seawall's wheel, install it and its dependencies into /opt/venv.
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY gateway ./gateway
COPY routing ./routing
COPY tools ./tools
COPY chaos ./chaos
COPY common ./common
COPY tenants ./tenants
COPY policies ./policies
COPY limits ./limits
COPY responses ./responses
COPY toolservers ./toolservers
COPY audit ./audit
COPY slo ./slo
COPY rollouts ./rollouts
# Byte-code is compiled here: the final image's root filesystem is read-only.
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir --upgrade "pip>=24" \
    && /opt/venv/bin/pip wheel --no-cache-dir --no-deps --wheel-dir /wheels . \
    && /opt/venv/bin/pip install --no-cache-dir /wheels/seawall-*.whl \
    && /opt/venv/bin/python -m compileall -q /opt/venv/lib

# -- final: the interpreter, the venv, a user; no compilers, no build tools, no pip cache.
FROM ${PYTHON_IMAGE}
ARG SEAWALL_UID=10001
# The root filesystem may be read-only: nothing writes to it. HOME and the temp
# directory are /tmp (an emptyDir in the chart); byte-code was compiled in the builder.
ENV PATH=/opt/venv/bin:$PATH \
    HOME=/tmp \
    TMPDIR=/tmp \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
RUN groupadd --system --gid ${SEAWALL_UID} seawall \
    && useradd --system --uid ${SEAWALL_UID} --gid ${SEAWALL_UID} \
       --no-create-home --home-dir /tmp --shell /usr/sbin/nologin seawall \
    && mkdir -p /etc/seawall/config /var/lib/seawall/audit \
    && chown ${SEAWALL_UID}:${SEAWALL_UID} /var/lib/seawall/audit
COPY --from=builder /opt/venv /opt/venv
USER ${SEAWALL_UID}:${SEAWALL_UID}
WORKDIR /tmp
EXPOSE 8080
# Liveness as the chart's probe sees it: /healthz answers while the process does.
HEALTHCHECK --interval=30s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2)"]
ENTRYPOINT ["seawall"]
# A config directory must be mounted (a public bind needs `keys` in it).
CMD ["serve", "--config", "/etc/seawall/config", "--host", "0.0.0.0", "--port", "8080"]

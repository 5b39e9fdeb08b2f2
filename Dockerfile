# kvcluster node image. See docs/docker.md.
#
#   scripts/docker/build.sh         # offline: wheels fetched on the host, local base image
#   docker compose build            # online: python:3.11-slim and PyPI
#
# Written for both builders, the legacy one and BuildKit: no RUN --mount, no heredocs, one
# stage (so rebuilds leave no untagged stage images behind). Offline, nothing here touches
# the network: the project is installed from wheels that scripts/docker/build.sh puts in
# build/docker/ (dependencies in wheels/, kvcluster's own wheel in dist/). Without them, as
# in a fresh clone, the same steps install from PyPI and the source instead.
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

ENV PATH=/opt/kvcluster/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore

# iptables: partition tests cut links from inside the containers (with NET_ADMIN). The local
# base image (scripts/docker/build-base-image.sh) has it; python:3.11-slim does not.
# The virtualenv gives `python` on a Debian base whose interpreter is `python3`.
RUN if ! command -v iptables >/dev/null 2>&1; then \
      apt-get update \
      && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends iptables \
      && rm -rf /var/lib/apt/lists/*; \
    fi \
 && groupadd --gid 10001 kv \
 && useradd --no-log-init --uid 10001 --gid kv --home-dir /data --no-create-home \
      --shell /usr/sbin/nologin kv \
 && mkdir -p /data \
 && chown kv:kv /data \
 && python3 -m venv /opt/kvcluster

# Dependencies, in a layer that survives changes to kvcluster's code. The wildcard lets the
# COPY succeed when build/docker/wheels does not exist; pyproject.toml always comes along and
# names the dependencies for the online path.
COPY pyproject.toml build/docker/wheel[s] /tmp/wheels/
RUN if ls /tmp/wheels/*.whl >/dev/null 2>&1; then \
      pip install --no-index /tmp/wheels/*.whl; \
    else \
      python3 -c "import tomllib; print('\n'.join(tomllib.load(open('/tmp/wheels/pyproject.toml', 'rb'))['project']['dependencies']))" \
        >/tmp/requirements.txt \
      && pip install -r /tmp/requirements.txt; \
    fi \
 && rm -rf /tmp/wheels /tmp/requirements.txt

COPY scripts/docker/healthcheck.py /opt/kvcluster/healthcheck.py
# Every node: any `kvcluster-server` option can be set as KV_<OPTION>; compose adds
# KV_NODE_ID, KV_PEERS and KV_ADVERTISE.
ENV KV_LISTEN=0.0.0.0:7000 \
    KV_HTTP=0.0.0.0:8000 \
    KV_DATA_DIR=/data
WORKDIR /data
EXPOSE 7000 8000
HEALTHCHECK --interval=5s --timeout=3s --start-period=30s --retries=3 \
  CMD ["/opt/kvcluster/bin/python", "/opt/kvcluster/healthcheck.py"]
ENTRYPOINT ["/opt/kvcluster/bin/python", "-m", "kvcluster.server"]

# kvcluster itself, last: a code change rebuilds only these few small layers.
COPY pyproject.toml README.md build/docker/dis[t] /tmp/src/
COPY kvcluster /tmp/src/kvcluster
RUN if ls /tmp/src/kvcluster-*.whl >/dev/null 2>&1; then \
      pip install --no-index --no-deps /tmp/src/kvcluster-*.whl; \
    else \
      pip install --no-deps /tmp/src; \
    fi \
 && rm -rf /tmp/src \
 && python -c "import kvcluster.server, grpc, lmdb, aiohttp" \
 && pip check
USER kv

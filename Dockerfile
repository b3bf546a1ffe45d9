# Container image for qlik-sense-exporter.
#
# Build:   docker build -t qlik-sense-exporter .
#          (another base: --build-arg BASE_IMAGE=<image with python3 >= 3.11 and its venv module>)
# Run:     docker run -p 9851:9851 \
#            -v "$PWD/config:/etc/qlik-sense-exporter:ro" qlik-sense-exporter
#
# Nothing secret goes into any layer: the config, certificates, keys and tokens are mounted at run
# time (under /etc/qlik-sense-exporter/ by convention) and API keys may also come from the
# environment (`api_key_env:` in the config). See docs/container.md.

# Any image with python3 (>= 3.11) and its venv module works; the build and final stages must use
# the same one, because the virtual environment links to that interpreter (/usr/local/bin/python3
# in the official image, /usr/bin/python3 in a Debian one).
ARG BASE_IMAGE=python:3.11-slim

# ---------------------------------------------------------------------------------------------
FROM ${BASE_IMAGE} AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# A venv rather than the system site-packages: Debian's python3 is "externally managed" (PEP 668),
# and a single folder is easy to copy into the final stage.
RUN python3 -m venv /opt/venv

# The context holds only what the package build needs: .dockerignore is an allowlist
# (pyproject.toml, README.md, LICENSE, exporter/).
# pip and setuptools are removed afterwards: not needed at run time, fewer files and CVEs to scan.
COPY . /src
# The speed extra: uvloop, the default event loop when installed (docs/benchmark.md).
RUN /opt/venv/bin/pip install "/src[speed]" \
 && /opt/venv/bin/python3 -m pip uninstall --yes pip setuptools wheel

# ---------------------------------------------------------------------------------------------
FROM ${BASE_IMAGE}

ARG EXPORTER_UID=10001

LABEL org.opencontainers.image.title="qlik-sense-exporter" \
      org.opencontainers.image.description="Prometheus exporter for Qlik Sense: logins, latency, build versions, certificate and credential expiry" \
      org.opencontainers.image.licenses="Apache-2.0"

# A fixed numeric UID/GID so that Kubernetes' runAsNonRoot can verify it and mounted files can be
# made readable to it (e.g. chgrp 10001 or fsGroup: 10001).
RUN groupadd --system --gid "${EXPORTER_UID}" exporter \
 && useradd --system --uid "${EXPORTER_UID}" --gid "${EXPORTER_UID}" \
      --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin exporter \
 && mkdir -p /etc/qlik-sense-exporter

COPY --from=build /opt/venv /opt/venv

ENV PATH=/opt/venv/bin:${PATH} \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HEALTHCHECK_URL=http://127.0.0.1:9851/-/healthy

USER ${EXPORTER_UID}:${EXPORTER_UID}
WORKDIR /etc/qlik-sense-exporter
EXPOSE 9851

# Python's urllib, so the image needs no curl. Set HEALTHCHECK_URL when the exporter listens
# elsewhere: another port, or https:// with --web.config.file (the certificate is not verified:
# this only asks the process on loopback whether it is alive).
HEALTHCHECK --interval=30s --timeout=5s --start-period=15s --retries=3 \
  CMD ["python3", "-c", "import os, ssl, sys, urllib.request as u; r = u.urlopen(os.environ['HEALTHCHECK_URL'], timeout=4, context=ssl._create_unverified_context()); sys.exit(r.status != 200)"]

ENTRYPOINT ["qlik-sense-exporter"]
CMD ["--config.file", "/etc/qlik-sense-exporter/config.yml", "--web.listen-address", ":9851"]

# khqrpay: one image for the web app (`serve`), the worker (`worker`) and one-off commands
# (`db upgrade`, `doctor`, ...). `docker compose up` runs it with PostgreSQL (compose.yaml);
# docs/docker.md says how to build, configure and run it.

# Build stage: install khqrpay and its dependencies into a virtualenv. Every dependency ships a
# wheel, so no compiler is needed here, and nothing of this stage but the virtualenv is kept.
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/khqrpay
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN /opt/khqrpay/bin/pip install .

# Run stage: the same slim Python, the virtualenv, and an unprivileged user.
FROM python:3.11-slim
ENV PATH=/opt/khqrpay/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN groupadd --system --gid 10001 khqrpay \
    && useradd --system --uid 10001 --gid khqrpay --home-dir /var/lib/khqrpay --create-home \
       --shell /usr/sbin/nologin khqrpay
COPY --from=build /opt/khqrpay /opt/khqrpay
USER khqrpay
# The working directory holds `data/` (the SQLite default) and is the user's own.
WORKDIR /var/lib/khqrpay
EXPOSE 8000
# The web app answers /healthz; the worker's container replaces this check (compose.yaml).
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]
ENTRYPOINT ["khqrpay"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000", "--no-worker", "--json-logs"]

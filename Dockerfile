# The one image of every medianest-workers role: docker-compose.yml runs it as migrate, api,
# the workers, beat and flower (`medianest-workers <role>`).
#
#   docker build -t medianest-workers .
FROM python:3.11-slim-bookworm AS build

WORKDIR /src
# Only what the wheel is built from (pyproject.toml force-includes beat_schedule.py,
# migrations/ and alembic.ini).
COPY pyproject.toml README.md alembic.ini beat_schedule.py ./
COPY migrations ./migrations
COPY medianest_workers ./medianest_workers
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python:3.11-slim-bookworm

# The backups' pg_dump/pg_restore must be of the server's major version (maintenance/pg_tools.py):
# docker-compose.yml runs postgres:15, Debian bookworm's client is 15. For another major,
# build with --build-arg PG_CLIENT_MAJOR=N and a source of its client (ops/backup-and-restore.md).
ARG PG_CLIENT_MAJOR=15

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# ffmpeg: yt-dlp merges and post-processes downloads with it.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ffmpeg "postgresql-client-${PG_CLIENT_MAJOR}" \
    && rm -rf /var/lib/apt/lists/*

COPY --from=build /wheels /wheels
RUN pip install /wheels/*.whl && rm -rf /wheels

# A user of its own, never root (Celery refuses pickle as root; we accept JSON only anyway).
RUN groupadd --system --gid 10001 medianest \
    && useradd --system --uid 10001 --gid medianest --home-dir /var/lib/medianest \
        --shell /usr/sbin/nologin medianest \
    && mkdir -p /var/lib/medianest/data /var/lib/medianest/downloads \
    && chown -R medianest:medianest /var/lib/medianest
USER medianest:medianest
WORKDIR /var/lib/medianest
ENV DATA_DIR=/var/lib/medianest/data \
    DOWNLOAD_ROOT=/var/lib/medianest/downloads

ENTRYPOINT ["medianest-workers"]
CMD ["--help"]

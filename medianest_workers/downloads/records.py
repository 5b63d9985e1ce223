"""youtube_downloads rows (the backend's table): created or adopted, then moved along.

status: `queued` (the backend's insert) → `downloading` (a run of ours holds it) →
`completed` / `failed` / `cancelled` (tests/contracts/medianest-interop.md sections 2, 4).
`file_paths` is the JSON the backend reads:
success `{"jobId", "files": [{"path", "size", "filename"}], "totalSize", "quality", "format",
"duration"}`, failure `{"jobId", "error", "quality", "format"}`; our extra keys (allowed):
`downloaded`, `failed`, `errors` (per entry), `run` (how many runs of this row finished),
`folder`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, func, select, text, update
from sqlalchemy.dialects.postgresql import insert

from medianest_workers.db.models.medianest import YoutubeDownload

ACTIVE = ("queued", "downloading")
FINISHED = ("completed", "failed", "cancelled")

_NOW_UTC = text("timezone('UTC', now())")


@dataclass(frozen=True)
class DownloadRow:
    id: str
    user_id: str
    playlist_url: str
    playlist_title: str | None
    status: str
    file_paths: dict[str, Any] | None
    created_at: dt.datetime

    @property
    def run(self) -> int:
        """How many runs of this row finished so far."""
        value = (self.file_paths or {}).get("run")
        return value if isinstance(value, int) else 0


def load(connection: Connection, download_id: str, *, lock: bool = False) -> DownloadRow | None:
    table = YoutubeDownload.__table__
    query = select(table).where(table.c.id == download_id)
    if lock:
        query = query.with_for_update()
    row = connection.execute(query).one_or_none()
    if row is None:
        return None
    return DownloadRow(
        id=row.id,
        user_id=row.user_id,
        playlist_url=row.playlist_url,
        playlist_title=row.playlist_title,
        status=row.status,
        file_paths=row.file_paths,
        created_at=row.created_at,
    )


def recent_count(connection: Connection, user_id: str, *, seconds: float) -> int:
    """The user's downloads created in the last `seconds` (the hourly limit counts these)."""
    return connection.execute(
        select(func.count())
        .select_from(YoutubeDownload)
        .where(
            YoutubeDownload.user_id == user_id,
            YoutubeDownload.created_at > _NOW_UTC - func.make_interval(0, 0, 0, 0, 0, 0, seconds),
        )
    ).scalar_one()


def create(connection: Connection, *, download_id: str, user_id: str, url: str) -> bool:
    """Insert our own row, already `downloading` (no `queued` moment the pickup could see).

    False when it exists (a resumed run of the same job).
    """
    result = connection.execute(
        insert(YoutubeDownload)
        .values(id=download_id, user_id=user_id, playlist_url=url, status="downloading")
        .on_conflict_do_nothing(index_elements=["id"])
    )
    return bool(result.rowcount)


def mark_downloading(connection: Connection, download_id: str) -> None:
    connection.execute(
        update(YoutubeDownload)
        .where(YoutubeDownload.id == download_id)
        .values(status="downloading", completed_at=None)
    )


def set_title(connection: Connection, download_id: str, title: str) -> None:
    connection.execute(
        update(YoutubeDownload)
        .where(YoutubeDownload.id == download_id)
        .values(playlist_title=title)
    )


def finish(
    connection: Connection, download_id: str, *, status: str, file_paths: dict[str, Any]
) -> None:
    """The end of a run: status, file_paths, and completed_at (set for `completed` only)."""
    if status not in FINISHED:
        raise ValueError(f"not a finished status: {status!r}")
    connection.execute(
        update(YoutubeDownload)
        .where(YoutubeDownload.id == download_id)
        .values(
            status=status,
            file_paths=file_paths,
            completed_at=_NOW_UTC if status == "completed" else None,
        )
    )


# --- the pickup of the backend's queued rows --------------------------------------------------

#: Queued rows no job of ours holds: neither a `downloads.playlist` job that is queued or
#: running with this download_id, nor one whose id is the row's (our own rows).
_UNOWNED_QUEUED = text(
    """
    SELECT d.id, d.user_id,
        CASE WHEN jsonb_typeof(d.file_paths -> 'run') = 'number'
            THEN (d.file_paths ->> 'run')::numeric::bigint ELSE 0 END AS run
    FROM youtube_downloads d
    WHERE d.status = 'queued'
      AND NOT EXISTS (
        SELECT 1 FROM mnw_jobs j
        WHERE j.kind = 'downloads.playlist' AND j.state IN ('queued', 'running')
          AND (j.payload ->> 'download_id' = d.id OR j.id = d.id)
      )
    ORDER BY d.created_at, d.id
    LIMIT :limit
    """
)


def unowned_queued(connection: Connection, *, limit: int) -> list[tuple[str, str, int]]:
    """(id, user id, finished runs) of the queued rows no job of ours holds, oldest first."""
    return [
        (row.id, row.user_id, int(row.run))
        for row in connection.execute(_UNOWNED_QUEUED, {"limit": limit})
    ]


#: Rows left `downloading` by a job that ended without finishing them (dead: killed each
#: time; or failed before it could record the end), with no other job of ours on them.
_ABANDONED = text(
    """
    UPDATE youtube_downloads d
    SET status = 'failed',
        file_paths = COALESCE(d.file_paths, '{}'::jsonb) || jsonb_build_object(
            'jobId', j.id,
            'error', 'the download job ended ' || j.state || ' without finishing',
            'quality', COALESCE(j.payload ->> 'quality', '1080p'),
            'format', COALESCE(j.payload ->> 'format', 'mp4'))
    FROM mnw_jobs j
    WHERE d.status = 'downloading'
      AND j.kind = 'downloads.playlist' AND j.state IN ('dead', 'failed')
      AND (j.id = d.id OR j.payload ->> 'download_id' = d.id)
      AND NOT EXISTS (
        SELECT 1 FROM mnw_jobs a
        WHERE a.kind = 'downloads.playlist' AND a.state IN ('queued', 'running')
          AND (a.id = d.id OR a.payload ->> 'download_id' = d.id)
      )
    RETURNING d.id
    """
)


def fail_abandoned(connection: Connection) -> list[str]:
    """Mark `failed` the rows whose job ended dead or failed while they were `downloading`."""
    return list(connection.execute(_ABANDONED).scalars())

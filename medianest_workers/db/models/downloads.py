"""The download archive (mnw_download_archive): what each user's playlist folder already holds.

One row per (user, playlist folder, yt-dlp archive id such as `youtube dQw4w9WgXcQ`): the
entry was downloaded completely (post-processed, moved into place) into `file_path`. yt-dlp
reads the archive as a set (downloads/archive.py), so a re-run fetches only new entries. A
file the quota removed keeps its row with `removed_at` set: a re-run does not fetch it again.
There is no foreign key to `users` (the backend's table, whose deletes we must never block).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, Float, Index, Text
from sqlalchemy.orm import Mapped, mapped_column

from medianest_workers.db.base import CURRENT_TIMESTAMP, Base, Timestamp3


class DownloadArchiveEntry(Base):
    __tablename__ = "mnw_download_archive"
    __table_args__ = (
        Index(
            "mnw_download_archive_user_id_playlist_key_archive_id_key",
            "user_id",
            "playlist_key",
            "archive_id",
            unique=True,
        ),
        Index("mnw_download_archive_downloaded_at_idx", "downloaded_at"),
        Index("mnw_download_archive_download_id_idx", "download_id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    user_id: Mapped[str] = mapped_column(Text, nullable=False)
    #: The playlist folder's id part (yt-dlp's playlist id, or a hash of a long one).
    playlist_key: Mapped[str] = mapped_column(Text, nullable=False)
    #: yt-dlp's archive id: `<extractor key lowercased> <video id>`.
    archive_id: Mapped[str] = mapped_column(Text, nullable=False)
    #: The youtube_downloads row whose run downloaded it.
    download_id: Mapped[str] = mapped_column(Text, nullable=False)
    video_id: Mapped[str] = mapped_column(Text, nullable=False)
    title: Mapped[str | None] = mapped_column(Text)
    file_path: Mapped[str] = mapped_column(Text, nullable=False)
    size_bytes: Mapped[int] = mapped_column(BigInteger, nullable=False)
    duration_seconds: Mapped[float | None] = mapped_column(Float)
    downloaded_at: Mapped[dt.datetime] = mapped_column(
        Timestamp3, nullable=False, server_default=CURRENT_TIMESTAMP
    )
    #: Set when the quota removed the file (its row stays so it is not fetched again).
    removed_at: Mapped[dt.datetime | None] = mapped_column(Timestamp3)

"""Query statistics snapshots (mnw_query_stats): pg_stat_statements' top statements, daily.

One row per statement per snapshot; every row of a snapshot has the same `taken_at` (the
database's clock) and its `rank` by total execution time (1 = the most expensive). The numbers
are pg_stat_statements' cumulative counters at `taken_at`, since its last reset, for this
database; `query` is the normalized text, cut to a bound (maintenance/query_stats.py).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, Double, Identity, Index, Integer, Text
from sqlalchemy.orm import Mapped, mapped_column

from medianest_workers.db.base import Base, Timestamp3


class QueryStat(Base):
    __tablename__ = "mnw_query_stats"
    __table_args__ = (Index("mnw_query_stats_taken_at_rank_idx", "taken_at", "rank"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    taken_at: Mapped[dt.datetime] = mapped_column(Timestamp3, nullable=False)
    rank: Mapped[int] = mapped_column(Integer, nullable=False)
    queryid: Mapped[int] = mapped_column(BigInteger, nullable=False)
    query: Mapped[str] = mapped_column(Text, nullable=False)
    calls: Mapped[int] = mapped_column(BigInteger, nullable=False)
    total_exec_ms: Mapped[float] = mapped_column(Double, nullable=False)
    mean_exec_ms: Mapped[float] = mapped_column(Double, nullable=False)
    rows: Mapped[int] = mapped_column(BigInteger, nullable=False)
    shared_blks_hit: Mapped[int] = mapped_column(BigInteger, nullable=False)
    shared_blks_read: Mapped[int] = mapped_column(BigInteger, nullable=False)

    @property
    def hit_ratio(self) -> float | None:
        """Shared blocks found in the buffer cache, of those needed (None: none needed)."""
        return hit_ratio(self.shared_blks_hit, self.shared_blks_read)


def hit_ratio(hit: int, read: int) -> float | None:
    """hit / (hit + read), or None when the statement touched no shared block."""
    total = hit + read
    return None if total == 0 else hit / total

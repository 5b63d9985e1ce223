"""Rows of each cleanup target for the tests: insert one by a key and a time, list the keys."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Connection, text

from tests.maintenance.conftest import USER_ID

#: target -> INSERT of one row named :key whose time column is :at.
INSERT: dict[str, str] = {
    "session_tokens": (
        "INSERT INTO session_tokens (id, user_id, token_hash, expires_at)"
        f" VALUES (:key, '{USER_ID}', 'hash-' || :key, :at)"
    ),
    "sessions": (
        "INSERT INTO sessions (id, session_token, user_id, expires)"
        f" VALUES (:key, 'token-' || :key, '{USER_ID}', :at)"
    ),
    "verification_tokens": (
        "INSERT INTO verification_tokens (identifier, token, expires)"
        " VALUES ('who@example.com', :key, :at)"
    ),
    "rate_limits": (
        "INSERT INTO rate_limits (user_id, endpoint, request_count, window_start)"
        f" VALUES ('{USER_ID}', :key, 1, :at)"
    ),
    "error_logs": (
        "INSERT INTO error_logs (id, correlation_id, user_id, error_code, error_message,"
        f" request_path, request_method, created_at) VALUES (:key, 'c', '{USER_ID}', 'E', 'm',"
        " '/x', 'GET', :at)"
    ),
    "jobs": (
        "INSERT INTO mnw_jobs (id, kind, queue, payload, state, max_attempts, correlation_id,"
        " enqueued_by, enqueued_at, finished_at) VALUES (:key, 'platform.noop', 'maintenance',"
        " '{}', :state, 1, 'c', 'test',"
        " COALESCE(:at, timezone('UTC', now()) - interval '40 days') - interval '1 hour', :at)"
    ),
    "health_checks": (
        "INSERT INTO mnw_health_checks (service_name, kind, checked_at, result, status,"
        " consecutive_failures) VALUES (:key, 'http', :at, 'up', 'up', 0)"
    ),
    "notifications": (
        "INSERT INTO mnw_notifications (dedup_key, title, created_at) VALUES (:key, 't', :at)"
    ),
}

#: target -> the keys of its rows.
KEYS: dict[str, str] = {
    "session_tokens": "SELECT id FROM session_tokens",
    "sessions": "SELECT id FROM sessions",
    "verification_tokens": "SELECT token FROM verification_tokens",
    "rate_limits": "SELECT endpoint FROM rate_limits",
    "error_logs": "SELECT id FROM error_logs",
    "jobs": "SELECT id FROM mnw_jobs",
    "health_checks": "SELECT service_name FROM mnw_health_checks",
    "notifications": "SELECT dedup_key FROM mnw_notifications",
}


def insert(
    connection: Connection, target: str, key: str, at: dt.datetime | None, state: str = "succeeded"
) -> None:
    connection.execute(text(INSERT[target]), {"key": key, "at": at, "state": state})


def keys(connection: Connection, target: str) -> set[str]:
    return set(connection.execute(text(KEYS[target])).scalars())

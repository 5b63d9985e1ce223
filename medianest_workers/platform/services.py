"""The backend's `service_config` rows, as the workers use them: URL, decrypted key, options.

MediaNest's admin UI writes `service_config` (tests/contracts/medianest-interop.md section 1);
its `api_key` is encrypted with the shared ENCRYPTION_KEY. Families read a peer's endpoint here
(the requests family Overseerr's, downloads Plex's, health every enabled row) and decrypt the
key inside the worker only: the key is a SecretStr, never logged, never a task argument.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.orm import Session

from medianest_workers.db.models.medianest import ServiceConfig
from medianest_workers.db.session import session_scope
from medianest_workers.platform.errors import PlatformError
from medianest_workers.security import crypto


class ServiceConfigError(PlatformError):
    """A `service_config` row cannot be used (its key does not decrypt, say); names the row."""

    def __init__(self, service_name: str, message: str) -> None:
        super().__init__(f"service_config {service_name!r}: {message}")
        self.service_name = service_name


@dataclass(frozen=True)
class ServiceEndpoint:
    """One configured service: where it is, its key (decrypted) and its free-form options."""

    name: str
    url: str
    api_key: SecretStr | None
    enabled: bool
    config_data: dict[str, Any] = field(default_factory=dict)
    config_id: int | None = None


def endpoint_from_row(row: ServiceConfig) -> ServiceEndpoint:
    """The row with its key decrypted, or ServiceConfigError naming the row."""
    api_key: SecretStr | None = None
    if row.api_key:
        try:
            api_key = SecretStr(crypto.decrypt(row.api_key))
        except crypto.CryptoError as exc:
            raise ServiceConfigError(
                row.service_name, f"api_key cannot be decrypted ({type(exc).__name__})"
            ) from None
    config_data = row.config_data if isinstance(row.config_data, dict) else {}
    return ServiceEndpoint(
        name=row.service_name,
        url=row.service_url,
        api_key=api_key,
        enabled=row.enabled,
        config_data=config_data,
        config_id=row.id,
    )


def find_service_row(session: Session, name: str) -> ServiceConfig | None:
    """The `service_config` row named `name`, enabled or not."""
    return session.scalars(select(ServiceConfig).where(ServiceConfig.service_name == name)).first()


def load_service(name: str) -> ServiceEndpoint | None:
    """The enabled service named `name`, its key decrypted; None when absent or disabled."""
    with session_scope() as session:
        row = find_service_row(session, name)
        if row is None or not row.enabled:
            return None
        return endpoint_from_row(row)


def enabled_service_rows(session: Session) -> list[ServiceConfig]:
    """Every enabled `service_config` row, by name (decrypt each with endpoint_from_row)."""
    return list(
        session.scalars(
            select(ServiceConfig)
            .where(ServiceConfig.enabled.is_(True))
            .order_by(ServiceConfig.service_name)
        )
    )

"""The requests family's job kinds (thin @job wrappers over its service functions)."""

from __future__ import annotations

"""The maintenance family's job kinds: thin wrappers over its service modules."""

from __future__ import annotations

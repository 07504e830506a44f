"""Which MetaData describes which domain database."""

from __future__ import annotations

import importlib

from sqlalchemy import MetaData

from kit.settings import DOMAINS


def metadata_for(domain: str) -> MetaData:
    """The SQLAlchemy metadata of `domain`'s database (its models module, imported on demand)."""
    if domain not in DOMAINS:
        raise ValueError(f"unknown domain {domain!r}")
    module = importlib.import_module(f"domains.{domain}.models")
    metadata: MetaData = module.Base.metadata
    return metadata

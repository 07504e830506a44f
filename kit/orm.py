"""The declarative ground every `domains/<d>/models.py` stands on: one registry per database."""

from __future__ import annotations

from sqlalchemy.orm import registry

from kit.db import TYPE_ANNOTATION_MAP, new_metadata
from kit.inbox import dead_letter_table, inbox_table
from kit.outbox import outbox_table


def domain_registry(*, inbox: bool = False) -> registry:
    """A fresh registry for one domain database, set as its declarative base's `registry`.

    Its metadata has the platform's naming convention, the shared type map and the
    `domain_outbox_events` table every database carries; `inbox` adds `consumer_inbox` and
    `consumer_dead_letters` for a domain that consumes other domains' events. Fresh per call: one
    database, one metadata.
    """
    metadata = new_metadata()
    outbox_table(metadata)
    if inbox:
        inbox_table(metadata)
        dead_letter_table(metadata)
    return registry(metadata=metadata, type_annotation_map=TYPE_ANNOTATION_MAP)

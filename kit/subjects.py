"""Where domain events travel on NATS: the one definition of stream names and subjects.

Each producing domain has one JetStream stream, `DOMAIN_<DOMAIN>`, holding `<domain>.>`; an
event is published on `<domain>.<aggregate_type>.<event_type>`. The relay publishes with these
functions and consumers subscribe with them, so nobody spells a subject by hand.
"""

from __future__ import annotations

from dataclasses import dataclass


def stream_name(domain: str) -> str:
    """The JetStream stream of one domain's events."""
    return f"DOMAIN_{domain.upper()}"


def stream_subjects(domain: str) -> list[str]:
    """The subjects one domain's stream holds: everything the domain publishes."""
    return [f"{domain}.>"]


def subject(domain: str, aggregate_type: str, event_type: str) -> str:
    """`<domain>.<aggregate_type>.<event_type>`."""
    return f"{domain}.{aggregate_type}.{event_type}"


@dataclass(frozen=True)
class EventName:
    """One kind of published event: who publishes it, about which aggregate, under which type.

    `EventName("orders", "order", "order.created")` travels on `orders.order.order.created` in
    stream `DOMAIN_ORDERS`.
    """

    domain: str
    aggregate_type: str
    event_type: str

    @property
    def stream(self) -> str:
        """The stream the event is published to."""
        return stream_name(self.domain)

    @property
    def subject(self) -> str:
        """The subject the event is published on."""
        return subject(self.domain, self.aggregate_type, self.event_type)

    def __str__(self) -> str:
        return self.subject

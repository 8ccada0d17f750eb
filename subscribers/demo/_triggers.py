"""The demo's workflow triggers: they record what fired (for the report) and do nothing else."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

import msgspec

from ..workflow import WorkflowConsumer, WorkflowInvocation, WorkflowTrigger
from ._scenario import Published

__all__ = ["TRIGGERS", "DemoTriggers", "Fired"]

#: Event type -> what a workflow would start for it.
TRIGGERS: dict[str, str] = {
    "TICKET_CREATED": "start triage",
    "TICKET_CLOSED": "send satisfaction survey",
    "INVOICE_SENT": "schedule payment reminder",
    "APPOINTMENT_RESCHEDULED": "update the technician's route",
}


class Fired(msgspec.Struct, frozen=True, kw_only=True):
    """One trigger call."""

    trigger: str
    event_type: str
    event_id: str
    correlation_key: str | None
    variant: str


class DemoTriggers:
    """Registers one trigger per :data:`TRIGGERS` entry; only the demo tenant's events count."""

    def __init__(self, tenant: str) -> None:
        self.tenant = tenant
        self.fired: list[Fired] = []

    def _trigger(self, name: str) -> WorkflowTrigger:
        async def trigger(inv: WorkflowInvocation) -> None:
            if inv.event.tenant != self.tenant:
                return  # another producer's entry on a shared workflow stream
            self.fired.append(
                Fired(
                    trigger=name,
                    event_type=inv.event.event_type,
                    event_id=inv.event.event_id,
                    correlation_key=inv.correlation_key,
                    variant=inv.variant,
                )
            )

        return trigger

    def register(self, consumer: WorkflowConsumer) -> None:
        """Register every demo trigger on ``consumer``."""
        for event_type, name in TRIGGERS.items():
            consumer.register(event_type, self._trigger(name), name=f"demo:{name}")

    @staticmethod
    def expected(published: Iterable[Published]) -> Counter[str]:
        """Trigger name -> calls the burst should cause (every global event gets a workflow entry)."""
        return Counter(TRIGGERS[p.event_type] for p in published if p.event_type in TRIGGERS and "global" in p.channels)

    def counts(self) -> Counter[str]:
        """Trigger name -> calls so far."""
        return Counter(f.trigger for f in self.fired)

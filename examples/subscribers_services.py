"""Subscribers: the email, in-app notification and workflow services on one Redis.

Mail goes to SMTP when SMTP_HOST is set, else to .eml files in BUS_EMAIL_OUTBOX (default
./outbox). People come from BUS_DIRECTORY_FILE, default the demo's directory
(``subscribers/demo/directory.yaml``: run from the repository's root).
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import anyio

from bus import BusSettings, EventBus
from bus.testing import wait_drained
from publishers import publish_event
from subscribers import (
    EmailSubscriber,
    FileDirectory,
    FileSender,
    NotificationSubscriber,
    SmtpSender,
    SmtpSettings,
    WorkflowInvocation,
)
from subscribers.workflow import WorkflowConsumer, WorkflowConsumerSettings

outbox = Path(os.environ.get("BUS_EMAIL_OUTBOX", "outbox"))
TICKET = "71717171-0000-4000-8000-000000000008"  # a ticket of the directory: contact Carol, agent Alice
ALICE = "a1a1a1a1-0000-4000-8000-000000000002"
triaged = anyio.Event()


async def start_triage(inv: WorkflowInvocation) -> None:
    print("triage", inv.event.event_type, inv.correlation_key)
    triaged.set()


async def main() -> None:
    people = os.environ.get("BUS_DIRECTORY_FILE", "subscribers/demo/directory.yaml")
    directory = FileDirectory.from_path(people)  # or your own Directory
    if os.environ.get("SMTP_HOST"):
        smtp = SmtpSettings(
            host=os.environ["SMTP_HOST"],
            username=os.environ.get("SMTP_USERNAME"),
            password=os.environ.get("SMTP_PASSWORD"),
        )
        sender: SmtpSender | FileSender = SmtpSender(smtp)
    else:
        sender = FileSender(outbox)
    # Email and notifications consume in the reference's group (event-processors), standing in for its
    # services; the workflow consumer here uses a group of its own, so it takes nothing from the reference's
    # workflow runtime (WorkflowConsumer() alone joins workflow-runtime-v2: only to take over that work).
    email = EmailSubscriber(directory, sender)
    notifications = NotificationSubscriber(directory)
    workflow = WorkflowConsumer(WorkflowConsumerSettings(group="triage-example", start_id="$"))
    workflow.register("TICKET_CREATED", start_triage)  # async def start_triage(inv) -> None

    settings = BusSettings.from_env()
    payload = {"tenantId": str(uuid.uuid4()), "ticketId": TICKET, "userId": ALICE}
    async with EventBus(settings) as services, EventBus(settings) as flows, EventBus(settings) as producer:
        email.subscribe(services)  # several services can share one bus.run()
        notifications.subscribe(services)
        async with anyio.create_task_group() as tg:
            await tg.start(services.run)  # started once the consumer groups exist
            await tg.start(workflow.run, flows)
            await publish_event(producer, "TICKET_CREATED", payload)  # global + notifications + email copies
            with anyio.fail_after(20):
                await triaged.wait()
                await wait_drained(services)  # mailed and notified: nothing unread or pending
            tg.cancel_scope.cancel()


if __name__ == "__main__":
    outbox.mkdir(exist_ok=True)
    anyio.run(main)

"""The durable submission queue and its retry worker.

Entries are validated, hashed and committed to disk before they are sent;
a worker logs them through the verified clients, retries what failed
transiently, resolves duplicates and ambiguous writes by looking the entry
up, and keeps the verified receipt::

    from rekorkit.queue import QueueBackend, SubmissionQueue, SubmissionWorker

    backend = QueueBackend(url, api_version=1, public_key=pem)
    with SubmissionQueue("queue.sqlite") as queue:
        sid = queue.enqueue(proposed_entry, backend=backend)   # durable when it returns
        asyncio.run(SubmissionWorker(queue).run(once=True))
        receipt = queue.get(sid).receipt                      # verify_entry() it offline

Modules: :mod:`~rekorkit.queue.model` (value types),
:mod:`~rekorkit.queue.storage` (the storage protocol),
:mod:`~rekorkit.queue.sqlite` (the embedded backend),
:mod:`~rekorkit.queue.postgres` (the shared backend: a ``postgresql://`` URL),
:mod:`~rekorkit.queue.submissions`, :mod:`~rekorkit.queue.worker`,
:mod:`~rekorkit.queue.command` (``rekorkit queue``).
"""

from rekorkit.queue.model import (
    Attempt,
    Claim,
    Dead,
    DeadReason,
    Done,
    QueueBackend,
    QueueCounts,
    Retry,
    State,
    Submission,
    submission_id,
)
from rekorkit.queue.sqlite import SQLiteQueueStorage
from rekorkit.queue.storage import NewSubmission, QueueStorage
from rekorkit.queue.submissions import DEFAULT_MAX_REQUEST, SubmissionQueue, open_queue_storage
from rekorkit.queue.worker import BackendLimits, SubmissionWorker, WorkerReport, client_for

__all__ = [
    "DEFAULT_MAX_REQUEST",
    "Attempt",
    "BackendLimits",
    "Claim",
    "Dead",
    "DeadReason",
    "Done",
    "NewSubmission",
    "QueueBackend",
    "QueueCounts",
    "QueueStorage",
    "Retry",
    "SQLiteQueueStorage",
    "State",
    "Submission",
    "SubmissionQueue",
    "SubmissionWorker",
    "WorkerReport",
    "client_for",
    "open_queue_storage",
    "submission_id",
]

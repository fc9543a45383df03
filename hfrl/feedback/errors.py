"""What goes wrong with a feedback store, an archive or a label request, one class per way."""

from __future__ import annotations

from hfrl.errors import HfrlError


class FeedbackError(HfrlError):
    """A feedback store, archive or label request that cannot be used as asked."""


class UnknownIdError(FeedbackError):
    """A sample, query, item or label id that is not in the store."""


class QueryClosedError(FeedbackError):
    """Labels for a query that was cancelled."""


class StoreBusyError(FeedbackError):
    """The database stayed locked by another process for longer than the busy timeout."""


class ReadOnlyError(FeedbackError):
    """A write asked of a store opened read-only."""


class NameTakenError(FeedbackError):
    """A labeler name that already belongs to someone else (another session, or labels in the store)."""

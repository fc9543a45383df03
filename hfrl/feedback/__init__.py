"""Human feedback: the SQLite feedback store, the labelling page, the online queue.

* :class:`FeedbackStore`: samples, queries and labels in one SQLite file; aggregation, tensors and
  portable archives.
* :class:`FeedbackQueue`: what trainers use to ask for labels and wait for them.
* :mod:`hfrl.feedback.server`: the labelling page (``hfrl label serve``).
* :func:`simulate`: the synthetic labeler on the same path (``hfrl label simulate``).
* :mod:`hfrl.feedback.labels`: label words and the one place they become numbers.
"""

from hfrl.feedback.labels import (
    BAD,
    GOOD,
    HERO,
    LEFT,
    PAIR,
    RIGHT,
    SINGLE,
    SKIP,
    TIE,
    preference_value,
    rating_value,
)
from hfrl.feedback.queue import FeedbackQueue, FeedbackTimeoutError
from hfrl.feedback.simulate import SimulationReport, simulate
from hfrl.feedback.store import (
    DEFAULT_DB_NAME,
    SCHEMA_VERSION,
    Batch,
    FeedbackDataset,
    FeedbackError,
    FeedbackStore,
    HeroBatch,
    ImportSummary,
    ItemRecord,
    LabelInput,
    LabelRecord,
    PairSummary,
    PairTensors,
    Progress,
    QueryClosedError,
    QueryRecord,
    QueryResult,
    RatingSummary,
    RatingTensors,
    SampleRecord,
    StoreBusyError,
    SubmitResult,
    UnknownIdError,
    default_db_path,
)

__all__ = [
    "BAD",
    "DEFAULT_DB_NAME",
    "GOOD",
    "HERO",
    "LEFT",
    "PAIR",
    "RIGHT",
    "SCHEMA_VERSION",
    "SINGLE",
    "SKIP",
    "TIE",
    "Batch",
    "FeedbackDataset",
    "FeedbackError",
    "FeedbackQueue",
    "FeedbackStore",
    "FeedbackTimeoutError",
    "HeroBatch",
    "ImportSummary",
    "ItemRecord",
    "LabelInput",
    "LabelRecord",
    "PairSummary",
    "PairTensors",
    "Progress",
    "QueryClosedError",
    "QueryRecord",
    "QueryResult",
    "RatingSummary",
    "RatingTensors",
    "SampleRecord",
    "SimulationReport",
    "StoreBusyError",
    "SubmitResult",
    "UnknownIdError",
    "default_db_path",
    "preference_value",
    "rating_value",
    "simulate",
]

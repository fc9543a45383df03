"""``hfrl.feedback.store`` puts the store's modules together and still offers every name it offered as one file."""

from __future__ import annotations

import inspect

from hfrl.feedback import store as store_module
from hfrl.feedback.store import FeedbackStore

PUBLIC_NAMES = [
    "APPLICATION_ID",
    "ARCHIVE_FORMAT",
    "ARCHIVE_VERSION",
    "Batch",
    "CHECKPOINT_INTERVAL",
    "DB_SUFFIXES",
    "DEFAULT_DB_NAME",
    "DEFAULT_LEASE_SECONDS",
    "FeedbackDataset",
    "FeedbackError",
    "FeedbackStore",
    "HeroBatch",
    "ImportSummary",
    "ItemRecord",
    "ItemResult",
    "LabelInput",
    "LabelRecord",
    "MAX_LABELER_LENGTH",
    "MIGRATIONS",
    "NameTakenError",
    "PairSummary",
    "PairTensors",
    "Progress",
    "QueryClosedError",
    "QueryRecord",
    "QueryResult",
    "RatingSummary",
    "RatingTensors",
    "ReadOnlyError",
    "SAMPLE_CHUNK",
    "SCHEMA_VERSION",
    "STATUSES",
    "SampleRecord",
    "StoreBusyError",
    "SubmitResult",
    "UnknownIdError",
    "check_archive",
    "default_db_path",
    "inspect_database",
    "resolve_db_path",
]
"""What ``from hfrl.feedback.store import ...`` could import when the store was one module."""

METHODS = [
    "add_query",
    "add_samples",
    "cancel_query",
    "clean_images",
    "close",
    "create_query",
    "create_session",
    "export_archive",
    "hero_batches",
    "images",
    "import_archive",
    "item",
    "items",
    "label_ids",
    "labels",
    "lease_batch",
    "leases",
    "next_batch",
    "pair_summaries",
    "pair_tensors",
    "progress",
    "query",
    "query_result",
    "query_status",
    "queries",
    "rating_summaries",
    "rating_tensors",
    "release_leases",
    "renew_leases",
    "sample",
    "sample_arrays",
    "sample_classes",
    "schema_version",
    "session_labeler",
    "submit_labels",
    "undo",
]


def test_every_public_name_is_still_importable_from_store() -> None:
    assert sorted(store_module.__all__) == sorted(PUBLIC_NAMES)
    for name in PUBLIC_NAMES:
        assert getattr(store_module, name) is not None


def test_the_store_keeps_every_public_method() -> None:
    public = {name for name, _ in inspect.getmembers(FeedbackStore) if not name.startswith("_")}
    assert public == set(METHODS)

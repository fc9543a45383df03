"""The labelling page's JSON API: request and response models (strict types, so a wrong answer is a 422, not a guess)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StringConstraints

from hfrl.feedback.guard import MAX_LABELS_PER_REQUEST

LabelerId = Annotated[
    str,
    StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.@+-]*$"),
]
LabelWord = Literal["good", "bad", "skip", "left", "right", "tie"]
KindName = Literal["single", "pair", "hero"]


class LabelIn(BaseModel):
    """One answer. Types are strict: ``true`` or ``"7"`` is not an item id."""

    model_config = ConfigDict(extra="forbid", strict=True)
    item_id: StrictInt = Field(ge=1, le=2**53, description="Item id from /api/next.")
    value: LabelWord = Field(description="good/bad/skip for single and hero items; left/right/tie for pairs.")
    best: StrictBool = Field(default=False, description="Best of its batch (hero items only).")
    response_ms: StrictFloat | StrictInt | None = Field(
        default=None, ge=0, le=86_400_000, allow_inf_nan=False, description="Time the labeler took."
    )


class SubmitIn(BaseModel):
    """The session's labeler's answers, stored together or not at all (the labeler is the session's)."""

    model_config = ConfigDict(extra="forbid", strict=True)
    labels: list[LabelIn] = Field(min_length=1, max_length=MAX_LABELS_PER_REQUEST)


class SessionIn(BaseModel):
    """The labeler name to claim."""

    model_config = ConfigDict(extra="forbid", strict=True)
    labeler: LabelerId


class SessionOut(BaseModel):
    """A labeler session: send ``session`` in the ``X-Hfrl-Session`` header of every labelling request."""

    labeler: str
    session: str | None = None
    lease_seconds: float


class SubmitOut(BaseModel):
    """Acknowledgement: these labels are on disk."""

    acknowledged: int
    label_ids: list[int]
    completed_queries: list[int]


class UndoIn(BaseModel):
    """Undo takes no fields: it acts for the session's labeler only."""

    model_config = ConfigDict(extra="forbid", strict=True)


class RenewOut(BaseModel):
    """Leases kept alive."""

    renewed: int


class LabelOut(BaseModel):
    """A stored label."""

    id: int
    item_id: int
    labeler: str
    value: str
    best: bool


class UndoOut(BaseModel):
    """The retracted label, or null when there was nothing to undo."""

    undone: LabelOut | None


class ItemOut(BaseModel):
    """An item to label; images are PNG data URLs (``output`` for single/hero, ``left``/``right`` for pairs).

    ``input`` is null for a generated sample, which has no input: its stored input is the sample itself.
    """

    id: int
    query_id: int
    position: int
    input: str | None
    output: str | None = None
    left: str | None = None
    right: str | None = None


class BatchOut(BaseModel):
    """What to show next; ``kind`` is null and ``items`` empty when nothing is pending."""

    kind: KindName | None
    items: list[ItemOut]
    note: str | None = None
    """The trainer's note on the items' query (e.g. what makes a sample good), when they share one."""


class ProgressOut(BaseModel):
    """Progress counts."""

    labelled: int
    labels_total: int
    pending_items: int
    pending_queries: int
    labels_per_minute: float
    labelers: int


class QueryOut(BaseModel):
    """Status of a query."""

    id: int
    kind: KindName
    status: Literal["pending", "done", "cancelled"]
    size: int
    labels_needed: int
    answered_items: int


class HealthOut(BaseModel):
    """Server status."""

    status: Literal["ok"]
    version: str
    schema_version: int
    token_required: bool


class ErrorOut(BaseModel):
    """An error."""

    detail: Any

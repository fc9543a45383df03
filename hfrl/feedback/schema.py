"""The feedback store's tables, each column declared once.

Every column is declared here with its name, SQL type, constraints, the table it refers to and its type
in a portable archive. Everything else is derived from these declarations: the ``CREATE TABLE`` scripts
of the migrations (:data:`MIGRATIONS`), the ``INSERT`` column lists, and the columns, ``SELECT`` and
Arrow types of the archive tables (see :mod:`hfrl.feedback.archive`).

The schema is an on-disk format: a change here is a new :data:`SCHEMA_VERSION`, with the new tables,
columns and indexes marked ``since`` that version, so that older files are migrated. The generated SQL
keeps the layout of the hand-written scripts of schemas 1 and 2, so the text SQLite keeps in
``sqlite_master`` is the same in files written before and after the declarations replaced them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

SCHEMA_VERSION = 2
"""Schema version this hfrl writes (``PRAGMA user_version``)."""
APPLICATION_ID = 0x6866726C
"""``PRAGMA application_id`` of an hfrl feedback store (the bytes ``hfrl``)."""

_ARROW_TYPES = {"INTEGER": "int64", "REAL": "float64", "TEXT": "string", "BLOB": "binary"}
"""Archive type of a column of each SQL type, unless the column names another."""


@dataclass(frozen=True)
class Column:
    """One column of a table.

    Attributes:
        name: Column name.
        sql: SQL type (``INTEGER``, ``REAL``, ``TEXT`` or ``BLOB``).
        constraints: Column constraints as SQL (``NOT NULL``, ``DEFAULT``, ``CHECK``...).
        references: Table whose ``id`` this column holds (a foreign key). In an archive, where rows
            refer to each other by ``uid``, the column becomes ``<name without _id>_uid``.
        arrow: Its ``pyarrow`` type name in an archive; ``None`` for the usual one of its SQL type.
        since: Schema version that added it to an existing table (``0``: created with its table).
    """

    name: str
    sql: str
    constraints: str = ""
    references: str | None = None
    arrow: str | None = None
    since: int = 0

    @property
    def definition(self) -> str:
        """The column definition of ``CREATE TABLE`` and ``ALTER TABLE ... ADD COLUMN``."""
        parts = [self.name, self.sql, self.constraints]
        if self.references is not None:
            parts.append(f"REFERENCES {self.references} (id)")
        return " ".join(p for p in parts if p)

    @property
    def not_null(self) -> bool:
        """Whether it must hold a value."""
        return "NOT NULL" in self.constraints

    @property
    def is_rowid(self) -> bool:
        """Whether it is the ``INTEGER PRIMARY KEY`` (the row id SQLite assigns)."""
        return self.sql == "INTEGER" and self.constraints == "PRIMARY KEY"

    @property
    def archive_name(self) -> str:
        """Its name in an archive: a foreign key refers to the ``uid`` of its row there."""
        return self.name.removesuffix("_id") + "_uid" if self.references else self.name

    @property
    def archive_type(self) -> str:
        """Its ``pyarrow`` type name in an archive."""
        if self.references:
            return "string"
        return self.arrow or _ARROW_TYPES[self.sql]


@dataclass(frozen=True)
class Index:
    """An index on a table.

    Attributes:
        name: Index name.
        columns: Indexed columns, in order.
        since: Schema version that added it (``0``: created with its table).
    """

    name: str
    columns: tuple[str, ...]
    since: int = 0


@dataclass(frozen=True)
class Table:
    """One table.

    Attributes:
        name: Table name.
        since: Schema version that created it.
        columns: Its columns, in order.
        constraints: Table constraints as SQL (``UNIQUE (...)``, ``PRIMARY KEY (...)``).
        indexes: Its indexes.
        archived: Whether portable archives carry it; archived tables have a ``uid`` column.
    """

    name: str
    since: int
    columns: tuple[Column, ...]
    constraints: tuple[str, ...] = ()
    indexes: tuple[Index, ...] = ()
    archived: bool = False

    def column(self, name: str) -> Column:
        """The column called ``name``."""
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(f"{self.name} has no column {name!r}")

    def columns_at(self, version: int) -> tuple[Column, ...]:
        """The columns the table has at schema ``version``."""
        return tuple(c for c in self.columns if c.since <= version)

    @property
    def insert_columns(self) -> tuple[Column, ...]:
        """Every column a row is inserted with: all but the row id, which SQLite assigns."""
        return tuple(c for c in self.columns if not c.is_rowid)

    def create_sql(self, version: int = SCHEMA_VERSION) -> str:
        """``CREATE TABLE`` as of schema ``version``, laid out as the scripts of schemas 1 and 2 were."""
        lines = [c.definition for c in self.columns_at(version)] + list(self.constraints)
        body = ",\n".join(f"        {line}" for line in lines)
        return f"CREATE TABLE {self.name} (\n{body}\n    )"

    def insert_sql(self, columns: Sequence[str] | None = None) -> str:
        """``INSERT INTO`` of ``columns`` (default: :attr:`insert_columns`), with ``?`` placeholders."""
        names = [c.name for c in self.insert_columns] if columns is None else list(columns)
        for name in names:
            self.column(name)
        marks = ", ".join("?" * len(names))
        return f"INSERT INTO {self.name} ({', '.join(names)}) VALUES ({marks})"

    @property
    def archive_columns(self) -> tuple[Column, ...]:
        """The columns an archive carries, in order: all but the row id (rows refer to ``uid`` there)."""
        return self.insert_columns

    def archive_select(self, null: Sequence[str] = ()) -> str:
        """``SELECT`` of this table's archive columns, foreign keys replaced by the ``uid`` they refer to.

        Args:
            null: Columns exported as ``NULL`` (e.g. ``clean`` when clean images are left out).
        """
        selected, joins = [], []
        for col in self.archive_columns:
            if col.name in null:
                selected.append(f"NULL AS {col.archive_name}")
            elif col.references:
                alias = f"r{len(joins)}"
                join = "JOIN" if col.not_null else "LEFT JOIN"
                joins.append(f" {join} {col.references} {alias} ON {alias}.id = t.{col.name}")
                selected.append(f"{alias}.uid AS {col.archive_name}")
            else:
                selected.append(f"t.{col.name}")
        return f"SELECT {', '.join(selected)} FROM {self.name} t{''.join(joins)} ORDER BY t.id"

    def index_sql(self, index: Index) -> str:
        """``CREATE INDEX`` of one of its indexes."""
        return f"CREATE INDEX {index.name} ON {self.name} ({', '.join(index.columns)})"


SAMPLES = Table(
    "samples",
    since=1,
    columns=(
        Column("id", "INTEGER", "PRIMARY KEY"),
        Column("uid", "TEXT", "NOT NULL UNIQUE"),
        Column("height", "INTEGER", "NOT NULL CHECK (height > 0)", arrow="int32"),
        Column("width", "INTEGER", "NOT NULL CHECK (width > 0)", arrow="int32"),
        Column("input", "BLOB", "NOT NULL"),  # (H, W) float32 bytes, as every image
        Column("output", "BLOB", "NOT NULL"),
        Column("clean", "BLOB"),
        Column("checkpoint", "TEXT"),
        Column("round", "INTEGER"),
        Column("domain", "TEXT"),
        Column("class", "INTEGER"),
        Column("meta", "TEXT", "NOT NULL DEFAULT '{}'"),
        Column("created", "REAL", "NOT NULL"),
    ),
    archived=True,
)
QUERIES = Table(
    "queries",
    since=1,
    columns=(
        Column("id", "INTEGER", "PRIMARY KEY"),
        Column("uid", "TEXT", "NOT NULL UNIQUE"),
        Column("kind", "TEXT", "NOT NULL CHECK (kind IN ('single', 'pair', 'hero'))"),
        Column(
            "status",
            "TEXT",
            "NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'done', 'cancelled'))",
        ),
        Column("labels_needed", "INTEGER", "NOT NULL DEFAULT 1 CHECK (labels_needed >= 1)"),
        Column("note", "TEXT"),
        Column("created", "REAL", "NOT NULL"),
        Column("completed", "REAL"),
    ),
    indexes=(Index("queries_status", ("status", "id")),),
    archived=True,
)
ITEMS = Table(
    "items",
    since=1,
    columns=(
        Column("id", "INTEGER", "PRIMARY KEY"),
        Column("uid", "TEXT", "NOT NULL UNIQUE"),
        Column("query_id", "INTEGER", "NOT NULL", references="queries"),
        Column("position", "INTEGER", "NOT NULL CHECK (position >= 0)"),
        Column("sample_id", "INTEGER", "NOT NULL", references="samples"),
        Column("other_id", "INTEGER", references="samples"),
    ),
    constraints=("UNIQUE (query_id, position)",),
    indexes=(Index("items_sample", ("sample_id",)),),
    archived=True,
)
LABELS = Table(
    "labels",
    since=1,
    columns=(
        Column("id", "INTEGER", "PRIMARY KEY"),
        Column("uid", "TEXT", "NOT NULL UNIQUE"),
        Column("item_id", "INTEGER", "NOT NULL", references="items"),
        Column("labeler", "TEXT", "NOT NULL"),
        Column("value", "TEXT", "NOT NULL CHECK (value IN ('good', 'bad', 'skip', 'left', 'right', 'tie'))"),
        Column("best", "INTEGER", "NOT NULL DEFAULT 0 CHECK (best IN (0, 1))"),
        Column("response_ms", "REAL"),
        Column("created", "REAL", "NOT NULL"),
        Column("retracted", "REAL"),
    ),
    indexes=(Index("labels_item", ("item_id", "labeler", "id")), Index("labels_labeler", ("labeler", "id"))),
    archived=True,
)
LABELERS = Table(
    "labelers",
    since=2,
    columns=(
        Column("name", "TEXT", "PRIMARY KEY"),
        Column("token_hash", "TEXT", "NOT NULL UNIQUE"),  # SHA-256 of the session token
        Column("created", "REAL", "NOT NULL"),
    ),
)
LEASES = Table(
    "leases",
    since=2,
    columns=(
        Column("item_id", "INTEGER", "NOT NULL", references="items"),
        Column("labeler", "TEXT", "NOT NULL"),
        Column("expires", "REAL", "NOT NULL"),
    ),
    constraints=("PRIMARY KEY (item_id, labeler)",),
    indexes=(Index("leases_labeler", ("labeler",)),),
)

TABLES: dict[str, Table] = {t.name: t for t in (SAMPLES, QUERIES, ITEMS, LABELS, LABELERS, LEASES)}
"""Every table of the current schema, in creation order."""
ARCHIVE_TABLES: tuple[Table, ...] = tuple(t for t in TABLES.values() if t.archived)
"""The tables a portable archive carries, in the order they are merged (referred-to tables first)."""


def migration_statements(version: int) -> list[str]:
    """The SQL statements that upgrade a store from schema ``version - 1`` to ``version``."""
    statements = []
    for table in TABLES.values():
        if table.since == version:
            statements.append(table.create_sql(version))
        elif table.since < version:
            statements += [
                f"ALTER TABLE {table.name} ADD COLUMN {c.definition}"
                for c in table.columns
                if c.since == version
            ]
        statements += [table.index_sql(i) for i in table.indexes if (i.since or table.since) == version]
    return statements


MIGRATIONS: list[str] = [";\n".join(migration_statements(v + 1)) for v in range(SCHEMA_VERSION)]
"""``MIGRATIONS[v]`` is the SQL script that upgrades a store from schema ``v`` to ``v + 1``."""

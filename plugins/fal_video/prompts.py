"""Read a prompt CSV into validated :class:`PromptRow` values (issue 4, fault scenarios C1 and C3).

One call, :func:`read_prompts`, turns a file into a :class:`PromptTable`: every data row in file
order, valid or rejected with a reason that names the file, the line and the field. Problems with
the file as a whole (missing, not UTF-8, malformed, no ``prompt`` column, one id used for two
different prompts) raise :class:`PromptFileError` with one clear sentence instead.

Columns (names are trimmed and case-insensitive):

- ``prompt`` (required); ``id`` (optional: else ``"r"`` + 12 hex digits hashed from the endpoint and
  the arguments, so identical content gets the same id); ``endpoint`` or ``model`` (optional: else
  ``default_endpoint``).
- A column that is an input field of the row's model (catalog ``input_names``) is an argument for
  fal, coerced with the catalog's types and rules. Every cell is read as a string; an empty cell
  means "not given", so the default argument or the model's own default applies.
- Every other column is metadata for the manifest (only non-empty cells are kept). A column such as
  ``aspect_ratio`` is an argument for rows whose model has that field and metadata for the others.

``default_arguments`` (the DAG params) apply under each row's own cells, and only for keys that are
input fields of the row's model, so one set of defaults can serve a CSV that mixes models. They are
treated exactly like CSV cells (``5`` and ``"5"`` are the same default). For an endpoint the catalog
does not know, nothing can be checked: it receives the prompt, every default argument as given, and
the cells of columns named like an input of any catalogued model (``seed``, ``duration``, ...) as
strings; other columns stay metadata.

Parsing uses the csv module because it reports where each record starts even when a quoted prompt
spans several lines; pandas does the column work (one check per distinct value, not per row).
pandas and Airflow are imported inside functions: a DAG file imports this module and must parse fast.
"""

from __future__ import annotations

import csv
import gc
import hashlib
import io
import random
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import repeat
from pathlib import Path
from typing import Any

from fal_video.catalog import MODELS, ModelSpec, app_path, get_model
from fal_video.records import PromptRow

RESERVED_COLUMNS = frozenset({"id", "prompt", "endpoint", "model"})
# Column names sent to an uncatalogued endpoint: the input vocabulary of every known model.
KNOWN_INPUT_NAMES = frozenset().union(*(spec.input_names for spec in MODELS.values())) - RESERVED_COLUMNS
STRICT_ERROR_CAP = 20  # invalid rows listed in a PromptValidationError message

_NOT_GIVEN: Any = object()


class PromptError(ValueError):
    """Base class: a prompt file cannot be used as it is. The message says why in a sentence or two."""


class PromptFileError(PromptError):
    """The file as a whole is unusable: missing, not UTF-8, malformed CSV, bad header, conflicting ids."""

    def __init__(self, source: str, message: str) -> None:
        super().__init__(message)
        self.source = source


class PromptValidationError(PromptError):
    """Strict mode found invalid rows; raised before anything is submitted. ``rows`` holds all of them."""

    def __init__(self, source: str, rows: list[PromptRow], total: int) -> None:
        listed = "\n".join(f"  {row.error}" for row in rows[:STRICT_ERROR_CAP])
        more = f"\n  ... and {len(rows) - STRICT_ERROR_CAP} more" if len(rows) > STRICT_ERROR_CAP else ""
        super().__init__(
            f"{source}: {len(rows)} of {total} rows are invalid and strict mode is on, so nothing was "
            f"submitted.\n{listed}{more}"
        )
        self.source = source
        self.rows = rows


@dataclass
class PromptTable:
    """The rows read from one prompt file, valid and rejected, in file order."""

    source: str
    rows: list[PromptRow] = field(default_factory=list)
    note: str | None = None  # why there are no rows, or which rows were picked (limit / sample)
    columns: list[str] = field(default_factory=list)  # normalised header, in file order
    rows_in_file: int = 0  # data rows in the file, before limit and sample

    @property
    def valid(self) -> list[PromptRow]:
        return [row for row in self.rows if row.error is None]

    @property
    def rejected(self) -> list[PromptRow]:
        return [row for row in self.rows if row.error is not None]

    def __len__(self) -> int:
        return len(self.rows)


def read_prompts(
    source: str,
    *,
    default_endpoint: str,
    default_arguments: dict[str, Any] | None = None,
    limit: int | None = None,
    sample: int | None = None,
    sample_seed: int = 0,
    strict: bool = False,
) -> PromptTable:
    """Read and validate the prompt CSV at ``source`` (a local path or an ``ObjectStoragePath`` URI).

    ``limit`` keeps the first N data rows; ``sample`` then picks N of them at random, reproducibly for a
    given ``sample_seed``, kept in file order. Only the picked rows are validated. Invalid rows are
    returned with ``error`` set unless ``strict``, which raises :class:`PromptValidationError` instead.
    """
    source = str(source)
    for name, value in (("limit", limit), ("sample", sample)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise PromptError(f"{name} must be a positive whole number or None, not {value!r}.")

    text = _decode(_read_bytes(source), source)
    if not text.strip():
        return PromptTable(source, note="empty file: no rows" if not text else "only blank lines: no rows")
    with _gc_paused():
        columns, records = _parse(text, source)
    total = len(records)
    if not records:
        return PromptTable(source, note="header only: no data rows", columns=columns)

    picked = records[:limit] if limit is not None else records
    note = f"first {len(picked)} of {total} rows (limit {limit})" if len(picked) < total else None
    if sample is not None and sample < len(picked):
        chosen = sorted(random.Random(sample_seed).sample(range(len(picked)), sample))
        picked = [picked[i] for i in chosen]
        note = f"random sample of {sample} of {total} rows (seed {sample_seed})"

    with _gc_paused():
        rows = _validate(picked, columns, source, default_endpoint.strip().strip("/"), default_arguments or {})
    _check_ids(rows, source)
    rejected = [row for row in rows if row.error is not None]
    if strict and rejected:
        raise PromptValidationError(source, rejected, len(rows))
    return PromptTable(source, rows, note, columns, total)


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while building many small objects (none of them cycles).

    Otherwise it rescans the growing row list over and over: about a third of the time for 100,000 rows.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


# --- bytes and text ----------------------------------------------------------------------------


def _read_bytes(source: str) -> bytes:
    """The whole file, read once. URIs go through Airflow's ObjectStoragePath; plain paths need no Airflow."""
    try:
        if "://" in source:
            from airflow.sdk import ObjectStoragePath

            return ObjectStoragePath(source).read_bytes()
        return Path(source).expanduser().read_bytes()
    except FileNotFoundError:
        raise PromptFileError(source, f"prompt file {source} does not exist.") from None
    except IsADirectoryError:
        raise PromptFileError(source, f"prompt file {source} is a directory, not a CSV file.") from None
    except (OSError, ValueError, ImportError) as exc:
        raise PromptFileError(source, f"cannot read prompt file {source}: {exc}") from exc


def _decode(data: bytes, source: str) -> str:
    """UTF-8 with or without BOM; anything else is one error naming the first bad byte (C1)."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise PromptFileError(source, f"{source} is UTF-16 text; save it as UTF-8 (with or without BOM).")
    skip = 3 if data.startswith(b"\xef\xbb\xbf") else 0
    try:
        return data[skip:].decode("utf-8")
    except UnicodeDecodeError as exc:
        offset = skip + exc.start
        line = data.count(b"\n", 0, offset) + 1
        column = offset - (data.rfind(b"\n", 0, offset) + 1) + 1
        raise PromptFileError(
            source,
            f"{source} is not valid UTF-8: byte 0x{data[offset]:02x} at offset {offset} (line {line}, "
            f"column {column}) cannot be decoded. Save the file as UTF-8 (with or without BOM).",
        ) from None


# --- CSV structure -----------------------------------------------------------------------------

_Record = tuple[int, list[str], str | None]  # (line where the record starts, trimmed cells, width problem)


def _parse(text: str, source: str) -> tuple[list[str], list[_Record]]:
    """The normalised header and the non-blank data records, each with the physical line it starts on."""
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    header: list[str] = []
    header_line = 0
    records: list[_Record] = []
    next_line = 1  # the physical line the next record starts on
    try:
        for raw in reader:
            line, next_line = next_line, reader.line_num + 1
            cells = [cell.strip() for cell in raw]
            if not any(cells):
                continue  # blank line, or only separators
            if not header:
                header, header_line = cells, line
                continue
            problem = None
            if len(cells) > len(header):
                if any(cells[len(header) :]):
                    problem = f"the row has {len(cells)} values but the header has {len(header)} columns"
                cells = cells[: len(header)]
            elif len(cells) < len(header):
                cells += [""] * (len(header) - len(cells))
            records.append((line, cells, problem))
    except csv.Error as exc:
        raise PromptFileError(
            source, f"{source} line {next_line}: malformed CSV ({exc}); look for an unclosed or stray quote."
        ) from None
    return _normalise_header(header, header_line, source), records


def _normalise_header(header: list[str], line: int, source: str) -> list[str]:
    columns = [name.lower() or f"column_{i + 1}" for i, name in enumerate(header)]
    for i, name in enumerate(columns):
        if name in columns[:i]:
            raise PromptFileError(
                source, f"{source} line {line}: column {name!r} appears twice (column names ignore case)."
            )
    if "prompt" not in columns:
        hint = ""
        if len(columns) == 1 and any(sep in columns[0] for sep in ";\t|"):
            hint = " The file seems to use another separator: columns must be separated by commas."
        found = ", ".join(repr(name) for name in columns)
        raise PromptFileError(source, f"{source} has no 'prompt' column (found {found}).{hint}")
    if "endpoint" in columns and "model" in columns:
        raise PromptFileError(source, f"{source} has both an 'endpoint' and a 'model' column; keep one.")
    return columns


# --- validation --------------------------------------------------------------------------------

# One checked cell: (value to send, or _NOT_GIVEN; the field if it is invalid; the reason, or None).
_Cell = tuple[Any, str | None, str | None]


def _validate(
    records: list[_Record],
    columns: list[str],
    source: str,
    default_endpoint: str,
    default_arguments: dict[str, Any],
) -> list[PromptRow]:
    """Validate the records group by endpoint, checking each distinct cell value once (not per row)."""
    import numpy as np
    import pandas as pd

    frame = pd.DataFrame([cells for _, cells, _ in records], columns=columns, dtype=object)
    endpoint_column = "endpoint" if "endpoint" in columns else "model" if "model" in columns else None
    if endpoint_column:
        endpoints = frame[endpoint_column].str.strip("/").replace("", default_endpoint)
    else:
        endpoints = pd.Series(default_endpoint, index=frame.index, dtype=object)
    ids = frame["id"].tolist() if "id" in columns else [""] * len(records)
    name = source.rstrip("/").rsplit("/", 1)[-1] or source

    rows: list[PromptRow] = [None] * len(records)  # type: ignore[list-item]  # all filled below
    codes, uniques = pd.factorize(endpoints)
    for code, endpoint in enumerate(uniques):
        positions = np.flatnonzero(codes == code).tolist()
        part = frame.iloc[positions]
        group = _Group(endpoint, columns, default_arguments, endpoint_column or "endpoint")
        keys, cells_by_key = group.argument_cells(part)
        metadata_columns = group.metadata_columns
        metadata_values = [part[c].tolist() for c in metadata_columns]
        metadata_rows = zip(*metadata_values, strict=True) if metadata_values else repeat(())
        # zip(strict=False): constant cells and empty metadata are endless repeat() iterators.
        for position, cells, metadata in zip(positions, zip(*cells_by_key, strict=False), metadata_rows, strict=False):
            line, _, width_problem = records[position]
            arguments = {key: cell[0] for key, cell in zip(keys, cells, strict=True) if cell[0] is not _NOT_GIVEN}
            issues = [(cell[1], cell[2]) for cell in cells if cell[2]]
            if width_problem:
                issues.insert(0, (None, width_problem))
            if group.endpoint_issue:
                issues.insert(0, group.endpoint_issue)
            rows[position] = PromptRow(
                row_id=ids[position] or _derived_id(endpoint, arguments),
                source=source,
                line=line,
                prompt=arguments.get("prompt", ""),
                endpoint=endpoint,
                arguments=arguments,
                metadata={c: v for c, v in zip(metadata_columns, metadata, strict=True) if v},
                error=(f"{name} line {line}, " + "; ".join(text for _, text in issues)) if issues else None,
                error_field=next((f for f, _ in issues if f), None),
            )
    return rows


class _Group:
    """How the rows of one endpoint are read: which columns are arguments, their defaults and checks."""

    def __init__(self, endpoint: str, columns: list[str], defaults: dict[str, Any], endpoint_column: str) -> None:
        self.spec: ModelSpec | None = get_model(endpoint) if endpoint else None
        self.endpoint_issue = _check_endpoint(endpoint, endpoint_column)
        defaults = {k: v for k, v in defaults.items() if k != "prompt" and v is not None}
        if self.spec is None:
            inputs = KNOWN_INPUT_NAMES | defaults.keys()
            self.defaults = defaults  # passed as given: nothing to check them against
        else:
            inputs = self.spec.input_names
            self.defaults = {k: _as_cell(v) for k, v in defaults.items() if k in inputs}
        self.argument_columns = ["prompt"] + [c for c in columns if c in inputs and c not in RESERVED_COLUMNS]
        self.metadata_columns = [c for c in columns if c not in RESERVED_COLUMNS and c not in inputs]

    def argument_cells(self, part: Any) -> tuple[list[str], list[Iterable[_Cell]]]:
        """The argument keys and, for each, the checked cell of every row of ``part`` (a DataFrame slice)."""
        import pandas as pd

        keys: list[str] = []
        cells: list[Iterable[_Cell]] = []
        for column in self.argument_columns:
            codes, uniques = pd.factorize(part[column])
            checked = [self._cell(column, value) for value in uniques]
            keys.append(column)
            cells.append([checked[code] for code in codes.tolist()])
        # Defaults and required fields that no column of the file provides: the same for every row.
        for key in self.defaults:
            if key not in self.argument_columns:
                keys.append(key)
                cells.append(repeat(self._cell(key, "")))
        for spec in self.spec.fields if self.spec else ():
            if spec.required and spec.name not in keys:
                keys.append(spec.name)
                cells.append(repeat((_NOT_GIVEN, spec.name, f"field '{spec.name}': Field required")))
        return keys, cells

    def _cell(self, key: str, text: str) -> _Cell:
        """Check one distinct cell value; an empty cell means "not given", so the default (if any) applies."""
        from_default = text == "" and key in self.defaults
        value = self.defaults[key] if from_default else text
        if isinstance(value, str) and value == "":
            if key == "prompt" or (self.spec and self.spec.field_by_name[key].required):
                return _NOT_GIVEN, key, f"field '{key}': Field required"
            return _NOT_GIVEN, None, None
        if self.spec is None:
            return value, None, None
        coerced, issue = self.spec.field_by_name[key].coerce(value)
        if issue is None:
            return coerced, None, None
        origin = " from default_arguments" if from_default else ""
        return value, key, f"field '{key}': {issue.msg} (got {value!r}{origin})"


def _check_endpoint(endpoint: str, column: str) -> tuple[str, str] | None:
    if not endpoint:
        return column, f"field '{column}': the row names no endpoint and no default endpoint was given"
    try:
        app_path(endpoint)
    except ValueError:
        return column, f"field '{column}': {endpoint!r} is not a fal endpoint id such as 'fal-ai/mochi-v1'"
    return None


def _as_cell(value: Any) -> Any:
    """A default argument as if it were a CSV cell, so ``5`` and ``"5"`` behave the same."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return value.strip() if isinstance(value, str) else value


def _derived_id(endpoint: str, arguments: dict[str, Any]) -> str:
    """``"r"`` + 12 hex digits naming the content, so identical rows get the same id in any file.

    Not the job key's canonical JSON: this runs for every row without an id and costs half as much.
    ``repr`` keeps ``5`` and ``"5"`` apart.
    """
    text = endpoint + "".join(f"\x1f{key}={value!r}" for key, value in sorted(arguments.items()))
    return "r" + hashlib.sha256(text.encode()).hexdigest()[:12]


def _check_ids(rows: list[PromptRow], source: str) -> None:
    """One id, one content: rows may share an id only when they share the job (same job key)."""
    first: dict[str, PromptRow] = {}
    for row in rows:
        seen = first.setdefault(row.row_id, row)
        if seen is not row and seen.job_key != row.job_key:
            raise PromptFileError(
                source,
                f"{source}: id {row.row_id!r} is used on line {seen.line} and line {row.line} for different "
                "content; give each prompt its own id, or make the rows identical to share one video.",
            )

"""JSON-lines input shared by the token-offset and character-offset readers."""
import json
from pathlib import Path
from typing import Any, Dict, Iterator, Tuple

from .core import FormatError, SpanTuple


def read_records(path: Path) -> Iterator[Tuple[int, Dict[str, Any]]]:
    """Yield (line number, object) for each non-blank line of a JSONL file.
    Raises FormatError for a line that is not a JSON object."""
    with path.open(encoding="utf-8-sig") as file_:  # a leading BOM is not JSON
        for line_no, line in enumerate(file_, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise FormatError(path, line_no, f"expected a JSON object: {err}") from None
            if not isinstance(record, dict):
                raise FormatError(path, line_no, f"expected a JSON object, got {type(record).__name__}")
            yield line_no, record


def get_field(record: Dict[str, Any], key: str, kind: type, path: Path, line_no: int, what: str = "record") -> Any:
    """`record[key]`, which must exist and be a `kind`, else FormatError."""
    if key not in record:
        raise FormatError(path, line_no, f"{what} has no {key!r} field (fields: {sorted(record)})")
    value = record[key]
    # bool is an int in Python, never an offset
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise FormatError(path, line_no, f"{what} field {key!r} must be {kind.__name__}, got {value!r}")
    return value


def get_label(mention: Dict[str, Any], key: str, path: Path, line_no: int) -> str:
    """A mention's label: `mention[key]`, a non-blank string, else FormatError."""
    label = get_field(mention, key, str, path, line_no, "mention")
    if not label.strip():
        raise FormatError(path, line_no, f"mention field {key!r} must be a non-blank label, got {label!r}")
    return label


def get_mention(mention: Any, fields: Tuple[str, str, str], path: Path, line_no: int) -> SpanTuple:
    """(start, end, label) of a mention: an object with the `fields` (start,
    end, label), or a list [start, end, label]; else FormatError."""
    if isinstance(mention, list) and len(mention) == 3:
        mention = dict(zip(fields, mention))
    if not isinstance(mention, dict):
        raise FormatError(path, line_no, f"a mention must be an object or [start, end, label], got {mention!r}")
    start_field, end_field, label_field = fields
    start = get_field(mention, start_field, int, path, line_no, "mention")
    end = get_field(mention, end_field, int, path, line_no, "mention")
    return start, end, get_label(mention, label_field, path, line_no)


def check_offsets(
    start: int, end: int, length: int, path: Path, line_no: int, unit: str, end_inclusive: bool = False
) -> None:
    """Raise FormatError unless 0 <= start < end <= length, or with
    `end_inclusive` (`end` is the last unit, as in the file)
    0 <= start <= end < length; the message shows the offsets as given."""
    if end_inclusive and not 0 <= start <= end < length:
        raise FormatError(
            path, line_no,
            f"mention offsets ({start}, {end}) must satisfy 0 <= start <= end < {length} ({unit}, end inclusive)",
        )
    if not end_inclusive and not 0 <= start < end <= length:
        raise FormatError(
            path, line_no,
            f"mention offsets ({start}, {end}) must satisfy 0 <= start < end <= {length} ({unit}, end exclusive)",
        )

"""The output of `annotate`: a folder of part files, JSONL or Parquet, each
written whole to a temporary name and renamed, so that a part file that
exists is complete. An interrupted run leaves complete parts only; the next
run reads their ids and annotates the rest (resume)."""
import json
import os
import uuid
from pathlib import Path
from typing import Any, Iterable, List, Optional, Set

from .records import Record

FORMATS = {".jsonl": "jsonl", ".parquet": "parquet"}
_TEMPORARY_SUFFIX = ".tmp"


def output_format(path: Path) -> str:
    """The format an output folder's name asks for (`out.jsonl/`, `out.parquet/`)."""
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(
            f"Cannot tell the output format from '{path}': name the output folder "
            f"with one of the suffixes {', '.join(FORMATS)} (for example 'annotated.parquet')."
        )
    return fmt


def parquet_schema():
    import pyarrow as pa

    span = pa.struct(
        [("start", pa.int64()), ("end", pa.int64()), ("label", pa.string()), ("score", pa.float64())]
    )
    # ids are strings in Parquet: one column has one type, and JSONL ids may mix
    return pa.schema(
        [("id", pa.string()), ("ents", pa.list_(span)), ("spans", pa.list_(span)), ("error", pa.string())]
    )


def id_key(doc_id: Any, fmt: str) -> Any:
    """An id as the output stores it (strings in Parquet, as given in JSONL)."""
    if fmt == "parquet" and doc_id is not None and not isinstance(doc_id, str):
        return str(doc_id)
    return doc_id


class PartFolder:
    """Writes records to `folder` in parts of `part_size` records.

    folder (Path): created if missing; its name's suffix gives the format.
    part_size (int): records per part file; the work an interruption can lose.
    """

    def __init__(self, folder: Path, part_size: int = 10_000):
        if part_size < 1:
            raise ValueError(f"part_size must be at least 1, got {part_size}.")
        self.folder = Path(folder)
        self.format = output_format(self.folder)
        if self.folder.exists() and not self.folder.is_dir():
            raise ValueError(f"The output '{self.folder}' exists and is a file; give a folder (new or from an earlier run).")
        self.folder.mkdir(parents=True, exist_ok=True)
        self.part_size = part_size
        self._run = uuid.uuid4().hex[:12]
        self._buffer: List[Record] = []
        self._parts_written = 0
        for leftover in self.folder.glob(f"*{_TEMPORARY_SUFFIX}"):
            leftover.unlink()

    def parts(self) -> List[Path]:
        return sorted(self.folder.glob(f"part-*.{self.format}"))

    def written_ids(self) -> Set[Any]:
        """The ids of every record in the folder's complete parts."""
        ids: Set[Any] = set()
        for part in self.parts():
            ids.update(record["id"] for record in self._read_part(part, ["id"]) if record["id"] is not None)
        return ids

    def read(self) -> List[Record]:
        """Every record in the folder (for tests and small outputs)."""
        return [record for part in self.parts() for record in self._read_part(part)]

    def write(self, records: Iterable[Record]) -> None:
        for record in records:
            self._buffer.append({**record, "id": id_key(record["id"], self.format)})
            if len(self._buffer) >= self.part_size:
                self.flush()

    def flush(self) -> None:
        """Commit the buffered records as one part file."""
        if not self._buffer:
            return
        name = f"part-{self._run}-{self._parts_written:06d}.{self.format}"
        temporary = self.folder / (name + _TEMPORARY_SUFFIX)
        if self.format == "jsonl":
            with temporary.open("w", encoding="utf8") as file:
                for record in self._buffer:
                    file.write(json.dumps(record, ensure_ascii=False) + "\n")
                file.flush()
                os.fsync(file.fileno())
        else:
            import pyarrow as pa
            import pyarrow.parquet as pq

            pq.write_table(pa.Table.from_pylist(self._buffer, schema=parquet_schema()), temporary)
        os.replace(temporary, self.folder / name)
        self._parts_written += 1
        self._buffer = []

    def _read_part(self, part: Path, columns: Optional[List[str]] = None) -> List[Record]:
        """The records of one part (Parquet: only `columns`, if given)."""
        if self.format == "jsonl":
            with part.open(encoding="utf8") as file:
                return [json.loads(line) for line in file]
        import pyarrow.parquet as pq

        return pq.read_table(part, columns=columns).to_pylist()

"""`annotate`: a pipeline over a corpus on Ray Data.

The pipeline is loaded once per actor (`map_batches` with a class), never
pickled: a `Language` object does not survive pickling, and loading it in
each worker is what Ray's own docs advise for stateful models. Actors send
back one JSON string per record; the driver commits them to a `PartFolder`
and is the one place that sees every id, so it is where repeats are caught.
Ray restarts an actor that dies and retries its batch (Ray Data's default for
actor pools), and a batch's records reach the driver only when the batch is
done, so a killed worker neither loses nor doubles a record.
"""
import json
import logging
import math
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, List, Optional, Set, Union

from .output import PartFolder, id_key
from .records import Record, doc_record, error_record, parse_input_row

INPUT_FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}
_JSONL_LINE = "text"  # the column ray.data.read_text gives each line in
_BLOCK_BYTES = 8 * 1024 * 1024


@dataclass
class AnnotationStats:
    written: int = 0  # records written by this run (errors included)
    errors: int = 0  # records written with an error instead of annotations
    resumed: int = 0  # ids an earlier run had written, not annotated again
    repeated: int = 0  # records whose id this run had already written: skipped
    seconds: float = 0.0  # from the start of the run to its last record
    startup_seconds: float = 0.0  # until the first batch came back (actors load the pipeline)
    first_batch: int = 0  # records in that first batch

    @property
    def docs_per_second(self) -> float:
        return self.written / self.seconds if self.seconds else 0.0

    @property
    def steady_docs_per_second(self) -> float:
        """The rate once the actors are loaded: what a long run sees."""
        seconds = self.seconds - self.startup_seconds
        return (self.written - self.first_batch) / seconds if seconds > 0 else 0.0


def _input_files(path: Path) -> List[Path]:
    return [p for p in path.iterdir() if p.is_file()] if path.is_dir() else [path]


def input_format(path: Path) -> str:
    """The format of an input file, or of the files in an input folder."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"The input '{path}' does not exist.")
    suffixes = {p.suffix.lower() for p in _input_files(path)}
    formats = {INPUT_FORMATS.get(suffix) for suffix in suffixes}
    if len(formats) != 1 or None in formats:
        found = ", ".join(sorted(suffixes)) or "no files"
        raise ValueError(
            f"Cannot tell the input format of '{path}' (found {found}): give a .jsonl "
            f"(or .ndjson) or .parquet file, or a folder of files of one of those kinds."
        )
    return formats.pop()


class PipelineAnnotator:
    """The Ray Data actor: loads the pipeline once, then annotates batches."""

    def __init__(
        self,
        pipeline: str,
        *,
        input_format: str,
        output_format: str,
        id_field: str,
        text_field: str,
        spans_key: str,
        skip_ids: Set[Any],
        code_path: Optional[str],
        threads: int,
        use_gpu: bool,
    ):
        import spacy

        if code_path:
            spacy.util.import_file("annotate_code", code_path)
        if use_gpu:
            spacy.require_gpu()
        import torch

        torch.set_num_threads(threads)
        self.nlp = spacy.load(pipeline)
        self.input_format = input_format
        self.output_format = output_format
        self.id_field = id_field
        self.text_field = text_field
        self.spans_key = spans_key
        self.skip_ids = skip_ids

    def __call__(self, batch):
        import pyarrow as pa

        if self.input_format == "jsonl":
            rows = batch.column(_JSONL_LINE).to_pylist()
        else:
            rows = batch.to_pylist()
        records = self.annotate_rows(rows)
        return pa.table({"record": [json.dumps(record, ensure_ascii=False) for record in records]})

    def annotate_rows(self, rows: Iterable[Any]) -> List[Record]:
        """One record per row, in order, except rows whose id is in skip_ids."""
        records: List[Optional[Record]] = []
        texts, text_positions, ids = [], [], []
        for row in rows:
            doc_id, text, error = parse_input_row(row, self.id_field, self.text_field)
            if doc_id is not None and id_key(doc_id, self.output_format) in self.skip_ids:
                continue
            if error is not None:
                records.append(error_record(doc_id, error))
                continue
            text_positions.append(len(records))
            records.append(None)
            texts.append(text)
            ids.append(doc_id)
        for position, record in zip(text_positions, self._annotate_texts(texts, ids)):
            records[position] = record
        return records

    def _annotate_texts(self, texts: List[str], ids: List[Any]) -> List[Record]:
        try:
            docs = list(self.nlp.pipe(texts))
        except Exception:
            # find the text that fails; the others still get annotated
            return [self._annotate_one(text, doc_id) for text, doc_id in zip(texts, ids)]
        return [doc_record(doc, doc_id, self.spans_key) for doc, doc_id in zip(docs, ids)]

    def _annotate_one(self, text: str, doc_id: Any) -> Record:
        try:
            return doc_record(self.nlp(text), doc_id, self.spans_key)
        except Exception as err:
            return error_record(doc_id, f"the pipeline failed on this text: {type(err).__name__}: {err}")


def annotate(
    pipeline: Union[str, Path],
    input_path: Union[str, Path],
    output_path: Union[str, Path],
    *,
    id_field: str = "id",
    text_field: str = "text",
    spans_key: Optional[str] = None,
    actors: int = 1,
    cpus_per_actor: float = 1,
    gpus_per_actor: float = 0,
    batch_size: int = 64,
    part_size: int = 10_000,
    address: Optional[str] = None,
    code_path: Optional[Union[str, Path]] = None,
    progress: bool = True,
) -> AnnotationStats:
    """Annotate every text of `input_path` with `pipeline` on Ray Data and
    write one record per input document to the folder `output_path`.

    pipeline: a saved pipeline's folder or an installed package's name; on a
        cluster, a path every node has, or a package installed on every node.
    input_path: a .jsonl/.ndjson or .parquet file, or a folder of such files.
    output_path: a folder named *.jsonl or *.parquet; if it holds parts of an
        earlier run, the ids in them are skipped (resume).
    actors, cpus_per_actor, gpus_per_actor: the actor pool; each actor runs
        torch on `cpus_per_actor` threads.
    batch_size: documents per Ray batch (one actor call).
    part_size: records per output part file.
    address: a Ray cluster's address ("auto": the one `ray start` started on
        this machine); None: `RAY_ADDRESS` if set, otherwise a new local Ray
        runtime, started here and stopped at the end. If Ray is already
        initialized in this process, that runtime is used and left running.
    code_path: a Python file each actor imports before loading the pipeline
        (custom components, as `spacy --code`).
    RETURNS (AnnotationStats): counts and wall time of this run.
    """
    try:
        import ray
        import ray.data
    except ImportError as err:
        raise ImportError(
            "annotate runs on Ray Data, which is not installed: pip install 'spacy-binder[ray]' "
            "(or 'ray[data]')."
        ) from err

    if actors < 1 or cpus_per_actor <= 0 or gpus_per_actor < 0 or batch_size < 1:
        raise ValueError(
            "annotate needs actors >= 1, cpus_per_actor > 0, gpus_per_actor >= 0 and "
            f"batch_size >= 1; got {actors}, {cpus_per_actor}, {gpus_per_actor}, {batch_size}."
        )
    pipeline = _resolve_pipeline(pipeline)
    if code_path:
        code_path = str(Path(code_path).resolve())
    nlp = _load_pipeline(pipeline, code_path)
    spans_key = spans_key or _binder_spans_key(nlp)
    del nlp
    fmt_in = input_format(Path(input_path))
    output = PartFolder(Path(output_path), part_size=part_size)
    done = output.written_ids()
    stats = AnnotationStats(resumed=len(done))
    _quiet_ray_data(ray)
    started_here = False
    if not ray.is_initialized():
        _init_ray(ray, address, actors * cpus_per_actor, actors * gpus_per_actor)
        started_here = True
    try:
        dataset = _read(ray, Path(input_path).resolve(), fmt_in, id_field, text_field, actors)
        annotated = dataset.map_batches(
            PipelineAnnotator,
            fn_constructor_args=(pipeline,),
            fn_constructor_kwargs=dict(
                input_format=fmt_in,
                output_format=output.format,
                id_field=id_field,
                text_field=text_field,
                spans_key=spans_key,
                skip_ids=done,
                code_path=code_path,
                threads=max(1, int(cpus_per_actor)),
                use_gpu=gpus_per_actor > 0,
            ),
            batch_size=batch_size,
            batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(size=actors),
            num_cpus=cpus_per_actor,
            num_gpus=gpus_per_actor or None,
        )
        seen: Set[Any] = set()
        bar = _progress_bar(progress)
        start = time.perf_counter()
        for batch in annotated.iter_batches(batch_format="pyarrow", batch_size=None):
            records = []
            for line in batch.column("record").to_pylist():
                record = json.loads(line)
                key = id_key(record["id"], output.format)
                if key is not None and key in seen:
                    stats.repeated += 1
                    continue
                seen.add(key)
                stats.errors += record["error"] is not None
                records.append(record)
            output.write(records)
            if not stats.startup_seconds:
                stats.startup_seconds = time.perf_counter() - start
                stats.first_batch = len(records)
            stats.written += len(records)
            if bar is not None:
                bar.update(len(records))
        output.flush()
        stats.seconds = time.perf_counter() - start
        if bar is not None:
            bar.close()
    finally:
        if started_here:
            ray.shutdown()
    if stats.repeated:
        warnings.warn(
            f"{stats.repeated} input records repeat an id that an earlier record of this run has: "
            f"each was skipped (ids must be unique for the output to have one record per document)."
        )
    return stats


def _binder_spans_key(nlp) -> str:
    from ..component import BinderNER

    keys = [pipe.spans_key for _, pipe in nlp.pipeline if isinstance(pipe, BinderNER)]
    return keys[0] if keys else "sc"


def _resolve_pipeline(pipeline: Union[str, Path]) -> str:
    from spacy.util import is_package

    path = Path(pipeline)
    if path.exists():
        return str(path.resolve())
    if is_package(str(pipeline)):
        return str(pipeline)
    raise ValueError(
        f"'{pipeline}' is neither a pipeline folder nor an installed pipeline package: "
        "give the folder `spacy train` wrote (e.g. training/model-best) or the name of a "
        "package installed from `spacy package`."
    )


def _load_pipeline(pipeline: str, code_path: Optional[str]):
    """Load the pipeline here once, so that a pipeline that cannot load fails
    with spaCy's own message now, not as actors that Ray keeps restarting."""
    import spacy

    if code_path:
        spacy.util.import_file("annotate_code", code_path)
    try:
        return spacy.load(pipeline)
    except Exception as err:
        hint = "" if code_path else " (custom components: pass the file that registers them with --code)"
        raise ValueError(f"The pipeline '{pipeline}' does not load{hint}: {type(err).__name__}: {err}") from err


def _quiet_ray_data(ray) -> None:
    """Our one progress bar instead of Ray Data's per-operator bars and logs."""
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)


def _init_ray(ray, address: Optional[str], cpus_needed: float, gpus_needed: float) -> None:
    if address is None and "RAY_ADDRESS" not in os.environ:
        # local: room for the actors and one more CPU, so the read tasks can
        # run beside a pool that takes every core (else the run deadlocks)
        num_cpus = max(os.cpu_count() or 1, int(cpus_needed + 0.999) + 1)
        # "local": a new runtime even where `ray start` left one running
        ray.init(address="local", num_cpus=num_cpus, num_gpus=int(gpus_needed + 0.999) or None,
                 include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False)
    else:
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)


def _read(ray, path: Path, fmt: str, id_field: str, text_field: str, actors: int):
    n_blocks = _block_count(path, actors)
    if fmt == "jsonl":
        return ray.data.read_text(str(path), file_extensions=["jsonl", "ndjson"], override_num_blocks=n_blocks)
    dataset = ray.data.read_parquet(str(path), file_extensions=["parquet"], override_num_blocks=n_blocks)
    missing = [field for field in (id_field, text_field) if field not in dataset.schema().names]
    if missing:
        raise ValueError(
            f"The Parquet input '{path}' has no column {', '.join(repr(m) for m in missing)} "
            f"(its columns: {', '.join(dataset.schema().names)}); set --id-field / --text-field."
        )
    return dataset.select_columns([id_field, text_field])


def _block_count(path: Path, actors: int) -> int:
    """Blocks of at most ~8 MiB of input, and at least 8 per actor: a block's
    records reach the driver when the whole block is done, so small blocks
    keep every actor busy to the end, the progress bar moving, and the work a
    killed actor redoes short."""
    size = sum(p.stat().st_size for p in _input_files(path))
    return max(8 * actors, math.ceil(size / _BLOCK_BYTES))


def _progress_bar(enabled: bool):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(unit="doc", desc="annotated", smoothing=0.05)

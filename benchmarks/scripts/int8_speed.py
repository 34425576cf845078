"""int8 against fp32 on the CPU: words/s, test F (doc.ents and doc.spans, per
type), peak memory and size on disk of one trained pipeline and its int8
version (`spacy_binder.int8`, what `python -m spacy_binder quantize` saves).

Measured where users are: the test split as documents (the corpus's own, or
--sentences-per-doc consecutive sentences joined, as `evaluate_documents.py`
makes them), each given to `nlp.pipe` as plain text. The int8 pipeline is saved
and loaded back, as a user gets it. Speed protocol (fixed before the first run):
both pipelines in one process, one warm-up pass each, then --rounds timed rounds
alternating fp32, int8, fp32, ... on fresh docs; the best round of each counts
and the speedup is the ratio of the two. Peak memory: each pipeline in a fresh
process that loads it and runs the documents once (peak RSS, and RSS after
loading).
"""
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from itertools import islice
from typing import Any, Dict, List, Optional

import spacy
import srsly
import torch
import typer
from spacy.language import Language
from spacy.tokens import Doc, DocBin
from wasabi import msg

import project_scripts  # noqa: F401  (project/scripts on the path)
from benchmark import fresh_docs, peak_rss_mb, status_kb
from evaluate_documents import join_documents, score
from spacy_binder.int8 import DEFAULT_SMOOTHING, SmoothedLinear, folder_mb, hf_shims, packing_engine_name, quantize_pipeline

MEASURE_MEMORY = "measure-memory"


def rss_mb() -> float:
    kb = status_kb("VmRSS")
    return float("nan") if kb is None else kb / 1024


def measure_memory(pipeline: str, docs_path: str, sentences_per_doc: int, batch_size: int) -> None:
    """(In a fresh process.) RSS after loading, and peak RSS over one pass."""
    before = rss_mb()
    nlp = spacy.load(pipeline)
    loaded = rss_mb()
    documents, _ = join_documents(list(DocBin().from_disk(docs_path).get_docs(nlp.vocab)), sentences_per_doc)
    for _ in nlp.pipe([doc.text for doc in documents], batch_size=batch_size):
        pass
    print(srsly.json_dumps({"load_mb": round(loaded - before, 1), "peak_rss_mb": round(peak_rss_mb(), 1)}))


def memory_in_fresh_process(pipeline: Path, docs_path: Path, sentences_per_doc: int, batch_size: int) -> Dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, MEASURE_MEMORY, str(pipeline), str(docs_path), str(sentences_per_doc), str(batch_size)],
        capture_output=True, text=True, check=True,
    )
    return srsly.json_loads(out.stdout.strip().splitlines()[-1])


def pct(value) -> str:
    return "-" if value is None else f"{100 * value:.2f}"


def difference(int8: Any, fp32: Any) -> str:
    return "-" if int8 is None or fp32 is None else f"{100 * (int8 - fp32):+.2f}"


def best_seconds(pipelines: Dict[str, Language], documents: List[Doc], rounds: int, batch_size: int) -> Dict[str, float]:
    """The alternating protocol of the module docstring."""

    def run(nlp: Language) -> float:
        docs = fresh_docs(nlp, documents)
        start = time.perf_counter()
        for _ in nlp.pipe(docs, batch_size=batch_size):
            pass
        return time.perf_counter() - start

    for nlp in pipelines.values():
        run(nlp)
    best = {name: float("inf") for name in pipelines}
    for _ in range(rounds):
        for name, nlp in pipelines.items():
            best[name] = min(best[name], run(nlp))
    return best


def accuracy(nlp: Language, documents: List[Doc], spans_key: str, batch_size: int) -> Dict[str, Any]:
    scores = score(nlp, documents, batch_size)
    row: Dict[str, Any] = {}
    for prefix, name in (("ents", "ents"), (f"spans_{spans_key}", "spans")):
        for metric in ("p", "r", "f"):
            value = scores.get(f"{prefix}_{metric}")
            row[f"{name}_{metric}"] = None if value is None else round(value, 4)
        per_type = scores.get(f"{prefix}_per_type") or {}
        row[f"{name}_f_per_type"] = {label: round(s["f"], 4) for label, s in sorted(per_type.items())}
    return row


def main(
    model: Path = typer.Argument(..., help="Trained fp32 pipeline folder", exists=True, file_okay=False),
    docs_path: Path = typer.Argument(..., help="Test docs (.spacy)", exists=True, dir_okay=False),
    dataset: str = typer.Option(..., "--dataset", help="Dataset name for the rows"),
    output: Path = typer.Option(..., "--output", "-o", help="JSON file for the rows", dir_okay=False),
    sentences_per_doc: int = typer.Option(10, "--sentences-per-doc", help="Sentences per document (sentence corpora)"),
    rounds: int = typer.Option(3, "--rounds", min=1, help="Timed rounds per pipeline (best counts)"),
    batch_size: int = typer.Option(32, "--batch-size", min=1, help="nlp.pipe batch size"),
    spans_key: str = typer.Option("sc", "--spans-key"),
    calibration: Optional[Path] = typer.Option(None, "--calibration", help="Docs (.spacy) whose texts calibrate a third, smoothed int8 pipeline (the training data)", exists=True, dir_okay=False),
    calibration_docs: int = typer.Option(300, "--calibration-docs", min=1, help="The first N docs of --calibration"),
    smoothing: float = typer.Option(DEFAULT_SMOOTHING, "--smoothing", help="SmoothQuant's alpha of the smoothed pipeline"),
) -> None:
    """Print and save one row per pipeline (fp32, int8, and with --calibration
    int8 smoothed) for one corpus."""
    with tempfile.TemporaryDirectory() as tmp:
        paths: Dict[str, Path] = {"fp32": model}
        variants: Dict[str, Optional[float]] = {"fp32": None, "int8": None}
        nlp = spacy.load(model)
        quantize_pipeline(nlp)
        paths["int8"] = Path(tmp) / "int8"
        nlp.to_disk(paths["int8"])
        if calibration is not None:
            nlp = spacy.load(model)
            texts = [doc.text for doc in islice(DocBin().from_disk(calibration).get_docs(nlp.vocab), calibration_docs)]
            calibration_docs = len(texts)
            quantize_pipeline(nlp, texts, smoothing)
            paths["int8 smoothed"] = Path(tmp) / "int8_smoothed"
            variants["int8 smoothed"] = smoothing
            nlp.to_disk(paths["int8 smoothed"])
        pipelines = {name: spacy.load(path) for name, path in paths.items()}
        documents, unit = join_documents(list(DocBin().from_disk(docs_path).get_docs(pipelines["fp32"].vocab)), sentences_per_doc)
        n_words = sum(len(doc) for doc in documents)
        msg.info(f"{dataset}: {len(documents)} documents ({unit}), {n_words} words, {rounds} rounds")
        seconds = best_seconds(pipelines, documents, rounds, batch_size)
        rows = []
        for name, nlp in pipelines.items():
            row = {
                "dataset": dataset,
                "precision": "fp32" if name == "fp32" else "int8",
                "smoothing": variants[name],
                "calibration_docs": calibration_docs if variants[name] is not None else None,
                "smoothed_layers": sum(isinstance(layer, SmoothedLinear) for shim in hf_shims(nlp) for layer in shim._model.modules()),
                "words_per_second": round(n_words / seconds[name], 1),
                **accuracy(nlp, documents, spans_key, batch_size),
                **memory_in_fresh_process(paths[name], docs_path, sentences_per_doc, batch_size),
                "disk_mb": round(folder_mb(paths[name]), 1),
                "docs": len(documents),
                "unit": unit,
                "words": n_words,
                "rounds": rounds,
                "batch_size": batch_size,
                "torch_threads": torch.get_num_threads(),
                "int8_engine": packing_engine_name() if name != "fp32" else None,
                # glibc's allocator settings change both pipelines' speed (see the results document)
                "malloc_env": {key: value for key, value in sorted(os.environ.items()) if key.startswith("MALLOC_")},
            }
            rows.append(row)
    fp32 = rows[0]
    for name, row in zip(pipelines, rows):
        if row is not fp32:
            row["speedup"] = round(row["words_per_second"] / fp32["words_per_second"], 3)
        msg.text(
            f"{name}: {row['words_per_second']:.0f} words/s, ents F {pct(row['ents_f'])}, "
            f"spans F {pct(row['spans_f'])}, peak RSS {row['peak_rss_mb']:.0f} MB, {row['disk_mb']:.0f} MB on disk"
        )
    for name, row in list(zip(pipelines, rows))[1:]:
        msg.good(
            f"{dataset}: {name} {row['speedup']:.2f}x the fp32 words/s; F difference "
            f"ents {difference(row['ents_f'], fp32['ents_f'])}, spans {difference(row['spans_f'], fp32['spans_f'])}"
        )
    output.parent.mkdir(parents=True, exist_ok=True)
    srsly.write_json(output, rows)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == MEASURE_MEMORY:
        measure_memory(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
    else:
        typer.run(main)

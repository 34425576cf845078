"""How do time and memory of a trained pipeline grow with the length of one
doc? BINDER scores every span of at most `max_span_width` tokens inside a
sentence, so both should grow about linearly (exponent ~1) when sentence
boundaries are set; this checks that on docs of increasing size.

Each doc is made by concatenating the words of the docs of --source (cycled
as needed; without --source, a few plain English sentences repeated) up to the
requested number of tokens, with a sentence start at every original sentence
and doc boundary. Each size is measured in a fresh process so its peak memory
is its own: load the pipeline, warm up on a small doc, reset the peak RSS
(VmHWM, by writing "5" to /proc/self/clear_refs; plain VmHWM where that is not
possible), then time `nlp(doc)` and read the peak again, and what the process
still holds (VmRSS) while the doc is kept. The exponents are the
least-squares slopes of log(seconds) and log(peak RSS increase) against
log(tokens), over the sizes of at least --fit-min-tokens tokens (small docs
are dominated by fixed overhead).
"""
import gc
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy
import spacy
import srsly
import typer
from spacy.tokens import Doc, DocBin
from spacy.vocab import Vocab
from wasabi import msg

from benchmark import status_kb
from buckets_speed import plain_transformer_config
from devices import device_name, gpu_allocated_mb, gpu_peak_mb, reset_gpu_peak, synchronize

MEASURE_ONE = "measure-one"
WARMUP_TOKENS = 64
SENTENCES = [
    "The committee met in Geneva on Tuesday to discuss the new trade agreement.",
    "Maria Lopez, who leads the research group at the University of Toronto, presented the results.",
    "Shares of Northwind Traders rose by four percent after the announcement.",
    "Heavy rain is expected across the north of England until Friday evening.",
    "The museum will reopen in March with an exhibition of early Dutch paintings.",
]


def source_sentences(vocab: Vocab, source: Optional[Path]) -> List[Doc]:
    """The docs whose words are concatenated: those of `source`, or the
    built-in sentences tokenized by a blank English pipeline."""
    if source is not None:
        docs = [doc for doc in DocBin().from_disk(source).get_docs(vocab) if len(doc)]
        if not docs:
            msg.fail(f"No tokens in {source}", exits=1)
        return docs
    nlp = spacy.blank("en", vocab=vocab)
    return [nlp.make_doc(text) for text in SENTENCES]


def build_doc(vocab: Vocab, sources: List[Doc], n_tokens: int) -> Doc:
    """One doc of exactly `n_tokens` tokens from the words of `sources`
    (cycled), with a sentence start at each source doc's start and at each of
    its own sentence starts where it has them.

    vocab (Vocab): The vocab of the new doc.
    sources (List[Doc]): Non-empty docs to take words from.
    n_tokens (int): The length of the doc.
    RETURNS (Doc): The doc, without other annotation.
    """
    words: List[str] = []
    spaces: List[bool] = []
    sent_starts: List[bool] = []
    i = 0
    while len(words) < n_tokens:
        doc = sources[i % len(sources)]
        i += 1
        has_sents = doc.has_annotation("SENT_START")
        for token in doc[: n_tokens - len(words)]:
            words.append(token.text)
            spaces.append(bool(token.whitespace_) or token.i == len(doc) - 1)
            sent_starts.append(token.i == 0 or (has_sents and bool(token.is_sent_start)))
    spaces[-1] = False
    return Doc(vocab, words=words, spaces=spaces, sent_starts=sent_starts)


def read_status_kb(field: str) -> int:
    """A memory field of /proc/self/status (e.g. "VmHWM"), in kB."""
    value = status_kb(field)
    if value is None:
        raise RuntimeError(f"No {field} in /proc/self/status")
    return value


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS. RETURNS (bool): whether it worked."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="utf8") as file_:
            file_.write("5")
        return True
    except OSError:
        return False


def measure_one(
    model: str = typer.Argument(..., help="Trained pipeline"),
    doc_path: Path = typer.Argument(..., help="DocBin holding the one doc to measure", exists=True),
    result_path: Path = typer.Argument(..., help="JSON file to write the measurement to"),
    gpu_id: int = typer.Option(-1, "--gpu-id", "-g", help="GPU id, or -1 for CPU"),
    keep_transformer_output: bool = typer.Option(False, "--keep-transformer-output", help="Load with binder_ner's free_transformer_output = false"),
    plain_transformer: bool = typer.Option(False, "--plain-transformer", help="Load the transformer as spacy-transformers' TransformerModel.v3 (no length buckets)"),
) -> None:
    """(Internal, run in a fresh process per size.) Time one `nlp(doc)` and
    measure the peak RSS it adds, and the RSS it leaves while the doc is kept."""
    if gpu_id >= 0:
        spacy.require_gpu(gpu_id)
    overrides = {"components.binder_ner.free_transformer_output": False} if keep_transformer_output else {}
    if plain_transformer:
        overrides.update(plain_transformer_config(model))
    nlp = spacy.load(model, config=overrides)
    doc = next(DocBin().from_disk(doc_path).get_docs(nlp.vocab))
    n_warmup = min(WARMUP_TOKENS, len(doc))
    warmup = doc[:n_warmup]
    nlp(Doc(nlp.vocab, words=[t.text for t in warmup], sent_starts=[bool(t.is_sent_start) for t in warmup]))
    gc.collect()
    gpu_before = gpu_allocated_mb()  # what the loaded pipeline holds on the GPU
    reset_gpu_peak()
    hwm_reset = reset_peak_rss()
    before_kb = read_status_kb("VmHWM")
    rss_before_kb = read_status_kb("VmRSS")
    start = time.perf_counter()
    doc = nlp(doc)
    synchronize()
    seconds = time.perf_counter() - start
    after_kb = read_status_kb("VmHWM")
    gc.collect()
    retained_kb = read_status_kb("VmRSS") - rss_before_kb
    gpu_fields = {}
    if gpu_before is not None:
        gpu_fields = {"peak_gpu_increase_mb": round(gpu_peak_mb() - gpu_before, 2), "device": device_name()}
    srsly.write_json(
        result_path,
        {
            "tokens": len(doc),
            "sentences": sum(1 for _ in doc.sents),
            "seconds": round(seconds, 4),
            "peak_rss_increase_mb": round((after_kb - before_kb) / 1024, 2),
            "retained_rss_increase_mb": round(retained_kb / 1024, 2),
            "rss_before_mb": round(before_kb / 1024, 1),
            "transformer": nlp.config["components"]["transformer"]["model"]["@architectures"] if "transformer" in nlp.pipe_names else None,
            "free_transformer_output": "binder_ner" in nlp.pipe_names
            and nlp.get_pipe("binder_ner").cfg.get("free_transformer_output", False),
            "hwm_reset": hwm_reset,
            # what this process's allocator was started with
            "malloc_mmap_threshold": int(os.environ["MALLOC_MMAP_THRESHOLD_"]) if "MALLOC_MMAP_THRESHOLD_" in os.environ else None,
            **gpu_fields,
        },
    )


def run_size(
    model: str, doc: Doc, gpu_id: int, keep_transformer_output: bool, plain_transformer: bool, mmap_threshold: int
) -> Dict[str, Any]:
    """Measure one doc in a fresh process (see measure_one), with glibc's
    MALLOC_MMAP_THRESHOLD_ set to `mmap_threshold` bytes if it is > 0."""
    with tempfile.TemporaryDirectory() as tmp:
        doc_path = Path(tmp) / "doc.spacy"
        result_path = Path(tmp) / "result.json"
        DocBin(attrs=["ORTH", "SENT_START"], docs=[doc]).to_disk(doc_path)
        cmd = [sys.executable, __file__, MEASURE_ONE, model, str(doc_path), str(result_path), "--gpu-id", str(gpu_id)]
        if keep_transformer_output:
            cmd.append("--keep-transformer-output")
        if plain_transformer:
            cmd.append("--plain-transformer")
        env = dict(os.environ)
        env.pop("MALLOC_MMAP_THRESHOLD_", None)  # 0 means the allocator's default, whatever the shell says
        if mmap_threshold > 0:
            env["MALLOC_MMAP_THRESHOLD_"] = str(mmap_threshold)
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if proc.returncode != 0 or not result_path.exists():
            msg.fail(f"Measuring {len(doc)} tokens failed (exit {proc.returncode})", proc.stderr[-3000:], exits=1)
        return srsly.read_json(result_path)


def fit_exponent(rows: List[Dict[str, Any]], key: str, min_tokens: int) -> Optional[float]:
    """Least-squares slope of log(row[key]) against log(tokens), over the rows
    with at least `min_tokens` tokens and a positive value.

    RETURNS (Optional[float]): The slope, or None with fewer than 2 such rows.
    """
    points: List[Tuple[float, float]] = [
        (math.log(row["tokens"]), math.log(row[key]))
        for row in rows
        if row["tokens"] >= min_tokens and row.get(key, 0) > 0
    ]
    if len({x for x, _ in points}) < 2:
        return None
    xs, ys = numpy.asarray(points).T
    return round(float(numpy.polyfit(xs, ys, 1)[0]), 3)


def parse_sizes(sizes: str) -> List[int]:
    """"100,1000" -> [100, 1000], sorted and checked."""
    try:
        values = sorted({int(s) for s in sizes.split(",") if s.strip()})
    except ValueError:
        msg.fail(f"--sizes must be comma-separated integers, got {sizes!r}", exits=1)
    if not values or values[0] < 1:
        msg.fail(f"--sizes must be positive integers, got {sizes!r}", exits=1)
    return values


def main(
    model: str = typer.Argument(..., help="Trained pipeline (folder or package)"),
    output_path: Path = typer.Option(..., "--output", "-o", help="JSON file to write", dir_okay=False),
    sizes: str = typer.Option("100,1000,10000,50000", "--sizes", help="Doc lengths in tokens, comma-separated"),
    source: Optional[Path] = typer.Option(None, "--source", help="Docs (.spacy) whose words make the long docs", exists=True, dir_okay=False),
    fit_min_tokens: int = typer.Option(1000, "--fit-min-tokens", help="Fit the exponents on sizes >= this"),
    gpu_id: int = typer.Option(-1, "--gpu-id", "-g", help="GPU id, or -1 for CPU"),
    keep_transformer_output: bool = typer.Option(False, "--keep-transformer-output", help="Load with binder_ner's free_transformer_output = false (as before that option)"),
    plain_transformer: bool = typer.Option(False, "--plain-transformer", help="Load a LengthBucketedTransformer.v1 pipeline's transformer as TransformerModel.v3 (as before length buckets)"),
    mmap_threshold: int = typer.Option(0, "--mmap-threshold", help="Run each size with glibc's MALLOC_MMAP_THRESHOLD_ set to this many bytes (0: the allocator's default, a threshold that grows as large blocks are freed)"),
) -> None:
    """Time and peak memory of `nlp(doc)` against doc length, with fitted
    exponents."""
    vocab = Vocab()
    sources = source_sentences(vocab, source)
    rows = []
    for size in parse_sizes(sizes):
        row = run_size(model, build_doc(vocab, sources, size), gpu_id, keep_transformer_output, plain_transformer, mmap_threshold)
        rows.append(row)
        gpu = f", +{row['peak_gpu_increase_mb']:.1f} MB peak GPU" if "peak_gpu_increase_mb" in row else ""
        msg.text(f"{row['tokens']:>7} tokens: {row['seconds']:.3f} s, +{row['peak_rss_increase_mb']:.1f} MB peak RSS, +{row['retained_rss_increase_mb']:.1f} MB kept with the doc{gpu}")
    if not all(row["hwm_reset"] for row in rows):
        msg.warn("Could not reset VmHWM: the memory increases are against the peak after warm-up")
    result = {
        "model": str(model),
        "source": str(source) if source is not None else None,
        "rows": rows,
        "time_exponent": fit_exponent(rows, "seconds", fit_min_tokens),
        "memory_exponent": fit_exponent(rows, "peak_rss_increase_mb", fit_min_tokens),
        "gpu_memory_exponent": fit_exponent(rows, "peak_gpu_increase_mb", fit_min_tokens),
        "fit_min_tokens": fit_min_tokens,
        "malloc_mmap_threshold": mmap_threshold or None,
    }
    output_path.parent.mkdir(parents=True, exist_ok=True)
    srsly.write_json(output_path, result)
    header = ("tokens", "sentences", "seconds", "peak RSS +MB", "kept RSS +MB")
    data = [
        (r["tokens"], r["sentences"], f"{r['seconds']:.3f}", f"{r['peak_rss_increase_mb']:.1f}", f"{r['retained_rss_increase_mb']:.1f}")
        for r in rows
    ]
    msg.table(data, header=header, divider=True, aligns=("r", "r", "r", "r", "r"))
    msg.good(
        f"Exponents (sizes >= {fit_min_tokens} tokens): time {result['time_exponent']}, "
        f"memory {result['memory_exponent']} -> {output_path}"
    )


if __name__ == "__main__":
    if sys.argv[1:2] == [MEASURE_ONE]:
        del sys.argv[1]
        typer.run(measure_one)
    else:
        typer.run(main)

"""How much slower is inference with `binder_ner` than with the transformer
alone? Runs one loaded pipeline twice over the same docs: in full, and with
only the `transformer` component enabled (same object, so the same weights),
and reports the best words/s of each and their ratio. The cost of the BINDER
head is what a user pays on top of the encoder they need anyway.

Every pass gets fresh docs (words and spaces only) so no annotation of a
previous pass is reused. Each setting gets one warm-up pass, then the timed
rounds alternate (full, transformer only, full, ...) so that drift in machine
load hits both alike; the best round of each counts. The binder_ner component
alone (`predict` + `set_annotations` on the docs the transformer-only round
produced) is timed too, as its share of the full pipeline's time.
"""
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import spacy
import srsly
import typer
from spacy.language import Language
from spacy.tokens import Doc, DocBin
from spacy.util import minibatch
from wasabi import msg

from benchmark import fresh_docs
from devices import device_name, synchronize

TRANSFORMER = "transformer"
BINDER = "binder_ner"


def load_docs(nlp: Language, docs_path: Path, n_docs: Optional[int]) -> List[Doc]:
    """The first `n_docs` docs of a DocBin (None: all); each pass makes fresh
    copies of their words and spaces (benchmark.fresh_docs)."""
    docs = list(DocBin().from_disk(docs_path).get_docs(nlp.vocab))
    return docs if n_docs is None else docs[:n_docs]


def timed_pipe(nlp: Language, docs: List[Doc], batch_size: int) -> Tuple[float, List[Doc]]:
    """Seconds for `nlp.pipe` over `docs`, and the processed docs."""
    start = time.perf_counter()
    out = list(nlp.pipe(docs, batch_size=batch_size))
    synchronize()
    return time.perf_counter() - start, out


def time_binder(nlp: Language, docs: List[Doc], batch_size: int) -> float:
    """Seconds for binder_ner's predict + set_annotations over docs that the
    transformer has already processed, in batches as `nlp.pipe` makes them."""
    binder = nlp.get_pipe(BINDER)
    start = time.perf_counter()
    for batch in minibatch(docs, size=batch_size):
        batch = list(batch)
        binder.set_annotations(batch, binder.predict(batch))
    synchronize()
    return time.perf_counter() - start


def measure(
    nlp: Language, gold: List[Doc], rounds: int, batch_size: int
) -> Dict[str, float]:
    """Best seconds (over `rounds`) of the full pipeline, the transformer
    alone and binder_ner alone, after one warm-up pass of each.

    RETURNS (Dict[str, float]): "full", "transformer_only" and "binder" seconds.
    """

    def full() -> Tuple[float, List[Doc]]:
        return timed_pipe(nlp, fresh_docs(nlp, gold), batch_size)

    def transformer_only() -> Tuple[float, List[Doc]]:
        with nlp.select_pipes(enable=[TRANSFORMER]):
            return timed_pipe(nlp, fresh_docs(nlp, gold), batch_size)

    settings: Dict[str, Callable] = {"full": full, "transformer_only": transformer_only}
    for run in settings.values():  # warm-up
        run()
    best = {"full": float("inf"), "transformer_only": float("inf"), "binder": float("inf")}
    for _ in range(rounds):
        for name, run in settings.items():
            seconds, docs = run()
            best[name] = min(best[name], seconds)
            if name == "transformer_only":
                best["binder"] = min(best["binder"], time_binder(nlp, docs, batch_size))
    return best


def main(
    model: str = typer.Argument(..., help="Trained pipeline with 'transformer' and 'binder_ner' (folder or package)"),
    docs_path: Path = typer.Argument(..., help="Docs to run on (.spacy)", exists=True, dir_okay=False),
    output_path: Path = typer.Option(..., "--output", "-o", help="JSON file to write", dir_okay=False),
    n_docs: Optional[int] = typer.Option(None, "--n-docs", "-n", help="Use the first N docs (default: all)"),
    rounds: int = typer.Option(3, "--rounds", help="Timed rounds per setting (best counts)", min=1),
    batch_size: int = typer.Option(32, "--batch-size", "-b", help="nlp.pipe batch size", min=1),
    gpu_id: int = typer.Option(-1, "--gpu-id", "-g", help="GPU id, or -1 for CPU"),
) -> None:
    """Words/s of the full pipeline vs the transformer alone, and their ratio."""
    if gpu_id >= 0:
        spacy.require_gpu(gpu_id)
    nlp = spacy.load(model)
    for name in (TRANSFORMER, BINDER):
        if name not in nlp.pipe_names:
            msg.fail(f"The pipeline {model} has no '{name}' component", f"Components: {nlp.pipe_names}", exits=1)
    gold = load_docs(nlp, docs_path, n_docs)
    n_words = sum(len(doc) for doc in gold)
    if n_words == 0:
        msg.fail(f"No tokens in {docs_path}", exits=1)
    msg.info(f"{len(gold)} docs, {n_words} words, {rounds} rounds, batch size {batch_size}")
    best = measure(nlp, gold, rounds, batch_size)
    ratio = best["transformer_only"] / best["full"]  # = wps_full / wps_transformer_only
    result = {
        "model": str(model),
        "device": device_name(),
        "docs": str(docs_path),
        "n_docs": len(gold),
        "words": n_words,
        "rounds": rounds,
        "batch_size": batch_size,
        "words_per_second_full": round(n_words / best["full"], 1),
        "words_per_second_transformer_only": round(n_words / best["transformer_only"], 1),
        "ratio": round(ratio, 4),
        # throughput lost to binder_ner, in percent of the transformer-only rate
        "overhead_pct": round(100 * (1 - ratio), 2),
        "binder_seconds_share": round(best["binder"] / best["full"], 4),
        "seconds_full": round(best["full"], 4),
        "seconds_transformer_only": round(best["transformer_only"], 4),
        "seconds_binder": round(best["binder"], 4),
    }
    output_path.parent.mkdir(parents=True, exist_ok=True)
    srsly.write_json(output_path, result)
    msg.good(
        f"full {result['words_per_second_full']:.0f} words/s, transformer only "
        f"{result['words_per_second_transformer_only']:.0f} words/s: ratio {result['ratio']:.3f} "
        f"({result['overhead_pct']:.1f}% slower); binder_ner "
        f"{100 * result['binder_seconds_share']:.1f}% of full time -> {output_path}"
    )


if __name__ == "__main__":
    typer.run(main)

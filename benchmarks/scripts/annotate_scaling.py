"""Documents per second of `spacy_binder annotate` on Ray Data with 1 and 2
actors, against `nlp.pipe` in one process, on the same texts.

The corpus is the texts of a DocBin (the test split), repeated in order up to
--docs documents, written as JSONL with ids 0..N-1. In one run, one after the
other so that no two settings share the cores: `nlp.pipe` in this process
(torch's default threads), then `annotate` with each actor count (one CPU and
one torch thread per actor) on a local Ray runtime started once. Each
annotate row has its wall time from the first batch sent to the last record
written (actor start and pipeline load included) and its steady rate (after
the first batch came back): the rate a long run sees, which the estimates
for larger corpora use. Scaling efficiency = steady docs/s with 2 actors /
(2 x steady docs/s with 1 actor). Every annotate run's records are checked
against the `nlp.pipe` docs (same spans and labels; scores within 1e-4), so
a fast wrong answer cannot pass.
"""
import json
import os
import shutil
import time
from pathlib import Path
from typing import Dict, List

import spacy
import srsly
import typer
from spacy.tokens import DocBin
from wasabi import msg

from spacy_binder.annotation import PartFolder, annotate


def repeated_texts(source: Path, n_docs: int) -> List[str]:
    texts = [doc.text for doc in DocBin().from_disk(source).get_docs(spacy.blank("en").vocab) if doc.text.strip()]
    if not texts:
        msg.fail(f"No text in {source}", exits=1)
    return [texts[i % len(texts)] for i in range(n_docs)]


def span_keys(records: List[dict]) -> Dict[int, list]:
    return {r["id"]: [(s["start"], s["end"], s["label"], s["score"]) for s in r["spans"]] for r in records}


def check_same(records: List[dict], expected: Dict[int, list]) -> None:
    got = span_keys(records)
    if set(got) != set(expected):
        msg.fail(f"annotate wrote {len(got)} ids, expected {len(expected)}", exits=1)
    for doc_id, spans in expected.items():
        other = got[doc_id]
        same = len(other) == len(spans) and all(
            a[:3] == b[:3] and abs(a[3] - b[3]) <= 1e-4 for a, b in zip(other, spans)
        )
        if not same:
            msg.fail(f"annotate and nlp.pipe differ on id {doc_id}: {other} vs {spans}", exits=1)


def main(
    pipeline: str = typer.Argument(..., help="Trained pipeline (folder or package)"),
    source: Path = typer.Argument(..., help="DocBin whose texts are repeated (.spacy)", exists=True, dir_okay=False),
    output_path: Path = typer.Option(..., "--output", "-o", help="JSON file to write", dir_okay=False),
    n_docs: int = typer.Option(10_000, "--docs", help="Documents in the corpus", min=1),
    actor_counts: str = typer.Option("1,2", "--actors", help="Actor counts to run, comma-separated"),
    batch_size: int = typer.Option(64, "--batch-size", "-b", help="Documents per batch (nlp.pipe and actor calls)"),
    work_dir: Path = typer.Option(Path("training/annotate_scaling"), "--work-dir", help="Input and outputs go here"),
) -> None:
    import ray
    import torch

    texts = repeated_texts(source, n_docs)
    work_dir.mkdir(parents=True, exist_ok=True)
    input_path = work_dir / "corpus.jsonl"
    srsly.write_jsonl(input_path, ({"id": i, "text": t} for i, t in enumerate(texts)))
    words = sum(len(t.split()) for t in texts)
    msg.info(f"{n_docs} documents, {words} words (whitespace-split), from {source}")

    nlp = spacy.load(pipeline)
    tokens = sum(len(nlp.make_doc(t)) for t in texts)  # the unit of the words/s figures elsewhere
    list(nlp.pipe(texts[:batch_size]))  # warm-up
    start = time.perf_counter()
    docs = list(nlp.pipe(texts, batch_size=batch_size))
    pipe_seconds = time.perf_counter() - start
    spans_key = "sc"
    expected = {
        i: [(s.start_char, s.end_char, s.label_, float(score)) for s, score in zip(d.spans[spans_key], d.spans[spans_key].attrs["scores"])]
        for i, d in enumerate(docs)
    }
    del docs, nlp
    rows = [{
        "system": "nlp.pipe", "processes": 1, "threads": torch.get_num_threads(),
        "docs": n_docs, "words": words, "tokens": tokens, "seconds": round(pipe_seconds, 2),
        "docs_per_second": round(n_docs / pipe_seconds, 1),
        "tokens_per_second": round(tokens / pipe_seconds, 1),
    }]
    msg.good(f"nlp.pipe: {rows[0]['docs_per_second']} docs/s ({pipe_seconds:.1f} s)")

    counts = [int(c) for c in actor_counts.split(",")]
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    ray.init(address="local", num_cpus=max(counts) + 1, include_dashboard=False, log_to_driver=False)
    try:
        for actors in counts:
            output = work_dir / f"out_{actors}.jsonl"
            shutil.rmtree(output, ignore_errors=True)
            stats = annotate(pipeline, input_path, output, actors=actors, cpus_per_actor=1,
                             batch_size=batch_size, progress=False)
            check_same(PartFolder(output).read(), expected)
            rows.append({
                "system": "annotate", "actors": actors, "cpus_per_actor": 1, "threads_per_actor": 1,
                "docs": n_docs, "words": words, "tokens": tokens, "seconds": round(stats.seconds, 2),
                "startup_seconds": round(stats.startup_seconds, 2),
                "docs_per_second": round(stats.docs_per_second, 1),
                "steady_docs_per_second": round(stats.steady_docs_per_second, 1),
                "steady_tokens_per_second_per_actor": round(stats.steady_docs_per_second * tokens / n_docs / actors, 1),
                "same_as_nlp_pipe": True,
            })
            msg.good(f"annotate, {actors} actor(s): {rows[-1]['docs_per_second']} docs/s "
                     f"(steady {rows[-1]['steady_docs_per_second']}, startup {stats.startup_seconds:.1f} s)")
    finally:
        ray.shutdown()
    by_actors = {r["actors"]: r for r in rows if r["system"] == "annotate"}
    result = {"pipeline": str(pipeline), "source": str(source), "date": time.strftime("%Y-%m-%d"),
              "cpu_count": os.cpu_count(), "rows": rows}
    if 1 in by_actors and 2 in by_actors:
        result["scaling_efficiency_1_to_2"] = round(
            by_actors[2]["steady_docs_per_second"] / (2 * by_actors[1]["steady_docs_per_second"]), 3
        )
        msg.info(f"scaling efficiency 1 -> 2 actors: {result['scaling_efficiency_1_to_2']}")
    output_path.parent.mkdir(parents=True, exist_ok=True)
    output_path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf8")


if __name__ == "__main__":
    typer.run(main)

"""The BINDER head's own CPU time per 1,000 words at inference: binder_ner's
`predict` and `set_annotations` on documents the transformer has already
run on, with span scores from one vector per candidate (the way training
computes them) against the factored scores inference uses
(`spacy_binder.torch_binder.factored_span_scores`).

Protocol (fixed before the first run): the test split as documents (as
`int8_speed.py` makes them), the transformer run once and its output kept;
then --rounds rounds, each timing both variants in turn on the same docs;
the best round of each counts. One process, torch on its default threads.
Prints the figures and the largest score difference between the variants,
and saves one row per variant.
"""
import time
from pathlib import Path
from typing import Dict, List, Tuple

import numpy
import spacy
import srsly
import torch
import typer
from spacy.language import Language
from spacy.tokens import Doc, DocBin
from wasabi import msg

import project_scripts  # noqa: F401  (project/scripts on the path)
from evaluate_documents import join_documents
from spacy_binder.torch_binder import BinderHead

VARIANTS = {"candidate vectors": False, "factored": True}


def transformer_outputs(nlp: Language, texts: List[str], batch_size: int) -> List[Doc]:
    """Docs after every component before binder_ner (their output kept)."""
    docs = [nlp.make_doc(text) for text in texts]
    for name, component in nlp.pipeline:
        if name == "binder_ner":
            break
        docs = list(component.pipe(docs, batch_size=batch_size))
    return docs


def head_seconds(nlp: Language, batches: List[List[Doc]]) -> Tuple[float, float, List[numpy.ndarray]]:
    binder = nlp.get_pipe("binder_ner")
    start = time.perf_counter()
    outputs = [binder.predict(batch) for batch in batches]
    predicted = time.perf_counter()
    for batch, output in zip(batches, outputs):
        binder.set_annotations(batch, output)
    annotated = time.perf_counter()
    scores = [binder.model.ops.to_numpy(output.scores.span) for output in outputs if output is not None]
    return predicted - start, annotated - predicted, scores


def main(
    model: Path = typer.Argument(..., help="Trained pipeline folder", exists=True, file_okay=False),
    docs_path: Path = typer.Argument(..., help="Test docs (.spacy)", exists=True, dir_okay=False),
    dataset: str = typer.Option(..., "--dataset", help="Dataset name for the rows"),
    output: Path = typer.Option(..., "--output", "-o", help="JSON file for the rows", dir_okay=False),
    sentences_per_doc: int = typer.Option(10, "--sentences-per-doc", help="Sentences per document (sentence corpora)"),
    rounds: int = typer.Option(7, "--rounds", min=1),
    batch_size: int = typer.Option(32, "--batch-size", min=1),
) -> None:
    nlp = spacy.load(model)
    nlp.get_pipe("binder_ner").cfg["free_transformer_output"] = False  # the head runs again on the same docs
    documents, unit = join_documents(list(DocBin().from_disk(docs_path).get_docs(nlp.vocab)), sentences_per_doc)
    docs = transformer_outputs(nlp, [doc.text for doc in documents], batch_size)
    n_words = sum(len(doc) for doc in docs)
    batches = [docs[i : i + batch_size] for i in range(0, len(docs), batch_size)]
    best: Dict[str, Tuple[float, float]] = {name: (float("inf"), float("inf")) for name in VARIANTS}
    scores: Dict[str, List[numpy.ndarray]] = {}
    for round_ in range(rounds + 1):  # the first is a warm-up
        for name, factored in VARIANTS.items():
            BinderHead.factored_scores = factored
            predict, annotate, scores[name] = head_seconds(nlp, batches)
            if round_:
                best[name] = (min(best[name][0], predict), min(best[name][1], annotate))
    difference = max(float(numpy.abs(a - b).max()) for a, b in zip(*scores.values()) if a.size)
    rows = []
    for name, (predict, annotate) in best.items():
        row = {
            "dataset": dataset,
            "span_scores": name,
            "predict_ms_per_1000_words": round(predict * 1e6 / n_words, 2),
            "set_annotations_ms_per_1000_words": round(annotate * 1e6 / n_words, 2),
            "head_ms_per_1000_words": round((predict + annotate) * 1e6 / n_words, 2),
            "max_span_score_difference": difference,
            "docs": len(docs),
            "unit": unit,
            "words": n_words,
            "rounds": rounds,
            "batch_size": batch_size,
            "torch_threads": torch.get_num_threads(),
        }
        rows.append(row)
        msg.text(f"{dataset}, {name}: predict {row['predict_ms_per_1000_words']} + set_annotations "
                 f"{row['set_annotations_ms_per_1000_words']} = {row['head_ms_per_1000_words']} ms per 1,000 words")
    msg.good(f"{dataset}: factored {rows[0]['head_ms_per_1000_words'] / rows[1]['head_ms_per_1000_words']:.2f}x "
             f"faster; largest span score difference {difference:.2e} ({n_words} words)")
    output.parent.mkdir(parents=True, exist_ok=True)
    srsly.write_json(output, rows)


if __name__ == "__main__":
    typer.run(main)

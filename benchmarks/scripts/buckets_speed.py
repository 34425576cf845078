"""Length buckets against spacy-transformers' padded inference: words/s of one
trained pipeline loaded twice, with its transformer as
`spacy-binder.LengthBucketedTransformer.v1` and as spacy-transformers'
`TransformerModel.v3` (same weights, same span getter), on the test split as
sentences and as documents (the corpus's own, or --sentences-per-doc
consecutive sentences joined, as `evaluate_documents.py` makes them).

Protocol (int8_speed.py's): both pipelines in one process, one warm-up pass
each, then --rounds timed rounds alternating on fresh docs; the best round of
each counts. Both should predict the same spans: the docs where a span, a
label or a score (beyond 1e-4) differ are counted in the rows. With
--max-batch-pieces, the bucketed pipeline is also loaded with each of those
bucket sizes and timed in the same rounds (rows: `bucket_sizes`). Peak memory and time of one very long
doc are scaling.py's (--plain-transformer there).
"""
from pathlib import Path
from typing import Any, Dict, List

import spacy
import srsly
import typer
from spacy.language import Language
from spacy.tokens import Doc, DocBin
from wasabi import msg

from spacy_binder import length_buckets

import project_scripts  # noqa: F401  (project/scripts on the path)
from benchmark import fresh_docs
from evaluate_documents import join_documents
from int8_speed import best_seconds

BUCKETED = "spacy-binder.LengthBucketedTransformer.v1"


def plain_transformer_config(model: str) -> Dict[str, Any]:
    """Overrides that load `model` with spacy-transformers' TransformerModel.v3
    in place of LengthBucketedTransformer.v1 (the other settings kept)."""
    if not (Path(model) / "config.cfg").is_file():
        msg.fail(f"{model} is not a pipeline folder (no config.cfg)", exits=1)
    config = spacy.util.load_config(Path(model) / "config.cfg", interpolate=False)
    transformer = dict(config["components"]["transformer"]["model"])
    if transformer.get("@architectures") != BUCKETED:
        msg.fail(f"{model}'s transformer is {transformer.get('@architectures')}, not {BUCKETED}", exits=1)
    transformer.pop("max_batch_pieces", None)
    transformer["@architectures"] = "spacy-transformers.TransformerModel.v3"
    return {"components.transformer.model": transformer}


def predictions(nlp: Language, documents: List[Doc], spans_key: str, batch_size: int) -> List[Any]:
    out = []
    for doc in nlp.pipe(fresh_docs(nlp, documents), batch_size=batch_size):
        group = doc.spans.get(spans_key, [])
        scores = list(group.attrs.get("scores", [])) if len(group) else []
        out.append(([(s.start, s.end, s.label_) for s in group], scores, [(e.start, e.end, e.label_) for e in doc.ents]))
    return out


def n_different(padded: List[Any], bucketed: List[Any]) -> int:
    """Docs whose spans, labels or scores (beyond float noise) differ."""
    return sum(
        spans != b_spans or ents != b_ents or any(abs(a - b) > 1e-4 for a, b in zip(scores, b_scores))
        for (spans, scores, ents), (b_spans, b_scores, b_ents) in zip(padded, bucketed)
    )


def main(
    model: Path = typer.Argument(..., help="Trained pipeline folder whose transformer is LengthBucketedTransformer.v1", exists=True, file_okay=False),
    docs_path: Path = typer.Argument(..., help="Test docs (.spacy)", exists=True, dir_okay=False),
    dataset: str = typer.Option(..., "--dataset", help="Dataset name for the rows"),
    output: Path = typer.Option(..., "--output", "-o", help="JSON file for the rows", dir_okay=False),
    sentences_per_doc: int = typer.Option(10, "--sentences-per-doc", help="Sentences per document (sentence corpora)"),
    rounds: int = typer.Option(3, "--rounds", min=1, help="Timed rounds per pipeline (best counts)"),
    batch_size: int = typer.Option(32, "--batch-size", min=1, help="nlp.pipe batch size"),
    spans_key: str = typer.Option("sc", "--spans-key"),
    max_batch_pieces: str = typer.Option("", "--max-batch-pieces", help="Comma-separated bucket sizes to time too (the pipeline's own is 'bucketed')"),
    no_heap_release: bool = typer.Option(False, "--no-heap-release", help="Never give freed heap pages back between buckets (spacy_binder.memory), for every pipeline"),
) -> None:
    """Words/s with and without length buckets, side by side, on sentences and documents."""
    if no_heap_release:
        length_buckets.HEAP_GROWTH_LIMIT = float("inf")
    pipelines = {"padded": spacy.load(model, config=plain_transformer_config(str(model))), "bucketed": spacy.load(model)}
    own_size = pipelines["bucketed"].config["components"]["transformer"]["model"]["max_batch_pieces"]
    sizes = sorted({int(size) for size in max_batch_pieces.split(",") if size.strip()}, reverse=True)
    names = {size: "bucketed" if size == own_size else f"bucketed_{size}" for size in sizes}
    for size, name in names.items():
        if name not in pipelines:
            pipelines[name] = spacy.load(model, config={"components.transformer.model.max_batch_pieces": size})
    sentences = list(DocBin().from_disk(docs_path).get_docs(pipelines["bucketed"].vocab))
    documents, unit = join_documents(sentences, sentences_per_doc)
    rows = []
    for view, docs in (("sentences", sentences), ("documents", documents)):
        predicted = {name: predictions(nlp, docs, spans_key, batch_size) for name, nlp in pipelines.items()}
        different = n_different(predicted["padded"], predicted["bucketed"])
        words = sum(len(doc) for doc in docs)
        best = best_seconds(pipelines, docs, rounds, batch_size)
        row = {
            "dataset": dataset,
            "view": view,
            "docs": len(docs),
            "words": words,
            "padded_words_per_second": round(words / best["padded"], 1),
            "bucketed_words_per_second": round(words / best["bucketed"], 1),
            "speedup": round(best["padded"] / best["bucketed"], 3),
            "docs_with_other_predictions": different,
            "rounds": rounds,
            "batch_size": batch_size,
            "max_batch_pieces": own_size,
            "heap_release": not no_heap_release,
        }
        if sizes:
            row["bucket_sizes"] = [
                {
                    "max_batch_pieces": size,
                    "words_per_second": round(words / best[names[size]], 1),
                    "docs_with_other_predictions": n_different(predicted["padded"], predicted[names[size]]),
                }
                for size in sizes
            ]
        rows.append(row)
        msg.text(f"{view} ({len(docs)} docs, {words} words): padded {row['padded_words_per_second']:.0f} words/s, "
                 f"bucketed {row['bucketed_words_per_second']:.0f} words/s, x{row['speedup']:.2f}; "
                 f"{different} docs with other predictions")
        for entry in row.get("bucket_sizes", []):
            msg.text(f"  buckets of {entry['max_batch_pieces']} pieces: {entry['words_per_second']:.0f} words/s, "
                     f"{entry['docs_with_other_predictions']} docs with other predictions")
    msg.info(f"documents: {unit}")
    output.parent.mkdir(parents=True, exist_ok=True)
    srsly.write_json(output, rows)


if __name__ == "__main__":
    typer.run(main)

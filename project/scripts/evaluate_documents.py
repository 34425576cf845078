"""Test scores of a pipeline on sentences and on documents, side by side.

Users call `nlp(text)` on whole documents. This scores the same gold twice,
each time from plain text (no sentence boundaries, no gold tokens), as
`spacy evaluate` does:
- sentences: every sentence of the corpus given alone;
- documents: the corpus's own documents when it has them (docs of several
  sentences, e.g. CoNLL-2003 articles; or consecutive sentence docs that
  share a `doc.user_data["doc_id"]`, e.g. GENIA abstracts), else groups of
  `--sentences-per-doc` consecutive sentences joined into one text.
Gold mentions that cross a sentence boundary exist only in the document
view; they are counted.
"""
import warnings
from itertools import groupby
from pathlib import Path
from typing import Any, Dict, List, Tuple

import spacy
import srsly
import typer
from spacy.language import Language
from spacy.tokens import Doc, DocBin
from spacy.training import Example
from wasabi import msg

from spacy_binder.spans import get_gold_spans, sentence_gold_doc


def _has_sentences(doc: Doc) -> bool:
    return doc.has_annotation("SENT_START") and len(list(doc.sents)) > 1


def split_sentences(docs: List[Doc], spans_key: str) -> Tuple[List[Doc], int]:
    """One gold doc per sentence, with the gold mentions inside it.

    RETURNS (Tuple[List[Doc], int]): the sentence docs, and the number of
        gold mentions left out because they cross a sentence boundary.
    """
    out, crossing = [], 0
    for doc in docs:
        if not _has_sentences(doc):
            out.append(doc)
            continue
        nested = list(get_gold_spans(doc, spans_key))
        out.extend(sentence_gold_doc(sent)[0] for sent in doc.sents)
        crossing += sum(1 for s in nested if s.sent.start != doc[s.end - 1].sent.start)
    return out, crossing


def join_documents(docs: List[Doc], sentences_per_doc: int) -> Tuple[List[Doc], str]:
    """The corpus's own documents, or groups of consecutive sentence docs:
    those that share a doc_id, else `sentences_per_doc` of them."""
    if any(_has_sentences(doc) for doc in docs):
        return docs, "corpus documents"
    if docs and all(doc.user_data.get("doc_id") is not None for doc in docs):
        groups = [list(group) for _, group in groupby(docs, key=lambda doc: doc.user_data["doc_id"])]
        with warnings.catch_warnings():  # W102: doc_id is not merged, as intended
            warnings.filterwarnings("ignore", message=r"\[W102\]")
            return [Doc.from_docs(group) for group in groups], "corpus documents (by doc_id)"
    groups = [docs[i : i + sentences_per_doc] for i in range(0, len(docs), sentences_per_doc)]
    return [Doc.from_docs(group) for group in groups], f"{sentences_per_doc} sentences per doc"


def score(nlp: Language, gold_docs: List[Doc], batch_size: int) -> Dict[str, Any]:
    examples = [Example(nlp.make_doc(doc.text), doc) for doc in gold_docs]
    return nlp.evaluate(examples, batch_size=batch_size)


def evaluate_documents(
    nlp: Language, docs: List[Doc], *, dataset: str, sentences_per_doc: int, spans_key: str, batch_size: int = 32
) -> List[Dict[str, Any]]:
    """One row per view: {"dataset", "view", "docs", "unit", "ents_p/r/f",
    "spans_p/r/f", "gold_crossing_sentences"} (scores in 0-1)."""
    sentences, crossing = split_sentences(docs, spans_key)
    documents, unit = join_documents(docs, sentences_per_doc)
    rows = []
    for view, gold, view_unit in (("sentences", sentences, "1 sentence per doc"), ("documents", documents, unit)):
        scores = score(nlp, gold, batch_size)
        row = {"dataset": dataset, "view": view, "docs": len(gold), "unit": view_unit,
               "gold_crossing_sentences": crossing}
        for prefix, name in (("ents", "ents"), (f"spans_{spans_key}", "spans")):
            for metric in ("p", "r", "f"):
                row[f"{name}_{metric}"] = scores.get(f"{prefix}_{metric}")
        rows.append(row)
    return rows


def markdown(rows: List[Dict[str, Any]]) -> str:
    def pct(value):
        return "-" if value is None else f"{100 * value:.2f}"

    lines = [
        "| dataset | view | docs | ents P | ents R | ents F | spans P | spans R | spans F |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['dataset']} | {r['view']} ({r['unit']}) | {r['docs']} | {pct(r['ents_p'])} | {pct(r['ents_r'])} | "
            f"{pct(r['ents_f'])} | {pct(r['spans_p'])} | {pct(r['spans_r'])} | {pct(r['spans_f'])} |"
        )
    return "\n".join(lines)


def main(
    model: str = typer.Argument(..., help="Pipeline folder or package name"),
    corpus: Path = typer.Argument(..., help="Gold .spacy file", exists=True, dir_okay=False),
    output: Path = typer.Option(None, "--output", help="JSON file for the rows"),
    dataset: str = typer.Option(None, "--dataset", help="Dataset name in the rows (default: the file's stem)"),
    sentences_per_doc: int = typer.Option(10, "--sentences-per-doc", help="Sentences joined per document (sentence corpora)"),
    spans_key: str = typer.Option("sc", "--spans-key"),
    get_spans: str = typer.Option(None, "--get-spans", help="Override the transformer's span getter: 'segments', 'strided' or 'sentences'"),
) -> None:
    """Print (and save) sentence-level vs document-level P/R/F."""
    overrides = {}
    if get_spans:
        getters = {
            "segments": {"@span_getters": "spacy-binder.segment_spans.v1", "max_length": 128},
            "strided": {"@span_getters": "spacy-transformers.strided_spans.v1", "window": 128, "stride": 96},
            "sentences": {"@span_getters": "spacy-transformers.sent_spans.v1"},
        }
        if get_spans not in getters:
            msg.fail(f"--get-spans must be one of {', '.join(getters)}, got {get_spans!r}", exits=1)
        overrides = {"components": {"transformer": {"model": {"get_spans": getters[get_spans]}}}}
    nlp = spacy.load(model, config=overrides)
    docs = list(DocBin().from_disk(corpus).get_docs(nlp.vocab))
    rows = evaluate_documents(nlp, docs, dataset=dataset or corpus.stem, sentences_per_doc=sentences_per_doc,
                              spans_key=spans_key)
    for row in rows:
        row["get_spans"] = get_spans or "as saved"
    print(markdown(rows))
    if rows[0]["gold_crossing_sentences"]:
        msg.warn(f"{rows[0]['gold_crossing_sentences']} gold mentions cross a sentence boundary: "
                 "they are scored in the document view only")
    if output:
        output.parent.mkdir(parents=True, exist_ok=True)
        srsly.write_json(output, rows)
        msg.good(f"Saved {output}")


if __name__ == "__main__":
    typer.run(main)

"""Where pipelines go wrong on one test corpus, side by side: each
predicted entity (`doc.ents`) that is not gold is sorted into a kind, and
each gold entity that is not predicted likewise.

False positives: `boundary` (a missed gold entity of the same label
overlaps it), `label` (a gold entity has its exact extent, another
label), `spurious` (no gold entity overlaps it); `other` for the rest.
False negatives: `boundary`, `label` likewise, `missed` (no prediction
overlaps it), `other`. Matching is by character offsets, so gold and
predicted tokenizations may differ (spaCy's scorer matches by aligned
tokens instead, so its F can differ by a little where they do). Every
pipeline reads the plain text, as users' `nlp(text)` does; with `--view
sentences`, each sentence of a gold doc that has sentence starts is read
alone (the sentence docs of project/scripts/evaluate_documents.py).
"""
from collections import Counter
from pathlib import Path
from typing import Any, Dict, Iterable, List, Set, Tuple

import spacy
import srsly
import typer
from spacy.scorer import PRFScore
from spacy.tokens import Doc, DocBin
from wasabi import msg

import project_scripts  # noqa: F401  (the user project's scripts, importable)
from evaluate_documents import split_sentences

Mention = Tuple[int, int, str]
FP_KINDS = ("boundary", "label", "spurious", "other")
FN_KINDS = ("boundary", "label", "missed", "other")


def mentions(doc: Doc) -> Set[Mention]:
    return {(ent.start_char, ent.end_char, ent.label_) for ent in doc.ents}


def _overlaps(a: Mention, b: Mention) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def _kind(wrong: Mention, unmatched: Iterable[Mention], everything: Iterable[Mention], none_overlap: str) -> str:
    unmatched, everything = list(unmatched), list(everything)
    if any(m[2] == wrong[2] and _overlaps(m, wrong) for m in unmatched):
        return "boundary"
    if any(m[:2] == wrong[:2] for m in everything):
        return "label"
    if not any(_overlaps(m, wrong) for m in everything):
        return none_overlap
    return "other"


def error_kinds(gold: Set[Mention], predicted: Set[Mention]) -> Counter:
    """Counts of tp, fp_<kind> and fn_<kind> for one doc."""
    counts = Counter(tp=len(gold & predicted))
    false_pos, false_neg = predicted - gold, gold - predicted
    for mention in false_pos:
        counts["fp_" + _kind(mention, false_neg, gold, "spurious")] += 1
    for mention in false_neg:
        counts["fn_" + _kind(mention, false_pos, predicted, "missed")] += 1
    return counts


def gold_docs(path: Path, view: str, vocab) -> List[Doc]:
    docs = list(DocBin().from_disk(path).get_docs(vocab))
    # the spans key feeds only the crossing count, which is not used here
    return docs if view == "documents" else split_sentences(docs, spans_key="sc")[0]


def count_errors(nlp, docs: List[Doc], batch_size: int = 32) -> Counter:
    counts = Counter()
    for gold, predicted in zip(docs, nlp.pipe((doc.text for doc in docs), batch_size=batch_size)):
        counts += error_kinds(mentions(gold), mentions(predicted))
    return counts


def summary(system: str, counts: Counter) -> Dict[str, Any]:
    prf = PRFScore(
        tp=counts["tp"],
        fp=sum(counts["fp_" + kind] for kind in FP_KINDS),
        fn=sum(counts["fn_" + kind] for kind in FN_KINDS),
    )
    row = {"system": system, "tp": prf.tp, "fp": prf.fp, "fn": prf.fn}
    row.update(p=round(100 * prf.precision, 2), r=round(100 * prf.recall, 2), f=round(100 * prf.fscore, 2))
    row.update({f"fp_{kind}": counts[f"fp_{kind}"] for kind in FP_KINDS})
    row.update({f"fn_{kind}": counts[f"fn_{kind}"] for kind in FN_KINDS})
    return row


def markdown(rows: List[Dict[str, Any]]) -> str:
    fields = ["p", "r", "f", "tp"] + [f"fp_{k}" for k in FP_KINDS] + [f"fn_{k}" for k in FN_KINDS]
    lines = ["| system | " + " | ".join(fields) + " |", "| --- |" + " ---: |" * len(fields)]
    for row in rows:
        lines.append(f"| {row['system']} | " + " | ".join(str(row[name]) for name in fields) + " |")
    return "\n".join(lines)


def main(
    corpus: Path = typer.Argument(..., exists=True, help="Gold .spacy file"),
    pipelines: List[str] = typer.Argument(..., help="NAME=PATH of each pipeline"),
    view: str = typer.Option("sentences", "--view", help="'sentences' (each sentence alone) or 'documents'"),
    output: Path = typer.Option(None, "--output", help="JSON rows"),
):
    if view not in ("sentences", "documents"):
        msg.fail(f"--view must be 'sentences' or 'documents', got {view!r}", exits=1)
    named = []
    for item in pipelines:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            msg.fail(f"Give each pipeline as NAME=PATH, got {item!r}", exits=1)
        named.append((name, path))
    # one gold corpus for all: mentions are compared as (start char, end char, label text)
    docs = gold_docs(corpus, view, spacy.blank("xx").vocab)
    rows = []
    for name, path in named:
        rows.append({**summary(name, count_errors(spacy.load(path), docs)), "view": view, "docs": len(docs)})
    print(markdown(rows))
    if output is not None:
        srsly.write_json(output, rows)
        msg.good(f"Saved {output}")


if __name__ == "__main__":
    typer.run(main)

"""How far below `untrained_threshold` a type added by its description is
found: a pipeline trained without TYPE, TYPE added with add_label, the docs
of a gold split predicted once with untrained_threshold at its lowest, then
TYPE's P/R/F (doc.spans) for each bar. With decision "span" a span is kept
exactly when its own score is above the bar, so filtering one prediction by
score gives each bar's output (tested; a span whose float32 score rounds to
the bar itself would count as below it).
"""
from pathlib import Path
from typing import Dict, List

import srsly
import typer
from wasabi import msg


def main(
    pipeline: Path = typer.Argument(..., help="A pipeline trained without TYPE", exists=True, file_okay=False),
    gold_path: Path = typer.Argument(..., help="Gold .spacy (dev: choose a bar without looking at test)", exists=True),
    label: str = typer.Option(..., "--type"),
    descriptions: Path = typer.Option(..., "--descriptions", exists=True, dir_okay=False),
    bars: str = typer.Option("0.5,0.3,0.2,0.1,0.05,0.02", "--bars"),
    spans_key: str = typer.Option("sc", "--spans-key"),
    limit: int = typer.Option(0, "--limit", help="First N docs only (0: all)"),
    output: Path = typer.Option(Path("metrics/zero_shot_thresholds.json"), "--output"),
) -> None:
    import spacy
    from spacy.tokens import DocBin

    from spacy_binder.spans import get_gold_spans

    levels = sorted((float(b) for b in bars.split(",")), reverse=True)
    nlp = spacy.load(pipeline)
    binder = nlp.get_pipe("binder_ner")
    if binder.decision != "span":
        msg.fail(f"decision is {binder.decision!r}: filtering by score needs 'span'", exits=1)
    binder.add_label(label, description=srsly.read_json(descriptions)[label])
    binder.untrained_threshold = min(levels)
    gold_docs = list(DocBin().from_disk(gold_path).get_docs(nlp.vocab))
    if limit:
        gold_docs = gold_docs[:limit]
    gold, found = set(), []  # (doc, start, end) of TYPE; (score, doc, start, end) predicted
    for i, (ref, doc) in enumerate(zip(gold_docs, nlp.pipe(ref.text for ref in gold_docs))):
        aligned = {(s.start_char, s.end_char) for s in get_gold_spans(ref, spans_key) if s.label_ == label}
        gold |= {(i, *offsets) for offsets in aligned}
        group = doc.spans[spans_key]
        for span, score in zip(group, group.attrs["scores"].tolist()):
            if span.label_ == label:
                found.append((score, i, span.start_char, span.end_char))
    rows: List[Dict[str, float]] = []
    for bar in levels:
        kept = {(i, s, e) for score, i, s, e in found if score > bar}
        tp = len(kept & gold)
        p = 100 * tp / len(kept) if kept else 0.0
        r = 100 * tp / len(gold) if gold else 0.0
        f = 2 * p * r / (p + r) if p + r else 0.0
        rows.append({"type": label, "untrained_threshold": bar, "predicted": len(kept), "gold": len(gold), "p": round(p, 2), "r": round(r, 2), "f": round(f, 2)})
        msg.text(f"bar {bar}: {len(kept)} predicted, P {p:.2f} R {r:.2f} F {f:.2f}")
    output.parent.mkdir(parents=True, exist_ok=True)
    srsly.write_json(output, rows)
    msg.good(f"Saved {output}")


if __name__ == "__main__":
    typer.run(main)

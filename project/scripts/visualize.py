"""Render the first N test docs with displaCy's span view: the gold mentions,
then the trained pipeline's predictions on the doc's text (nested spans in
`doc.spans[spans_key]`, each with its score after its label), to one HTML page.
"""
import warnings
from pathlib import Path
from typing import Dict, Iterable, List

import spacy
import typer
from spacy import displacy
from spacy.tokens import Doc, DocBin
from wasabi import msg

from spacy_binder.display import span_view_with_scores

PALETTE = ["#7aecec", "#bfeeb7", "#feca74", "#ff9561", "#aa9cfc", "#c887fb", "#9cc9cc", "#ffeb80", "#ff8197", "#e4e7d2"]


def label_colors(labels: Iterable[str]) -> Dict[str, str]:
    """One palette color per label, in sorted order (cycling if needed).

    labels (Iterable[str]): The labels.
    RETURNS (Dict[str, str]): label -> CSS color.
    """
    return {label: PALETTE[i % len(PALETTE)] for i, label in enumerate(sorted(set(labels)))}


def render_gold_and_predicted(
    nlp: spacy.Language, gold_docs: List[Doc], spans_key: str = "sc"
) -> str:
    """Run `nlp` on the text of each gold doc and render both in span view,
    the predictions with their scores.

    nlp (Language): The trained pipeline.
    gold_docs (List[Doc]): Docs with gold spans in `doc.spans[spans_key]`.
    spans_key (str): The spans key to show.
    RETURNS (str): A complete HTML page.
    """
    predicted = list(nlp.pipe(doc.text for doc in gold_docs))
    shown: List[Doc] = []
    for i, (gold, pred) in enumerate(zip(gold_docs, predicted)):
        gold.user_data["title"] = f"Doc {i}: gold ({len(gold.spans.get(spans_key, []))} spans)"
        pred.user_data["title"] = f"Doc {i}: predicted ({len(pred.spans.get(spans_key, []))} spans)"
        shown += [gold, pred]
    labels = [span.label_ for doc in shown for span in doc.spans.get(spans_key, [])]
    options = {"spans_key": spans_key, "colors": label_colors(labels)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # W117: a doc without spans
        views = [span_view_with_scores(doc, spans_key) for doc in shown]
    return displacy.render(views, style="span", options=options, page=True, jupyter=False, manual=True)


def main(
    model: str = typer.Argument(..., help="Trained pipeline (folder or package name)"),
    data_path: Path = typer.Argument(..., help="Test .spacy file with gold spans", exists=True, dir_okay=False),
    output_path: Path = typer.Argument(..., help="HTML file to write", dir_okay=False),
    n_docs: int = typer.Option(20, "--n-docs", "-n", help="Number of docs to render"),
    spans_key: str = typer.Option("sc", "--spans-key", help="doc.spans key to show"),
    gpu_id: int = typer.Option(-1, "--gpu-id", "-g", help="GPU id, or -1 for CPU"),
) -> None:
    """Render gold and predicted nested spans of the first N docs to HTML."""
    if gpu_id >= 0:
        spacy.require_gpu(gpu_id)
    nlp = spacy.load(model)
    docs = list(DocBin().from_disk(data_path).get_docs(nlp.vocab))[:n_docs]
    if not docs:
        msg.fail(f"No docs in {data_path}", exits=1)
    html = render_gold_and_predicted(nlp, docs, spans_key)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    output_path.write_text(html, encoding="utf8")
    msg.good(f"Rendered {len(docs)} docs (gold and predicted) to {output_path}")


if __name__ == "__main__":
    typer.run(main)

"""displaCy's span view of binder_ner's predictions, with their scores."""
from typing import Any, Dict

from spacy import displacy
from spacy.tokens import Doc


def span_view_with_scores(doc: Doc, spans_key: str = "sc", *, digits: int = 2) -> Dict[str, Any]:
    """displaCy's manual data for the span view of doc.spans[spans_key],
    with each span's score after its label ("ORG 0.93").

    The span view prints nothing of a span but its label and its
    knowledge-base id, so the score takes the id's place: it is printed
    after the label in normal weight, and the label, with the colors keyed
    by it, stays as it is. A group without `attrs["scores"]` (gold spans)
    keeps bare labels. Render with
    `displacy.render(data, style="span", manual=True)`.

    doc (Doc): a doc binder_ner annotated (or any doc with spans).
    spans_key (str): the key of the span group to show.
    digits (int): decimals of the scores shown.
    RETURNS (Dict[str, Any]): the doc's span view data, as
        `displacy.parse_spans` gives it, with the scores added.
    """
    data = displacy.parse_spans(doc, {"spans_key": spans_key})
    group = doc.spans.get(spans_key)
    scores = None if group is None else group.attrs.get("scores")
    if scores is not None:
        if len(scores) != len(data["spans"]):
            raise ValueError(
                f"doc.spans['{spans_key}'] has {len(data['spans'])} spans but "
                f"{len(scores)} scores in attrs['scores']."
            )
        for span, score in zip(data["spans"], scores):
            span["kb_id"] = f"{float(score):.{digits}f}"
    return data

"""What goes in and out of `annotate`, one document at a time: an input row
checked into (id, text) or an error, and a predicted Doc turned into its
output record. Pure functions, so that the Ray actor and `nlp.pipe` give the
same records."""
import json
from typing import Any, Dict, List, Optional, Tuple

from spacy.tokens import Doc, Span

# `error` of a record that parsed: None; of one that did not: why
Record = Dict[str, Any]


def parse_input_row(row: Any, id_field: str, text_field: str) -> Tuple[Any, Optional[str], Optional[str]]:
    """The id and text of one input row, or the reason it cannot be annotated.

    row (Any): a JSON object (dict) or the text of one JSONL line.
    RETURNS (Tuple[Any, Optional[str], Optional[str]]): (id, text, error);
        text is None whenever error is set, id is None when the row has none.
    """
    if isinstance(row, str):
        try:
            row = json.loads(row)
        except json.JSONDecodeError as err:
            return None, None, f"the line is not valid JSON ({err.msg}): {_preview(row)}"
    if not isinstance(row, dict):
        return None, None, f"the line is a JSON {type(row).__name__}, not an object: {_preview(json.dumps(row))}"
    doc_id = row.get(id_field)
    if doc_id is None:
        return None, None, f"the record has no '{id_field}' field (set --id-field): {_preview(json.dumps(row))}"
    if isinstance(doc_id, bool) or not isinstance(doc_id, (str, int)):
        return json.dumps(doc_id), None, f"'{id_field}' is a {type(doc_id).__name__}; ids must be strings or integers"
    if text_field not in row:
        return doc_id, None, f"the record has no '{text_field}' field (set --text-field)"
    text = row[text_field]
    if not isinstance(text, str):
        return doc_id, None, f"'{text_field}' is {'null' if text is None else 'a ' + type(text).__name__}, not a string"
    if not text:
        return doc_id, None, f"'{text_field}' is empty"
    return doc_id, text, None


def doc_record(doc: Doc, doc_id: Any, spans_key: str) -> Record:
    """The output record of a predicted doc: character offsets, labels and
    scores of doc.ents and of the nested doc.spans[spans_key]. An entity's
    score is its span's score in the group (None where the group has no
    such span, as for entities set by a component other than binder_ner)."""
    group = doc.spans[spans_key] if spans_key in doc.spans else None
    spans: List[Dict[str, Any]] = []
    score_of: Dict[Tuple[int, int, str], float] = {}
    if group is not None:
        scores = group.attrs.get("scores")
        for i, span in enumerate(group):
            score = None if scores is None else float(scores[i])
            spans.append(_span_dict(span, score))
            score_of[(span.start, span.end, span.label_)] = score
    ents = [_span_dict(ent, score_of.get((ent.start, ent.end, ent.label_))) for ent in doc.ents]
    return {"id": doc_id, "ents": ents, "spans": spans, "error": None}


def error_record(doc_id: Any, error: str) -> Record:
    return {"id": doc_id, "ents": [], "spans": [], "error": error}


def _span_dict(span: Span, score: Optional[float]) -> Dict[str, Any]:
    return {"start": span.start_char, "end": span.end_char, "label": span.label_, "score": score}


def _preview(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[:limit] + "..."

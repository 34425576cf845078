"""Scoring of nested spans (doc.spans[spans_key]) and flat entities (doc.ents)."""
from typing import Any, Callable, Dict, Iterable

from spacy.scorer import Scorer, get_ner_prf
from spacy.tokens import Doc
from spacy.training import Example
from spacy.util import registry

from .spans import get_gold_spans


def binder_score(
    examples: Iterable[Example],
    *,
    spans_key: str = "sc",
    set_spans: bool = True,
    set_ents: bool = True,
    **kwargs: Any,
) -> Dict[str, Any]:
    """Exact-match P/R/F of the nested spans (`spans_<key>_p/r/f` and
    `spans_<key>_per_type`) and of the flat entities (`ents_p/r/f` and
    `ents_per_type`), for the outputs the component writes.

    A reference doc without doc.spans[spans_key] is scored against its
    doc.ents, the same rule the component trains with.
    """
    examples = list(examples)
    scores: Dict[str, Any] = {}
    if set_spans:

        def getter(doc: Doc, attr: str):
            return get_gold_spans(doc, spans_key)

        def has_annotation(doc: Doc) -> bool:
            return spans_key in doc.spans or doc.has_annotation("ENT_IOB")

        scores.update(
            Scorer.score_spans(
                examples,
                f"spans_{spans_key}",
                getter=getter,
                has_annotation=has_annotation,
                labeled=True,
                allow_overlap=True,
            )
        )
    if set_ents:
        scores.update(get_ner_prf(examples))
    return scores


@registry.scorers("spacy-binder.binder_scorer.v1")
def make_binder_scorer() -> Callable[..., Dict[str, Any]]:
    return binder_score

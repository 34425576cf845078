"""What the transformer reads: the segments binder_ner scores in."""
from typing import Callable, Iterable, List

from spacy.tokens import Doc, Span
from spacy_transformers.util import registry

from .spans import DEFAULT_MAX_SEGMENT_LENGTH, segment_bounds


@registry.span_getters("spacy-binder.segment_spans.v1")
def configure_segment_spans(
    max_length: int = DEFAULT_MAX_SEGMENT_LENGTH,
) -> Callable[[Iterable[Doc]], List[List[Span]]]:
    """A span getter for spacy-transformers that gives the transformer one
    window per binder_ner segment: each sentence of the doc (spaCy's
    rule-based Sentencizer's when none are set), cut into pieces of at most
    `max_length` tokens. A model trained on sentences then reads sentences
    at inference too, however the input was segmented. Set `max_length` to
    binder_ner's `max_segment_length`.
    """
    if max_length < 1:
        raise ValueError(f"segment_spans max_length must be >= 1, got {max_length}.")

    def get_segment_spans(docs: Iterable[Doc]) -> List[List[Span]]:
        return [[doc[start:end] for start, end in segment_bounds(doc, max_length)] for doc in docs]

    return get_segment_spans

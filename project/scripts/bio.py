"""IOB tag decoding and gold-Doc building shared by the flat-corpus converters."""
from pathlib import Path
from typing import List, Optional, Sequence, Tuple, Union

from spacy.tokens import Doc, Span
from spacy.vocab import Vocab

SpanTuple = Tuple[int, int, str]


class FormatError(ValueError):
    """A malformed line in a corpus file; the message names file and line."""

    def __init__(self, path: Union[str, Path], line_no: int, message: str) -> None:
        super().__init__(f"{path}, line {line_no}: {message}")


def split_tag(tag: str) -> Tuple[str, str]:
    """Split an IOB tag into (prefix, label): "O" -> ("O", ""), "B-X" -> ("B", "X").

    tag (str): The tag. Raises ValueError unless it is O, B-<label> or I-<label>.
    RETURNS (Tuple[str, str]): The prefix and the label.
    """
    if tag == "O":
        return "O", ""
    prefix, sep, label = tag.partition("-")
    if prefix not in ("B", "I") or not sep or not label:
        raise ValueError(f"unknown tag {tag!r} (expected O, B-<type> or I-<type>)")
    return prefix, label


def check_tag(path: Union[str, Path], line_no: int, tag: str) -> str:
    """Return `tag` if it is a valid IOB tag, else raise FormatError naming the line."""
    try:
        split_tag(tag)
    except ValueError as err:
        raise FormatError(path, line_no, str(err)) from None
    return tag


def tags_to_spans(tags: Sequence[str]) -> Tuple[List[SpanTuple], int]:
    """Decode one sentence of IOB1 or IOB2 tags into entity spans.

    `B-X` always starts an entity. `I-X` continues an entity of type X, and
    starts a new one after `O` or after another type (the IOB1 rule; in IOB2
    input such an `I-X` is an error this repairs).

    tags (Sequence[str]): One tag per token.
    RETURNS (Tuple[List[SpanTuple], int]): (start, end, label) spans with
        exclusive ends, and the number of entities that started with `I-X`.
    """
    spans: List[SpanTuple] = []
    i_starts = 0
    start, label = -1, ""
    for i, tag in enumerate(list(tags) + ["O"]):
        prefix, tag_label = split_tag(tag)
        if prefix == "I" and tag_label == label:
            continue
        if label:
            spans.append((start, i, label))
        start, label = i, tag_label
        i_starts += prefix == "I"
    return spans, i_starts


def make_gold_doc(
    vocab: Vocab,
    words: List[str],
    spans: Sequence[SpanTuple],
    spans_key: str,
    sent_starts: Optional[List[bool]] = None,
) -> Doc:
    """Build a Doc from pre-tokenized words (a space after every token but the
    last) with the gold spans in both `doc.ents` and `doc.spans[spans_key]`.
    """
    spaces = [True] * (len(words) - 1) + [False]
    doc = Doc(vocab, words=words, spaces=spaces, sent_starts=sent_starts)
    ents = [Span(doc, start, end, label=label) for start, end, label in spans]
    doc.ents = ents
    doc.spans[spans_key] = ents
    return doc

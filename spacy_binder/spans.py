"""Candidate spans, gold alignment and decoding, vectorised with NumPy.

All positions are *global* token indices into the batch (the tokens of all
docs concatenated), which is how the torch head sees them. Every candidate
lies inside one segment (see `segment_bounds`): a sentence, cut into pieces
when it is longer than `max_segment_length` tokens. A token starts at most
`max_span_width` candidates, so their number is linear in the number of
tokens. No entity starts or ends on a whitespace token (spaCy's `ner` has
the same rule): such candidates are scored like any other but never
predicted.
"""
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable, Collection, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy
from spacy.pipeline import Sentencizer
from spacy.tokens import Doc, Span
from spacy.training import Example

from .new_types import annotated_rows
from .torch_binder import END, SPAN, START, BinderScores

# Longest segment, in tokens: the "no entity here" anchor pools at most this
# many token vectors, and the transformer reads at most this many at once.
DEFAULT_MAX_SEGMENT_LENGTH = 128


@dataclass
class CandidateBatch:
    """Token, segment and candidate-span layout of a batch of docs.

    doc_offsets (ndarray[n_docs + 1]): first global token of each doc.
    token_segments (ndarray[n_tokens]): segment index of each token.
    n_segments (int): number of segments in the batch.
    span_starts (ndarray[n_candidates]): first token of each candidate.
    span_ends (ndarray[n_candidates]): last token of each candidate (inclusive).
    span_offsets (ndarray[n_tokens + 1]): index of the first candidate that
        starts at each token (candidates are ordered by start, then width).
    token_is_space (ndarray[n_tokens]): whether each token is whitespace.
    """

    doc_offsets: numpy.ndarray
    token_segments: numpy.ndarray
    n_segments: int
    span_starts: numpy.ndarray
    span_ends: numpy.ndarray
    span_offsets: numpy.ndarray
    token_is_space: numpy.ndarray

    @property
    def n_tokens(self) -> int:
        return int(self.doc_offsets[-1])

    @property
    def span_segments(self) -> numpy.ndarray:
        return self.token_segments[self.span_starts]

    @property
    def span_can_be_entity(self) -> numpy.ndarray:
        """Whether each candidate neither starts nor ends on whitespace."""
        return self.can_be_entity(numpy.arange(len(self.span_starts)))

    def can_be_entity(self, rows: numpy.ndarray) -> numpy.ndarray:
        """`span_can_be_entity` of the candidates `rows` only."""
        space = self.token_is_space
        return ~(space[self.span_starts[rows]] | space[self.span_ends[rows]])

    def span_docs(self, starts: numpy.ndarray) -> numpy.ndarray:
        """Doc index of each global token position in `starts`."""
        return numpy.searchsorted(self.doc_offsets, starts, side="right") - 1


# spaCy's rule-based sentence splitter, for docs without sentence boundaries
_SENTENCIZER = Sentencizer()


def segment_bounds(doc: Doc, max_length: int) -> List[Tuple[int, int]]:
    """(start, end) token offsets of the segments of a doc.

    A segment is a sentence: the doc's own when sentence boundaries are set
    (a sentencizer, parser or senter ran, or the corpus set them), else the
    sentences spaCy's rule-based `Sentencizer` finds, without writing them
    to the doc. A sentence longer than `max_length` tokens is cut into
    pieces of near-equal length. So the anchor never pools more than
    `max_length` tokens, and a doc gets the segments its sentences get one
    by one, whatever its length. The transformer's span getter
    `spacy-binder.segment_spans.v1` cuts the same segments, so the encoder
    sees at inference the context it saw in training.
    """
    if max_length < 1:
        raise ValueError(f"max_segment_length must be >= 1, got {max_length}.")
    if len(doc) == 0:
        return []
    if doc.has_annotation("SENT_START"):
        starts = [sent.start for sent in doc.sents]
    else:
        guesses = _SENTENCIZER.predict([doc])[0]
        starts = [i for i, is_start in enumerate(guesses) if is_start]
    bounds = []
    for start, end in zip(starts, starts[1:] + [len(doc)]):
        if end - start <= max_length:  # most sentences: no need to cut
            bounds.append((start, end))
            continue
        n_pieces = -(-(end - start) // max_length)
        edges = numpy.linspace(start, end, n_pieces + 1).round().astype(int)
        bounds.extend(zip(edges[:-1].tolist(), edges[1:].tolist()))
    return bounds


def segment_lengths(doc: Doc, max_length: int) -> List[int]:
    """Token lengths of the segments of a doc (see `segment_bounds`)."""
    return [end - start for start, end in segment_bounds(doc, max_length)]


def enumerate_candidates(
    docs: Sequence[Doc], max_span_width: int, max_segment_length: int = DEFAULT_MAX_SEGMENT_LENGTH
) -> CandidateBatch:
    """Every span of at most `max_span_width` tokens inside one segment.

    A segment of L tokens yields sum(min(max_span_width, L - i) for i < L)
    candidates, never more than L * max_span_width.
    """
    if max_span_width < 1:
        raise ValueError(f"max_span_width must be >= 1, got {max_span_width}.")
    doc_lengths = numpy.asarray([len(doc) for doc in docs], dtype="int64")
    doc_offsets = numpy.concatenate([[0], numpy.cumsum(doc_lengths)]).astype("int64")
    seg_lengths = numpy.asarray(
        [n for doc in docs for n in segment_lengths(doc, max_segment_length)], dtype="int64"
    )
    n_tokens = int(doc_offsets[-1])
    token_segments = numpy.repeat(numpy.arange(len(seg_lengths)), seg_lengths)
    segment_ends = numpy.cumsum(seg_lengths)  # exclusive, global
    tokens = numpy.arange(n_tokens, dtype="int64")
    spans_per_token = numpy.minimum(
        max_span_width, segment_ends[token_segments] - tokens
    )
    span_offsets = numpy.concatenate([[0], numpy.cumsum(spans_per_token)])
    span_starts = numpy.repeat(tokens, spans_per_token)
    widths = numpy.arange(len(span_starts), dtype="int64") - span_offsets[span_starts]
    token_is_space = numpy.concatenate(
        [numpy.zeros((0,), dtype=bool)] + [doc.to_array("IS_SPACE").astype(bool) for doc in docs]
    )
    return CandidateBatch(
        doc_offsets=doc_offsets,
        token_segments=token_segments.astype("int64"),
        n_segments=len(seg_lengths),
        span_starts=span_starts,
        span_ends=span_starts + widths,
        span_offsets=span_offsets.astype("int64"),
        token_is_space=token_is_space,
    )


def get_gold_spans(doc: Doc, spans_key: str) -> Iterable[Span]:
    """The gold mentions of a reference doc: `doc.spans[spans_key]` when the
    key is present, else `doc.ents`."""
    if spans_key in doc.spans:
        return doc.spans[spans_key]
    return doc.ents


def sentence_gold_doc(sentence: Span) -> Tuple[Doc, int]:
    """One sentence of a gold doc as a doc of its own, with the gold entities
    and the spans of every span group that lie inside it (moved to the new
    offsets; labels, kb and span ids kept). Tokens keep their entity
    annotation state, so missing annotation stays missing.

    RETURNS (Tuple[Doc, int]): the sentence doc, and the number of gold
        mentions (entities and group spans) that overlap the sentence
        without lying inside it. They are left out; the part of a cut
        entity inside the sentence is marked missing, neither entity nor O.
    """
    doc = sentence.doc
    start, end = sentence.start, sentence.end

    def overlaps(span: Span) -> bool:
        return span.start < end and span.end > start

    def is_inside(span: Span) -> bool:
        return span.start >= start and span.end <= end

    # Span.as_doc keeps the entities inside and marks a cut one's part missing.
    sentence_doc = sentence.as_doc()
    cut = sum(1 for ent in doc.ents if overlaps(ent) and not is_inside(ent))
    for key, group in doc.spans.items():
        cut += sum(1 for span in group if overlaps(span) and not is_inside(span))
        sentence_doc.spans[key] = [
            Span(sentence_doc, span.start - start, span.end - start, span.label, kb_id=span.kb_id, span_id=span.id)
            for span in group
            if is_inside(span)
        ]
    return sentence_doc, cut


@dataclass
class GoldAlignment:
    """Gold mentions of a batch as (candidate, type) pairs, and what had to
    be left out, counted per reason and label."""

    spans: numpy.ndarray
    types: numpy.ndarray
    skipped: Dict[str, Counter]
    # [n_segments, n_types]: False where the segment's doc is not annotated
    # for the type (see new_types); None when all are
    annotated: Optional[numpy.ndarray] = None


SKIP_MISALIGNED = "do not align with the predicted tokens"
SKIP_TOO_LONG = "are longer than max_span_width"
SKIP_CROSSES_SEGMENT = "cross a segment boundary (a sentence, or a cut of a sentence longer than max_segment_length)"
SKIP_UNKNOWN_LABEL = "have a label the component does not know"
SKIP_WHITESPACE_EDGE = "start or end on a whitespace token"
SKIP_REASONS = (
    SKIP_MISALIGNED,
    SKIP_TOO_LONG,
    SKIP_CROSSES_SEGMENT,
    SKIP_UNKNOWN_LABEL,
    SKIP_WHITESPACE_EDGE,
)


def align_gold(
    examples: Sequence[Example],
    batch: CandidateBatch,
    label_index: Dict[str, int],
    spans_key: str,
    max_span_width: int,
) -> GoldAlignment:
    """Map the gold mentions of each example onto candidate indices."""
    skipped: Dict[str, Counter] = {reason: Counter() for reason in SKIP_REASONS}
    starts: List[int] = []
    ends: List[int] = []
    types: List[int] = []
    for i, eg in enumerate(examples):
        gold = list(get_gold_spans(eg.reference, spans_key))
        aligned = eg.get_aligned_spans_y2x(gold, allow_overlap=True)
        skipped[SKIP_MISALIGNED].update(
            Counter(s.label_ for s in gold) - Counter(s.label_ for s in aligned)
        )
        offset = int(batch.doc_offsets[i])
        for span in aligned:
            if span.label_ not in label_index:
                skipped[SKIP_UNKNOWN_LABEL][span.label_] += 1
            elif len(span) > max_span_width:
                skipped[SKIP_TOO_LONG][span.label_] += 1
            elif (
                batch.token_segments[offset + span.start]
                != batch.token_segments[offset + span.end - 1]
            ):
                skipped[SKIP_CROSSES_SEGMENT][span.label_] += 1
            elif batch.token_is_space[offset + span.start] or batch.token_is_space[offset + span.end - 1]:
                skipped[SKIP_WHITESPACE_EDGE][span.label_] += 1
            else:
                starts.append(offset + span.start)
                ends.append(offset + span.end - 1)
                types.append(label_index[span.label_])
    start_arr = numpy.asarray(starts, dtype="int64")
    candidates = batch.span_offsets[start_arr] + (
        numpy.asarray(ends, dtype="int64") - start_arr
    )
    # A mention annotated twice is one gold (candidate, type) pair.
    pairs = numpy.unique(
        numpy.stack([candidates, numpy.asarray(types, dtype="int64")], axis=1),
        axis=0,
    ).reshape(-1, 2)
    annotated = annotated_rows(
        [eg.reference for eg in examples], list(label_index), doc_first_segments(batch), batch.n_segments
    )
    return GoldAlignment(spans=pairs[:, 0], types=pairs[:, 1], skipped=skipped, annotated=annotated)


def count_skipped_gold(
    examples: Sequence[Example],
    label_index: Dict[str, int],
    spans_key: str,
    max_span_width: int,
    max_segment_length: int,
    batch_size: int = 256,
) -> Dict[str, Counter]:
    """The gold mentions training leaves out of the loss, per reason and
    label: `align_gold` on the candidates of the predicted docs, `batch_size`
    examples at a time."""
    totals: Dict[str, Counter] = {reason: Counter() for reason in SKIP_REASONS}
    for begin in range(0, len(examples), batch_size):
        batch = list(examples[begin : begin + batch_size])
        candidates = enumerate_candidates([eg.predicted for eg in batch], max_span_width, max_segment_length)
        gold = align_gold(batch, candidates, label_index, spans_key, max_span_width)
        for reason, per_label in gold.skipped.items():
            totals[reason].update(per_label)
    return totals


def doc_first_segments(batch: CandidateBatch) -> numpy.ndarray:
    """Index of the first segment of each doc, and n_segments last."""
    segments = batch.token_segments
    if not len(segments):
        return numpy.zeros(len(batch.doc_offsets), dtype="int64")
    segment_starts = numpy.flatnonzero(numpy.r_[True, segments[1:] != segments[:-1]])
    return numpy.searchsorted(segment_starts, batch.doc_offsets, side="left")


DECISIONS = ("span", "joint")


def check_decision(decision: object) -> None:
    if decision not in DECISIONS:
        raise ValueError(
            f"binder_ner decision must be one of {', '.join(map(repr, DECISIONS))}, "
            f"got {decision!r}: 'joint' scores a span by its span, start and end "
            "probabilities, 'span' by its span probability alone."
        )


def log_sigmoid(x: numpy.ndarray) -> numpy.ndarray:
    """log(1 / (1 + exp(-x))) without overflow, in the dtype of `x`."""
    return -numpy.logaddexp(0.0, -x)


def logit(p: numpy.ndarray) -> numpy.ndarray:
    """The margin whose sigmoid is `p`: -inf at 0, inf at 1."""
    with numpy.errstate(divide="ignore"):
        return numpy.log(p) - numpy.log1p(-p)


def margin_bound(bound: numpy.ndarray, dtype: numpy.dtype) -> numpy.ndarray:
    """`bound` (float64) for comparing margins of `dtype`: for float32, the
    largest float32 at or below it, since x > bound exactly when x is above
    that float32; so float32 margins are compared without a float64 copy."""
    if dtype != numpy.float32:
        return bound
    rounded = numpy.asarray(bound, dtype="float32")
    above = rounded.astype("float64") > bound
    return numpy.where(above, numpy.nextafter(rounded, numpy.float32(-numpy.inf)), rounded)


def nonzero_2d(mask: numpy.ndarray) -> Tuple[numpy.ndarray, numpy.ndarray]:
    """`numpy.nonzero` of a C-ordered 2D mask, from its flat indices (faster)."""
    return numpy.divmod(numpy.flatnonzero(mask), mask.shape[1])


def decode_spans(
    batch: CandidateBatch,
    scores: BinderScores,
    *,
    threshold: Union[float, Sequence[float]] = 0.5,
    decision: str = "span",
    to_numpy: Callable[[Any], numpy.ndarray] = numpy.asarray,
) -> List[List[Tuple[int, int, int, float]]]:
    """Predicted (start, end_exclusive, type, score) per doc, doc-local.

    BINDER trains three two-way contrasts per type against the segment's
    anchor: token-as-start, token-as-end and span. Each gives a probability
    that the item beats "no entity here": sigmoid(score - anchor score).
    decision "span" scores a candidate by its span probability alone (the
    rule of the BINDER paper); "joint" by the geometric mean of its span,
    start-token and end-token probabilities, so a span also needs
    boundaries the model believes in (good for the flat output; in the
    nested output, overlapping spans that share a strong boundary get
    through). A candidate is predicted for a type when its score is above
    `threshold`: at 0.5 the span rule is the paper's "beat the anchor", at
    0.0 every candidate is predicted, at 1.0 none.

    threshold (Union[float, Sequence[float]]): a probability in [0, 1], or
        one per type.
    scores (BinderScores): the head's raw scores, on any device.
    to_numpy (Callable): copies one score array to the host (e.g.
        `ops.to_numpy`); only the arrays the decision reads are copied.
    """
    check_decision(decision)
    # one per type or one for all: compared with each type's column alike
    thresholds = numpy.asarray(threshold, dtype="float64")
    if not numpy.all((0.0 <= thresholds) & (thresholds <= 1.0)):  # NaN fails too
        raise ValueError(f"binder_ner threshold must be a probability in [0, 1], got {threshold!r}.")
    n_docs = len(batch.doc_offsets) - 1
    anchors = to_numpy(scores.anchor)
    # row gathers with `take` (several times faster than fancy indexing here)
    margins = to_numpy(scores.span) - numpy.take(numpy.ascontiguousarray(anchors[:, SPAN]), batch.span_segments, axis=0)
    if thresholds.ndim and thresholds.shape != margins.shape[1:]:
        raise ValueError(f"binder_ner got {thresholds.size} thresholds for {margins.shape[1]} types.")
    if decision == "span":
        # sigmoid(m) > t exactly when m > logit(t), so only the kept margins
        # become probabilities; logit(0.5) = 0, the paper's rule
        rows, types = nonzero_2d(margins > margin_bound(logit(thresholds), margins.dtype))
        kept = log_sigmoid(margins[rows, types].astype("float64"))
    else:
        token_segments = batch.token_segments
        starts, ends = to_numpy(scores.start), to_numpy(scores.end)
        if numpy.isnan(starts).any() or numpy.isnan(ends).any():
            raise ValueError(
                "The 'joint' decision reads start and end scores, but these are NaN: "
                "binder_ner predicted them with decision 'span', which skips them (set "
                "decision = 'joint' before predicting, not between predict and "
                "set_annotations), or the model's scores are NaN (check its weights)."
            )
        log_p_start = log_sigmoid(starts - anchors[token_segments, START])
        log_p_end = log_sigmoid(ends - anchors[token_segments, END])
        # Each log-probability is <= 0, so a candidate whose mean of three is
        # above log(t) has a span term above 3 log(t): its margin is above
        # logit(t ** 3). Only those (a small share at useful thresholds) get
        # their terms computed; the slack keeps float rounding at that bound
        # from dropping a candidate the exact rule below would keep.
        rows, types = nonzero_2d(margins > margin_bound(logit(thresholds**3) - 1e-3, margins.dtype))
        log_p = log_sigmoid(margins[rows, types])
        log_p += log_p_start[batch.span_starts[rows], types]
        log_p += log_p_end[batch.span_ends[rows], types]
        log_p /= 3.0
        # in logs: threshold 0 is -inf (every candidate), threshold 1 is 0 (none)
        with numpy.errstate(divide="ignore"):
            log_threshold = numpy.log(thresholds)
        passed = log_p > (log_threshold[types] if log_threshold.ndim else log_threshold)
        rows, types, kept = rows[passed], types[passed], log_p[passed].astype("float64")
    possible = batch.can_be_entity(rows)
    rows, types, kept = rows[possible], types[possible], kept[possible]
    probabilities = numpy.exp(kept)
    starts = batch.span_starts[rows]
    doc_ids = batch.span_docs(starts)
    local_starts = starts - batch.doc_offsets[doc_ids]
    local_ends = batch.span_ends[rows] - batch.doc_offsets[doc_ids] + 1
    # ordered by doc, start, end, type
    order = numpy.lexsort((types, local_ends, local_starts, doc_ids))
    result: List[List[Tuple[int, int, int, float]]] = [[] for _ in range(n_docs)]
    for k in order:
        result[doc_ids[k]].append(
            (int(local_starts[k]), int(local_ends[k]), int(types[k]), float(probabilities[k]))
        )
    return result


def greedy_flat(
    spans: Sequence[Tuple[int, int, int, float]],
    doc_length: Optional[int] = None,
    *,
    fill_types: Collection[int] = (),
) -> List[int]:
    """Indices of a non-overlapping subset of `spans`, chosen greedily by
    descending score (ties: earlier start, then shorter span, then type).

    fill_types (Collection[int]): types whose spans come after all the
        others, so they only fill what those leave: a span of them never
        displaces one of another type, whatever the scores.
    """
    if not spans:
        return []
    length = doc_length if doc_length is not None else max(s[1] for s in spans)
    taken = numpy.zeros((length,), dtype=bool)
    fill = set(fill_types)
    order = sorted(range(len(spans)), key=lambda k: (spans[k][2] in fill, -spans[k][3], spans[k][:3]))
    accepted = []
    for k in order:
        start, end = spans[k][0], spans[k][1]
        if not taken[start:end].any():
            taken[start:end] = True
            accepted.append(k)
    return sorted(accepted)

"""Candidate enumeration, gold alignment and decoding."""
import warnings

import numpy
import pytest
import spacy
from spacy.tokens import Doc, Span
from spacy.training import Example
from spacy.vocab import Vocab

from spacy_binder.spans import (
    SKIP_CROSSES_SEGMENT,
    SKIP_TOO_LONG,
    SKIP_WHITESPACE_EDGE,
    align_gold,
    decode_spans,
    enumerate_candidates,
    greedy_flat,
    segment_bounds,
    sentence_gold_doc,
)
from spacy_binder.torch_binder import BinderScores


def make_doc(n, sent_starts=None):
    words = [f"w{i}" for i in range(n)]
    doc = Doc(Vocab(), words=words, sent_starts=sent_starts)
    return doc


def expected_count(length, width):
    return sum(min(width, length - i) for i in range(length))


@pytest.mark.parametrize("n,width", [(1, 1), (1, 30), (7, 3), (50, 8), (200, 30), (10, 10)])
def test_candidate_count_is_exact_and_linear(n, width):
    batch = enumerate_candidates([make_doc(n)], width, max_segment_length=n)
    count = len(batch.span_starts)
    assert count <= n * width
    # closed form: n*w - w(w-1)/2 when n >= w, else n(n+1)/2
    closed = n * width - width * (width - 1) // 2 if n >= width else n * (n + 1) // 2
    assert count == closed == expected_count(n, width)
    # every candidate appears once and is a real span of at most `width` tokens
    pairs = set(zip(batch.span_starts.tolist(), batch.span_ends.tolist()))
    assert len(pairs) == count
    assert pairs == {(i, j) for i in range(n) for j in range(i, min(n, i + width))}


def test_segments_are_sentences_set_or_found_and_bounded():
    nlp = spacy.blank("en")
    text = "Anna Berg left Oslo. She moved to Paris! Then she came back"
    doc = nlp.make_doc(text)
    assert not doc.has_annotation("SENT_START")
    found = segment_bounds(doc, 128)
    assert [doc[s:e].text for s, e in found] == ["Anna Berg left Oslo.", "She moved to Paris!", "Then she came back"]
    assert not doc.has_annotation("SENT_START")  # found, not written to the doc
    # boundaries that are set win over the rules
    doc = nlp.make_doc(text)
    for token in doc:
        token.is_sent_start = token.i in (0, 3)
    assert segment_bounds(doc, 128) == [(0, 3), (3, len(doc))]
    # a sentence of 300 tokens becomes 3 near-equal pieces of at most 128
    long_doc = nlp.make_doc(" ".join(["word"] * 300))
    bounds = segment_bounds(long_doc, 128)
    assert bounds == [(0, 100), (100, 200), (200, 300)]
    assert segment_bounds(nlp.make_doc(""), 128) == []
    with pytest.raises(ValueError, match="max_segment_length"):
        segment_bounds(doc, 0)


def test_a_document_gets_the_segments_of_its_sentences():
    """Segments of a doc without boundaries, whatever its length, are those
    its sentences get one by one."""
    nlp = spacy.blank("en")
    sentences = ["Anna Berg left Oslo.", "She moved to Paris!", "Dr. Smith saw 3.5 cases (e.g. flu)."] * 400
    doc = nlp.make_doc(" ".join(sentences))
    expected, offset = [], 0
    for sentence in sentences:
        n = len(nlp.make_doc(sentence))
        expected.append((offset, offset + n))
        offset += n
    assert segment_bounds(doc, 128) == expected


def test_candidates_stay_inside_sentences_and_docs():
    docs = [
        make_doc(6, sent_starts=[True, False, False, True, False, False]),
        make_doc(0),
        make_doc(4),  # no sentence boundaries: the whole doc is one segment
    ]
    batch = enumerate_candidates(docs, 5)
    assert batch.n_segments == 3
    assert batch.doc_offsets.tolist() == [0, 6, 6, 10]
    assert batch.token_segments.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 2]
    seg = batch.token_segments
    assert (seg[batch.span_starts] == seg[batch.span_ends]).all()
    assert len(batch.span_starts) == 2 * expected_count(3, 5) + expected_count(4, 5)
    # span_offsets points at the first candidate of each start token
    for token in range(10):
        first = batch.span_offsets[token]
        assert batch.span_starts[first] == token and batch.span_ends[first] == token


def test_no_docs_and_invalid_width():
    batch = enumerate_candidates([], 3)
    assert batch.n_tokens == 0 and len(batch.span_starts) == 0
    with pytest.raises(ValueError, match="max_span_width"):
        enumerate_candidates([make_doc(3)], 0)


def test_align_gold_maps_spans_and_counts_what_it_skips():
    vocab = Vocab()
    words = "a b c d e f g".split()
    predicted = Doc(vocab, words=words)
    reference = Doc(vocab, words=words, sent_starts=[True, False, False, False, True, False, False])
    reference.spans["sc"] = [
        Span(reference, 0, 2, "X"),
        Span(reference, 1, 2, "Y"),
        Span(reference, 0, 2, "X"),  # duplicate: one gold pair
        Span(reference, 0, 5, "Y"),  # too long for width 3
    ]
    # predicted doc has sentence boundaries too, so a span across them is skipped
    predicted_sents = Doc(vocab, words=words, sent_starts=[True, False, False, True, False, False, False])
    eg = Example(predicted_sents, reference)
    batch = enumerate_candidates([eg.predicted], 3)
    gold = align_gold([eg], batch, {"X": 0, "Y": 1}, "sc", 3)
    pairs = {(int(batch.span_starts[c]), int(batch.span_ends[c]), int(t)) for c, t in zip(gold.spans, gold.types)}
    assert pairs == {(0, 1, 0), (1, 1, 1)}
    assert gold.skipped[SKIP_TOO_LONG] == {"Y": 1}
    reference.spans["sc"] = [Span(reference, 2, 4, "X")]  # crosses the predicted boundary at 3
    gold = align_gold([Example(predicted_sents, reference)], batch, {"X": 0}, "sc", 3)
    assert len(gold.spans) == 0 and gold.skipped[SKIP_CROSSES_SEGMENT] == {"X": 1}


def test_align_gold_falls_back_to_ents():
    vocab = Vocab()
    doc = Doc(vocab, words="x y z".split())
    ref = Doc(vocab, words="x y z".split(), ents=["B-A", "I-A", "O"])
    batch = enumerate_candidates([doc], 2)
    gold = align_gold([Example(doc, ref)], batch, {"A": 0}, "sc", 2)
    assert [(batch.span_starts[c], batch.span_ends[c]) for c in gold.spans] == [(0, 1)]


def binder_scores(start, end, span, anchor):
    """BinderScores from per-level arrays; `anchor` is (start, end, span)
    thresholds of one segment and one type."""
    column = lambda values: numpy.asarray(values, dtype="float32").reshape(-1, 1)
    return BinderScores(column(start), column(end), column(span), column(anchor).reshape(1, 3, 1))


def sigmoid(x):
    return 1.0 / (1.0 + numpy.exp(-x))


def test_span_decision_uses_span_anchor_and_threshold():
    batch = enumerate_candidates([make_doc(3)], 2)  # (0,0) (0,1) (1,1) (1,2) (2,2)
    # start/end scores far below their anchors: the "span" rule ignores them;
    # span margins over the span anchor 2: -1, +1, -1.5, +0.5, -3
    scores = binder_scores([-9, -9, -9], [-9, -9, -9], [1.0, 3.0, 0.5, 2.5, -1.0], [0, 0, 2.0])
    decoded = decode_spans(batch, scores, threshold=0.5, decision="span")
    assert [(s, e, t) for s, e, t, _ in decoded[0]] == [(0, 2, 0), (1, 3, 0)]
    assert [score for *_, score in decoded[0]] == pytest.approx([sigmoid(1.0), sigmoid(0.5)])
    # sigmoid(0.5) = 0.62 < 0.7 < sigmoid(1) = 0.73
    assert [(s, e) for s, e, _, _ in decode_spans(batch, scores, threshold=0.7)[0]] == [(0, 2)]
    # sigmoid(-3) = 0.047 > 0.01: every candidate
    assert len(decode_spans(batch, scores, threshold=0.01)[0]) == 5


@pytest.mark.parametrize("decision", ["span", "joint"])
def test_threshold_ends_keep_every_candidate_or_none(decision):
    """threshold 0 keeps every candidate, however sure the model is that it
    is no entity (a margin of -80 has a probability of 1.8e-35, above 0);
    threshold 1 keeps none, even at a margin of +80 (a probability that
    rounds to 1, not above it). No warning from log(0)."""
    batch = enumerate_candidates([make_doc(3)], 2)
    level = [80.0, -80.0, 0.0]
    scores = binder_scores(level, level, [80.0, -80.0, 0.0, 80.0, -80.0], [0, 0, 0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        everything = decode_spans(batch, scores, threshold=0.0, decision=decision)[0]
        nothing = decode_spans(batch, scores, threshold=1.0, decision=decision)[0]
    assert [(s, e) for s, e, _, _ in everything] == [(0, 1), (0, 2), (1, 2), (1, 3), (2, 3)]
    assert nothing == []


@pytest.mark.parametrize("threshold", [-0.1, 1.5, float("nan")])
def test_decode_rejects_a_threshold_that_is_no_probability(threshold):
    batch = enumerate_candidates([make_doc(2)], 1)
    scores = binder_scores([0, 0], [0, 0], [0, 0], [0, 0, 0])
    with pytest.raises(ValueError, match=r"threshold must be a probability in \[0, 1\]"):
        decode_spans(batch, scores, threshold=threshold)


@pytest.mark.parametrize("decision", ["span", "joint"])
def test_no_entity_starts_or_ends_on_whitespace(decision):
    """Every candidate beats its anchor, but those that start or end on the
    whitespace token 1 are never predicted; (0,2) holds it inside."""
    doc = Doc(spacy.blank("en").vocab, words=["Anna", "\n", "Berg"], spaces=[False, False, False])
    batch = enumerate_candidates([doc], 3)  # (0,0) (0,1) (0,2) (1,1) (1,2) (2,2)
    scores = binder_scores([9] * 3, [9] * 3, [9.0] * 6, [0, 0, 0])
    decoded = decode_spans(batch, scores, decision=decision)[0]
    assert [(s, e) for s, e, _, _ in decoded] == [(0, 1), (0, 3), (2, 3)]


def test_gold_on_whitespace_edges_is_counted():
    vocab = spacy.blank("en").vocab  # a language's vocab knows what is whitespace
    words, spaces = ["Anna", " ", "Berg", "left"], [False, False, True, False]
    reference = Doc(vocab, words=words, spaces=spaces)
    reference.spans["sc"] = [Span(reference, 0, 2, "PER"), Span(reference, 0, 3, "PER"), Span(reference, 1, 2, "LOC")]
    eg = Example(Doc(vocab, words=words, spaces=spaces), reference)
    batch = enumerate_candidates([eg.predicted], 3)
    gold = align_gold([eg], batch, {"PER": 0, "LOC": 1}, "sc", 3)
    assert gold.skipped[SKIP_WHITESPACE_EDGE] == {"PER": 1, "LOC": 1}
    assert [(int(batch.span_starts[c]), int(batch.span_ends[c])) for c in gold.spans] == [(0, 2)]


def test_joint_decision_needs_believable_boundaries():
    batch = enumerate_candidates([make_doc(3)], 2)  # (0,0) (0,1) (1,1) (1,2) (2,2)
    # span margins over the anchor 0: +3 for (0,1), +1 for (1,2), -1 for (2,2);
    # token 0 is a sure start, token 1 a sure non-start; token 2 a sure end.
    start, end = [4.0, -4.0, 0.0], [-1.0, -1.0, 4.0]
    span = [-5.0, 3.0, -5.0, 1.0, -1.0]
    scores = binder_scores(start, end, span, [0, 0, 0])
    # (0,1): sqrt3(s(3) s(4) s(-1)) = 0.57 > 0.5; (1,2) loses its span-level
    # win to an unlikely start: sqrt3(s(1) s(-4) s(4)) = 0.29; (2,2) wins
    # on its boundaries despite a span margin below 0: sqrt3(s(-1) s(0) s(4)) = 0.52
    expected = {
        (0, 2): (sigmoid(3.0) * sigmoid(4.0) * sigmoid(-1.0)) ** (1 / 3),
        (2, 3): (sigmoid(-1.0) * sigmoid(0.0) * sigmoid(4.0)) ** (1 / 3),
    }
    decoded = decode_spans(batch, scores, decision="joint")[0]
    assert {(s, e): score for s, e, _, score in decoded} == pytest.approx(expected)
    assert all(score > 0.5 for *_, score in decoded)
    # the threshold is a probability: at 0.55, (2,2) and its 0.52 are out
    assert [(s, e) for s, e, _, _ in decode_spans(batch, scores, threshold=0.55, decision="joint")[0]] == [(0, 2)]
    # span-level scores alone would keep (0,1) and (1,2) instead
    assert [(s, e) for s, e, _, _ in decode_spans(batch, scores, decision="span")[0]] == [(0, 2), (1, 3)]


def test_joint_decision_reads_each_segment_anchor():
    doc = make_doc(4, sent_starts=[True, False, True, False])
    batch = enumerate_candidates([doc], 1)  # (0,0) (1,1) | (2,2) (3,3)
    n = 4
    level = numpy.full((n, 1), 2.0, dtype="float32")
    # same scores everywhere; segment 0's anchors are below them, segment 1's above
    anchor = numpy.array([[[1.0], [1.0], [1.0]], [[3.0], [3.0], [3.0]]], dtype="float32")
    decoded = decode_spans(batch, BinderScores(level, level, level, anchor), decision="joint")
    assert [(s, e) for s, e, _, _ in decoded[0]] == [(0, 1), (1, 2)]
    assert [score for *_, score in decoded[0]] == pytest.approx([sigmoid(1.0)] * 2)


def test_decode_copies_only_the_scores_its_rule_reads():
    batch = enumerate_candidates([make_doc(3)], 2)
    scores = binder_scores([4.0, -4.0, 0.0], [-1.0, -1.0, 4.0], [-5.0, 3.0, -5.0, 1.0, -1.0], [0, 0, 0])
    for decision, read in (("span", {"span", "anchor"}), ("joint", {"start", "end", "span", "anchor"})):
        copied = []

        def to_numpy(array):
            copied.append(next(name for name, a in scores._asdict().items() if a is array))
            return numpy.asarray(array)

        decoded = decode_spans(batch, scores, decision=decision, to_numpy=to_numpy)
        assert set(copied) == read and len(copied) == len(read)
        assert decoded == decode_spans(batch, scores, decision=decision)


def test_decode_rejects_unknown_decision():
    batch = enumerate_candidates([make_doc(2)], 1)
    scores = binder_scores([0, 0], [0, 0], [0, 0], [0, 0, 0])
    with pytest.raises(ValueError, match="decision must be one of 'span', 'joint'"):
        decode_spans(batch, scores, decision="mean")


def test_greedy_flat_keeps_best_of_overlapping_pairs():
    spans = [(0, 3, 0, 0.7), (2, 4, 1, 0.9), (4, 6, 0, 0.6), (5, 6, 1, 0.8), (7, 8, 0, 0.51)]
    kept = [spans[k] for k in greedy_flat(spans, 8)]
    assert kept == [(2, 4, 1, 0.9), (5, 6, 1, 0.8), (7, 8, 0, 0.51)]
    for a in kept:
        for b in kept:
            assert a is b or a[1] <= b[0] or b[1] <= a[0]
    # the same span with two labels: only the better label survives
    assert greedy_flat([(0, 2, 0, 0.6), (0, 2, 1, 0.9)], 2) == [1]
    assert greedy_flat([], 5) == []


def test_greedy_flat_random_no_overlap_and_maximal():
    rng = numpy.random.default_rng(0)
    for _ in range(50):
        n = 20
        spans = []
        for _ in range(rng.integers(0, 15)):
            s = int(rng.integers(0, n))
            e = int(rng.integers(s + 1, min(n, s + 5) + 1))
            spans.append((s, e, int(rng.integers(0, 3)), float(rng.random())))
        kept = greedy_flat(spans, n)
        taken = numpy.zeros(n, dtype=int)
        for k in kept:
            taken[spans[k][0]:spans[k][1]] += 1
        assert taken.max(initial=0) <= 1
        # every rejected span overlaps an accepted span with a score >= its own
        for k in set(range(len(spans))) - set(kept):
            s, e, _, score = spans[k]
            assert any(
                spans[j][0] < e and s < spans[j][1] and spans[j][3] >= score for j in kept
            )


def _joint_by_definition(batch, scores, thresholds):
    """The joint rule over every candidate: the mean of the three
    log-probabilities above log(threshold), as (doc, start, end, type, p)."""
    anchors = scores.anchor
    segments = batch.token_segments
    log_sig = lambda x: -numpy.logaddexp(0.0, -x)  # noqa: E731
    log_p = (
        log_sig(scores.span - anchors[batch.span_segments, 2])
        + log_sig((scores.start - anchors[segments, 0])[batch.span_starts])
        + log_sig((scores.end - anchors[segments, 1])[batch.span_ends])
    ) / 3.0
    with numpy.errstate(divide="ignore"):
        log_thresholds = numpy.log(numpy.asarray(thresholds, dtype="float64"))
    rows, types = numpy.nonzero(log_p > log_thresholds)
    found = set()
    for row, label in zip(rows.tolist(), types.tolist()):
        if batch.span_can_be_entity[row]:
            doc = int(batch.span_docs(numpy.asarray([batch.span_starts[row]]))[0])
            offset = int(batch.doc_offsets[doc])
            found.add((doc, int(batch.span_starts[row]) - offset, int(batch.span_ends[row]) - offset + 1, label, float(numpy.exp(numpy.float64(log_p[row, label])))))
    return found


@pytest.mark.parametrize("threshold", [0.0, 0.05, 0.5, 0.9, 1.0, (0.3, 0.7, 0.02)])
def test_joint_decision_equals_its_definition_on_every_candidate(threshold):
    """decode_spans computes the joint score only for candidates whose span
    margin can reach the threshold; what it returns is what the rule gives
    over all candidates, to the bit."""
    rng = numpy.random.default_rng(7)
    docs = [make_doc(n, sent_starts=[i % 9 == 0 for i in range(n)]) for n in (0, 5, 40, 17)]
    batch = enumerate_candidates(docs, 6)
    n_types = 3
    draw = lambda *shape: (rng.normal(size=shape) * 4).astype("float32")  # noqa: E731
    scores = BinderScores(
        draw(batch.n_tokens, n_types), draw(batch.n_tokens, n_types),
        draw(len(batch.span_starts), n_types), draw(batch.n_segments, 3, n_types),
    )
    decoded = decode_spans(batch, scores, threshold=threshold, decision="joint")
    found = {(doc, *item) for doc, items in enumerate(decoded) for item in items}
    expected = _joint_by_definition(batch, scores, threshold)
    assert found == expected
    if threshold == 0.0:
        assert len(found) == int(batch.span_can_be_entity.sum()) * n_types
    if threshold == 1.0:
        assert not found


@pytest.mark.parametrize("threshold", [0.0, 0.3, 0.5, 0.77, 1.0, (0.3, 0.7, 0.02)])
def test_span_decision_compares_float32_margins_exactly(threshold):
    """The span rule keeps a candidate when its float32 margin is above
    logit(t) computed in float64; margins one float32 step either side of
    that bound land on the right side."""
    rng = numpy.random.default_rng(3)
    docs = [make_doc(n, sent_starts=[i % 9 == 0 for i in range(n)]) for n in (5, 40, 17)]
    batch = enumerate_candidates(docs, 6)
    n_types, n = 3, len(batch.span_starts)
    thresholds = numpy.broadcast_to(numpy.asarray(threshold, dtype="float64"), (n_types,))
    with numpy.errstate(divide="ignore"):
        bound = numpy.log(thresholds) - numpy.log1p(-thresholds)  # float64 logit
    margins = (rng.normal(size=(n, n_types)) * 4).astype("float32")
    for t in range(n_types):
        if numpy.isfinite(bound[t]):  # the float32 values around the bound
            near = numpy.float32(bound[t])
            steps = [near, numpy.nextafter(near, numpy.float32(numpy.inf)), numpy.nextafter(near, numpy.float32(-numpy.inf))]
            margins[: len(steps), t] = steps
    zeros = lambda *shape: numpy.zeros(shape, dtype="float32")  # noqa: E731
    scores = BinderScores(zeros(batch.n_tokens, n_types), zeros(batch.n_tokens, n_types), margins, zeros(batch.n_segments, 3, n_types))
    decoded = decode_spans(batch, scores, threshold=threshold, decision="span")
    found = {(doc, start, end, label) for doc, items in enumerate(decoded) for start, end, label, _ in items}
    rows, types = numpy.nonzero(margins.astype("float64") > bound)
    expected = set()
    for row, label in zip(rows.tolist(), types.tolist()):
        if batch.span_can_be_entity[row]:
            doc = int(batch.span_docs(numpy.asarray([batch.span_starts[row]]))[0])
            offset = int(batch.doc_offsets[doc])
            expected.add((doc, int(batch.span_starts[row]) - offset, int(batch.span_ends[row]) - offset + 1, label))
    assert found == expected
    assert 0 < len(found) < n * n_types or threshold in (0.0, 1.0)


def test_sentence_gold_doc_moves_mentions_inside_and_counts_cut_ones():
    vocab = Vocab()
    doc = Doc(vocab, words="A B C . D E F . G H".split(), sent_starts=[1, 0, 0, 0, 1, 0, 0, 0, 1, 0])
    # Y (C . D E) runs from the first sentence into the second.
    doc.set_ents([Span(doc, 0, 2, "X"), Span(doc, 2, 6, "Y"), Span(doc, 8, 10, "Z")], default="outside")
    doc.spans["sc"] = [Span(doc, 0, 3, "N", span_id="n1"), Span(doc, 3, 5, "M"), Span(doc, 5, 6, "K")]
    docs, cut = zip(*(sentence_gold_doc(sent) for sent in doc.sents))
    assert [[t.text for t in d] for d in docs] == [["A", "B", "C", "."], ["D", "E", "F", "."], ["G", "H"]]
    assert [[(e.start, e.end, e.label_) for e in d.ents] for d in docs] == [[(0, 2, "X")], [], [(0, 2, "Z")]]
    # The parts of the cut entity Y are neither entity nor O: their gold is unknown.
    assert [t.ent_iob_ for t in docs[0]] == ["B", "I", "", ""]
    assert [t.ent_iob_ for t in docs[1]] == ["", "", "O", "O"]
    assert [[(s.start, s.end, s.label_, s.id_) for s in d.spans["sc"]] for d in docs] == [
        [(0, 3, "N", "n1")],
        [(1, 2, "K", "")],
        [],
    ]
    # Y is cut by both of its sentences, M (". D") too.
    assert cut == (2, 2, 0)

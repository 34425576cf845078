"""The BINDER loss against the one loop-by-loop reference
(tests/loss_reference.py), with and without rows left out for docs annotated
for some types only, the removed partial-label options of BinderLoss.v1, and
the scoring head."""
from pathlib import Path

import numpy
import pytest
import spacy
import srsly
import torch

from loss_reference import reference_loss, reference_loss_and_grads
from spacy_binder.torch_binder import (
    BinderHead,
    BinderScores,
    LossWeights,
    binder_loss,
    factored_span_scores,
    segment_groups,
    segment_logsumexp,
)
from util import NESTED_DATA, cnn_pipeline, make_examples, train


def make_example(rng, n_types, gold):
    # two segments: tokens 0-3 and 4-6; all spans of width <= 2 inside them
    token_segments = numpy.array([0, 0, 0, 0, 1, 1, 1])
    spans = [(i, j) for i in range(7) for j in range(i, min(i + 2, 7))
             if token_segments[i] == token_segments[j]]
    span_starts = numpy.array([s for s, _ in spans])
    span_ends = numpy.array([e for _, e in spans])
    gold_spans = [spans.index(se) for se, _ in gold]
    return {
        "start": rng.normal(size=(7, n_types)) * 3,
        "end": rng.normal(size=(7, n_types)) * 3,
        "span": rng.normal(size=(len(spans), n_types)) * 3,
        "anchor": rng.normal(size=(2, 3, n_types)) * 3,
        "token_segments": token_segments,
        "span_starts": span_starts,
        "span_ends": span_ends,
        "span_segments": token_segments[span_starts],
        "gold_spans": gold_spans,
        "gold_types": [t for _, t in gold],
    }


def torch_loss(example, weights):
    scores = BinderScores(*(torch.tensor(example[k], requires_grad=True)
                            for k in ("start", "end", "span", "anchor")))
    as_long = lambda key: torch.tensor(numpy.asarray(example[key]), dtype=torch.long)
    loss, parts = binder_loss(
        scores,
        token_segments=as_long("token_segments"),
        span_starts=as_long("span_starts"),
        span_ends=as_long("span_ends"),
        span_segments=as_long("span_segments"),
        gold_spans=as_long("gold_spans"),
        gold_types=as_long("gold_types"),
        weights=weights,
        annotated=None if example.get("annotated") is None else torch.tensor(numpy.asarray(example["annotated"])),
    )
    return loss, scores, parts


def loss_and_grads(example, weights):
    """The library loss and its gradient with respect to each score field."""
    loss, scores, _ = torch_loss(example, weights)
    loss.backward()
    return loss.detach(), [leaf.grad for leaf in scores]


CASES = {
    # nested mentions of different types, two gold mentions sharing a start
    "nested": (3, [((0, 1), 0), ((1, 1), 1), ((1, 2), 2), ((4, 5), 0)]),
    "single_type": (1, [((2, 3), 0), ((5, 5), 0)]),
    "no_gold": (2, []),
    "same_start_same_type": (2, [((0, 0), 1), ((0, 1), 1)]),
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize(
    "weights", [LossWeights(), LossWeights(gold=1.0, threshold=0.3, start=0.0, end=0.5, span=1.0)]
)
def test_loss_matches_reference(case, weights):
    n_types, gold = CASES[case]
    example = make_example(numpy.random.default_rng(len(gold) + n_types), n_types, gold)
    loss, _, _ = torch_loss(example, weights)
    assert loss.detach().item() == pytest.approx(reference_loss(example, weights), rel=1e-9)


def test_no_gold_leaves_only_threshold_loss():
    example = make_example(numpy.random.default_rng(0), 2, [])
    loss, _, parts = torch_loss(example, LossWeights(gold=1.0, threshold=0.0))
    assert loss.detach().item() == 0.0
    assert all(parts[f"gold_{level}"] == 0.0 for level in ("start", "end", "span"))
    assert parts["threshold_span"] > 0.0


def test_gradient_matches_finite_differences():
    example = make_example(numpy.random.default_rng(3), 2, [((0, 1), 0), ((5, 6), 1)])
    loss, scores, _ = torch_loss(example, LossWeights())
    loss.backward()
    eps = 1e-6
    for field in ("span", "anchor"):
        bumped = {k: (v.copy() if isinstance(v, numpy.ndarray) else v) for k, v in example.items()}
        index = (1,) * example[field].ndim
        bumped[field][index] += eps
        numeric = (reference_loss(bumped, LossWeights()) - loss.detach().item()) / eps
        assert getattr(scores, field).grad[index].item() == pytest.approx(numeric, abs=1e-4)


def test_segment_without_negatives_gives_finite_zero_loss_and_gradient():
    # One segment whose only item is gold: the threshold row has no negatives.
    scores = torch.tensor([[2.0]], requires_grad=True)
    lse = segment_logsumexp(scores.masked_fill(torch.tensor([[True]]), float("-inf")),
                            torch.tensor([0]), 1)
    assert torch.isinf(lse).all()
    example = {
        "start": numpy.array([[1.0]]), "end": numpy.array([[1.0]]),
        "span": numpy.array([[2.0]]), "anchor": numpy.array([[[0.5], [0.5], [0.5]]]),
        "token_segments": [0], "span_starts": [0], "span_ends": [0],
        "span_segments": [0], "gold_spans": [0], "gold_types": [0],
    }
    loss, leaves, _ = torch_loss(example, LossWeights())
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(leaf.grad).all() for leaf in leaves)
    assert loss.detach().item() == pytest.approx(reference_loss(example, LossWeights()))


def test_head_span_score_equals_concatenated_projection():
    """The head computes W [h_i; h_j; w(j-i)] as three partial products; check
    it against the concatenated form, and the scale and cosine."""
    torch.manual_seed(0)
    head = BinderHead(6, 5, projection_size=4, max_span_width=3, width_embedding_size=2, dropout=0.0)
    head.eval()
    tokens = torch.randn(5, 6)
    types = torch.randn(2, 5)
    starts = torch.tensor([0, 0, 1, 3])
    ends = torch.tensor([0, 2, 2, 4])
    segments = torch.tensor([0, 0, 0, 1, 1])
    start, end, span, anchor = head(tokens, types, starts, ends, segments, 2)
    assert span.shape == (4, 2) and anchor.shape == (2, 3, 2) and start.shape == (5, 2)
    weight = torch.cat([head.span_start.weight, head.span_end.weight, head.span_width.weight], dim=1)
    for c in range(4):
        i, j = int(starts[c]), int(ends[c])
        concat = torch.cat([tokens[i], tokens[j], head.width_embedding.weight[j - i]])
        r = weight @ concat + head.span_start.bias
        type_vec = head.type_span.linear(types)
        expected = (1 / 0.07) * torch.nn.functional.cosine_similarity(r.unsqueeze(0), type_vec)
        assert torch.allclose(span[c], expected, atol=1e-5)
    # anchors depend on the segment's text: the two segments differ
    assert not torch.allclose(anchor[0], anchor[1])


def test_loss_weights_validation():
    with pytest.raises(ValueError, match="sum to zero"):
        LossWeights(gold=0.0, threshold=0.0)
    with pytest.raises(ValueError, match="sum to zero"):
        LossWeights(start=0.0, end=0.0, span=0.0)
    with pytest.raises(ValueError, match="'span'"):
        LossWeights(span=-1.0)


def test_chunked_inference_scores_equal_full_scores():
    torch.manual_seed(1)
    head = BinderHead(6, 5, projection_size=4, max_span_width=3, width_embedding_size=2, dropout=0.0)
    head.eval()
    tokens, types = torch.randn(5, 6), torch.randn(2, 5)
    args = (tokens, types, torch.tensor([0, 0, 1, 1, 2, 3]), torch.tensor([0, 2, 1, 3, 4, 4]),
            torch.tensor([0, 0, 0, 0, 0]), 1)
    full = head(*args)[2]
    head.factored_scores = False  # candidate vectors, in chunks
    head.inference_chunk = 4  # two chunks: 4 + 2 candidates
    with torch.no_grad():
        chunked = head(*args)[2]
    assert torch.allclose(full, chunked, atol=1e-6)


def test_factored_inference_scores_equal_the_candidate_vectors():
    """Without autograd, span scores come from per-token terms; they equal
    the cosine of each candidate's own vector with each type (float noise
    only), for segments shorter and longer than max_span_width."""
    torch.manual_seed(3)
    head = BinderHead(6, 5, projection_size=8, max_span_width=4, width_embedding_size=3, dropout=0.0).eval()
    lengths = [1, 3, 9, 0, 4, 17]
    segments, starts, ends = _segmented_batch(lengths, 4)
    args = (torch.randn(int(segments.shape[0]), 6), torch.randn(3, 5), starts, ends, segments, len(lengths))
    with torch.no_grad():
        factored = head(*args)
        head.factored_scores = False
        direct = head(*args)
    for field_factored, field_direct in zip(factored, direct):
        assert torch.allclose(field_factored, field_direct, atol=1e-5)


def test_factored_training_scores_and_gradients_equal_the_candidate_vectors():
    """In training too (dropout on, autograd), the factored span scores and
    their gradients are those of each candidate's own vector: dropout falls
    on the per-token terms, so the same masks give the same vectors."""
    lengths = [1, 3, 9, 0, 4, 17]
    segments, starts, ends = _segmented_batch(lengths, 4)
    torch.manual_seed(5)
    head = BinderHead(6, 5, projection_size=8, max_span_width=4, width_embedding_size=3, dropout=0.5).train()
    tokens, types = torch.randn(int(segments.shape[0]), 6), torch.randn(3, 5)
    weights = torch.randn(int(starts.shape[0]), 3)
    results = {}
    for factored in (True, False):
        head.factored_scores = factored
        head.zero_grad()
        torch.manual_seed(6)  # the same dropout masks for both
        span = head(tokens.clone().requires_grad_(), types, starts, ends, segments, len(lengths))[2]
        (span * weights).sum().backward()
        grads = {name: param.grad.clone() for name, param in head.named_parameters() if param.grad is not None}
        results[factored] = span.detach(), grads
    (span_factored, grads_factored), (span_direct, grads_direct) = results[True], results[False]
    assert torch.allclose(span_factored, span_direct, atol=1e-4)
    assert grads_factored.keys() == grads_direct.keys() and "span_start.weight" in grads_factored
    for name, grad in grads_factored.items():
        assert torch.allclose(grad, grads_direct[name], atol=1e-3, rtol=1e-3), name
    # and the dropout really was on: another mask gives other scores
    head.factored_scores = True
    torch.manual_seed(7)
    other = head(tokens, types, starts, ends, segments, len(lengths))[2]
    assert not torch.allclose(other, span_factored, atol=1e-3)


def test_factored_scores_fall_back_where_the_norm_cancels():
    """A candidate whose start, end and width vectors nearly cancel has a
    squared norm that float32 cannot get from the expanded terms; it is
    scored from its own vector instead, like every other candidate."""
    torch.manual_seed(4)
    starts_proj, ends_proj = torch.randn(4, 6) * 100, torch.randn(4, 6) * 100
    width_vectors = torch.randn(2, 6)
    noise = torch.randn(6) * 1e-3
    starts_proj[1] = -(ends_proj[2] + width_vectors[1]) + noise  # candidate (1, 2): the noise is left
    types = torch.nn.functional.normalize(torch.randn(3, 6), dim=-1)
    span_starts, span_ends = torch.tensor([0, 1, 1, 2, 3]), torch.tensor([1, 1, 2, 3, 3])
    widths = span_ends - span_starts
    scores = factored_span_scores(starts_proj, ends_proj, width_vectors, types, span_starts, span_ends, widths)
    vectors = starts_proj[span_starts] + ends_proj[span_ends] + width_vectors[widths]
    expected = torch.nn.functional.normalize(vectors, dim=-1) @ types.T
    assert torch.allclose(scores, expected, atol=1e-4)
    # the cancelling candidate is scored by its direction (the noise's), a cosine
    assert torch.allclose(scores[2], torch.nn.functional.normalize(noise, dim=0) @ types.T, atol=1e-2)
    # no candidates (an empty batch): no rows
    empty = torch.zeros(0, dtype=torch.long)
    assert factored_span_scores(starts_proj[:0], ends_proj[:0], width_vectors, types, empty, empty, empty).shape == (0, 3)


def _segmented_batch(lengths, max_span_width):
    """Token segments and candidates laid out as enumerate_candidates does."""
    segments = torch.repeat_interleave(torch.arange(len(lengths)), torch.tensor(lengths))
    starts, ends, offset = [], [], 0
    for length in lengths:
        for i in range(length):
            for width in range(min(max_span_width, length - i)):
                starts.append(offset + i)
                ends.append(offset + i + width)
        offset += length
    return segments, torch.tensor(starts), torch.tensor(ends)


def test_inference_by_segment_groups_equals_scoring_at_once():
    """A long batch is scored in groups of whole segments without autograd;
    every field equals one pass over the whole batch (float noise only).
    Empty segments and a segment longer than a group are included."""
    torch.manual_seed(2)
    head = BinderHead(6, 5, projection_size=4, max_span_width=3, width_embedding_size=2, dropout=0.0).eval()
    lengths = [3, 0, 7, 1, 12, 0, 2, 5] * 5 + [40, 4]
    segments, starts, ends = _segmented_batch(lengths, 3)
    args = (torch.randn(int(segments.shape[0]), 6), torch.randn(3, 5), starts, ends, segments, len(lengths))
    with torch.no_grad():
        head.inference_tokens = 10**6
        whole = head(*args)
        head.inference_tokens = 16
        grouped = head(*args)
    groups = segment_groups(segments, len(lengths), starts, 16)
    assert len(groups) > 5
    for field_whole, field_grouped in zip(whole, grouped):
        assert field_whole.shape == field_grouped.shape
        assert torch.allclose(field_whole, field_grouped, atol=1e-5)


def test_segment_groups_keep_segments_whole():
    lengths = [5, 9, 0, 30, 2, 2, 11]
    segments, starts, ends = _segmented_batch(lengths, 4)
    groups = segment_groups(segments, len(lengths), starts, 8)
    # consecutive, covering every segment, token and candidate once
    assert [g[0][0] for g in groups[1:]] == [g[0][1] for g in groups[:-1]]
    assert groups[0][0][0] == 0 and groups[-1][0][1] == len(lengths)
    assert groups[-1][1][1] == sum(lengths) and groups[-1][2][1] == len(starts)
    for (s0, s1), (t0, t1), (c0, c1) in groups:
        assert t0 == sum(lengths[:s0]) and t1 == sum(lengths[:s1])
        assert bool(((starts[c0:c1] >= t0) & (ends[c0:c1] < t1)).all())
    # candidates out of start order cannot be sliced by group: None
    assert segment_groups(segments, len(lengths), starts.flip(0), 8) is None


# -- rows of types a doc is not annotated for; BinderLoss.v1's removed options ----


@pytest.mark.parametrize("case", sorted(CASES))
def test_rows_left_out_match_a_loop_reference(case: str) -> None:
    """Segment 0 not annotated for the last type, segment 1 for the first:
    loss and gradients as the reference's, gold in such a row included (the
    nested and same-start cases have some)."""
    n_types, gold = CASES[case]
    example = make_example(numpy.random.default_rng(11 + n_types), n_types, gold)
    annotated = numpy.ones((2, n_types), dtype=bool)
    annotated[0, -1] = annotated[1, 0] = False
    example["annotated"] = annotated
    loss, grads = loss_and_grads(example, LossWeights())
    expected, expected_grads = reference_loss_and_grads(example, LossWeights())
    assert loss.item() == pytest.approx(expected, rel=1e-9)
    for grad, expected_grad in zip(grads, expected_grads):
        assert torch.allclose(grad, expected_grad, rtol=1e-9, atol=1e-12)
    # and it differs from the loss with every row annotated
    assert loss.item() != pytest.approx(loss_and_grads({**example, "annotated": None}, LossWeights())[0].item())


def test_loss_v1_loads_saved_configs_and_refuses_the_removed_options(tmp_path: Path) -> None:
    """A pipeline saved with BinderLoss.v1 (its config and cfg hold the
    options at their plain values) still loads; setting an option says it
    was removed and what to use."""
    plain_v1 = {"@misc": "spacy-binder.BinderLoss.v1", "unlabeled_weight": 1.0, "ignore_overlapping_negatives": False}
    nlp = cnn_pipeline(loss=plain_v1)
    assert nlp.get_pipe("binder_ner").loss_weights == LossWeights()
    train(nlp, make_examples(nlp, NESTED_DATA), 2)
    nlp.to_disk(tmp_path / "pipeline")
    cfg_path = tmp_path / "pipeline" / "binder_ner" / "cfg"
    srsly.write_json(cfg_path, {**srsly.read_json(cfg_path), "unlabeled_weight": 1.0, "ignore_overlapping_negatives": False})
    loaded = spacy.load(tmp_path / "pipeline").get_pipe("binder_ner")
    assert "unlabeled_weight" not in loaded.cfg and loaded.loss_weights == LossWeights()
    for option in ({"unlabeled_weight": 0.5}, {"ignore_overlapping_negatives": True}):
        with pytest.raises(ValueError, match="partial-label options were removed.*BinderLoss.v2"):
            cnn_pipeline(loss={"@misc": "spacy-binder.BinderLoss.v1", **option})

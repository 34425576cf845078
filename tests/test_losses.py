"""The BINDER loss against the one loop-by-loop reference
(tests/loss_reference.py), its options for partially annotated data
(`unlabeled_weight`, `ignore_overlapping_negatives`) in the loss and in the
component, and the scoring head."""
import math
from pathlib import Path

import numpy
import pytest
import spacy
import srsly
import torch

from loss_reference import reference_loss, reference_loss_and_grads
from spacy_binder.torch_binder import (
    SPAN,
    BinderHead,
    BinderScores,
    LossWeights,
    binder_loss,
    contrastive_losses,
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
    head.inference_chunk = 4  # two chunks: 4 + 2 candidates
    with torch.no_grad():
        chunked = head(*args)[2]
    assert torch.allclose(full, chunked, atol=1e-6)


# -- the loss options for partially annotated data -------------------------------

OPTIONS_OFF = LossWeights(unlabeled_weight=1.0, ignore_overlapping_negatives=False)


@pytest.mark.parametrize("case", sorted(CASES))
def test_options_off_are_the_previous_loss(case: str) -> None:
    # The options were added to a loss that had none, and with their defaults
    # the loss must stay what it was. That previous loss is the plain BINDER
    # loss, checked against the reference since before the options; and the
    # reference with the options off is that plain loss (every non-gold item
    # counted once, none left out). The library must agree with it, and not
    # only to rounding: with the defaults `contrastive_losses` adds no
    # log-weight and `binder_loss` passes no `ignored` mask, so the options
    # set explicitly off run the same operations as the defaults, bit for bit.
    n_types, gold = CASES[case]
    example = make_example(numpy.random.default_rng(7 + len(gold)), n_types, gold)
    previous, previous_grads = reference_loss_and_grads(example, OPTIONS_OFF)
    default, default_grads = loss_and_grads(example, LossWeights())
    for weights in (LossWeights(), OPTIONS_OFF):
        loss, grads = loss_and_grads(example, weights)
        assert torch.equal(loss, default)
        assert all(torch.equal(a, b) for a, b in zip(grads, default_grads))
        assert loss.item() == pytest.approx(previous, rel=1e-12)
        for grad, expected in zip(grads, previous_grads):
            assert torch.allclose(grad, expected, rtol=1e-9, atol=1e-12)


def test_smaller_unlabeled_weight_lowers_the_loss_when_a_negative_outscores_gold() -> None:
    # one segment, one type: the gold item scores 1, negatives 3 and 0, anchor 0.5
    scores = torch.tensor([[1.0], [3.0], [0.0]], dtype=torch.float64)
    anchors = torch.tensor([[0.5]], dtype=torch.float64)
    args = (scores, anchors, torch.tensor([0, 0, 0]), torch.tensor([[True], [False], [False]]),
            torch.tensor([0]), torch.tensor([0]))  # fmt: skip
    full_gold, full_threshold = contrastive_losses(*args)
    for w in (0.5, 0.1):
        gold, threshold = contrastive_losses(*args, unlabeled_weight=w)
        negatives = w * (math.exp(3.0) + math.exp(0.0))
        assert gold.item() == pytest.approx(-math.log(math.exp(1.0) / (math.exp(1.0) + math.exp(0.5) + negatives)), rel=1e-12)
        assert threshold.item() == pytest.approx(-math.log(math.exp(0.5) / (math.exp(0.5) + negatives)), rel=1e-12)
        assert gold < full_gold and threshold < full_threshold
        full_gold, full_threshold = gold, threshold
    # the whole loss, on an example where some negative outscores a gold item
    example = make_example(numpy.random.default_rng(3), 2, [((0, 1), 0), ((5, 6), 1)])
    gold_row = example["gold_spans"][0]
    gold_score = example["span"][gold_row, 0]
    assert numpy.delete(example["span"][:, 0], gold_row).max() > gold_score
    losses = [loss_and_grads(example, LossWeights(unlabeled_weight=w))[0].item() for w in (1.0, 0.5, 0.2)]
    assert losses[0] > losses[1] > losses[2] > 0


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("w,ignore", [(0.3, False), (1.0, True), (0.5, True)])
def test_loss_options_match_a_loop_reference(case: str, w: float, ignore: bool) -> None:
    n_types, gold = CASES[case]
    example = make_example(numpy.random.default_rng(11 + n_types), n_types, gold)
    weights = LossWeights(unlabeled_weight=w, ignore_overlapping_negatives=ignore)
    loss, grads = loss_and_grads(example, weights)
    expected, expected_grads = reference_loss_and_grads(example, weights)
    assert loss.item() == pytest.approx(expected, rel=1e-9)
    for grad, expected_grad in zip(grads, expected_grads):
        assert torch.allclose(grad, expected_grad, rtol=1e-9, atol=1e-12)


def _single_segment_example():
    """Five tokens in one segment, spans of up to 3 tokens, two types; gold:
    tokens 1-2 of type 0."""
    spans = [(i, j) for i in range(5) for j in range(i, min(i + 3, 5))]
    rng = numpy.random.default_rng(5)
    return spans, {
        "start": rng.normal(size=(5, 2)), "end": rng.normal(size=(5, 2)),
        "span": rng.normal(size=(len(spans), 2)), "anchor": rng.normal(size=(1, 3, 2)),
        "token_segments": [0] * 5, "span_starts": [s for s, _ in spans], "span_ends": [e for _, e in spans],
        "span_segments": [0] * len(spans), "gold_spans": [spans.index((1, 2))], "gold_types": [0],
    }  # fmt: skip


def test_ignore_overlapping_negatives_hand_built() -> None:
    spans, example = _single_segment_example()
    ignoring = LossWeights(ignore_overlapping_negatives=True)

    def loss_after_bump(weights, field, index, amount=5.0):
        bumped = {k: (numpy.array(v, dtype=float, copy=True) if k in ("start", "end", "span", "anchor") else v) for k, v in example.items()}
        bumped[field][index] += amount
        return loss_and_grads(bumped, weights)[0].item()

    base = loss_and_grads(example, ignoring)[0].item()
    # spans of type 0 that share a token with the gold (1, 2) but are not it
    # are no negatives: raising their score changes nothing
    overlapping = [(0, 1), (0, 2), (1, 1), (1, 3), (2, 2), (2, 3), (2, 4)]
    assert sorted(s for s in spans if s[0] <= 2 and s[1] >= 1 and s != (1, 2)) == overlapping
    for span in overlapping:
        assert loss_after_bump(ignoring, "span", (spans.index(span), 0)) == base, span
    # tokens inside the gold: 2 as a start, 1 as an end
    assert loss_after_bump(ignoring, "start", (2, 0)) == base
    assert loss_after_bump(ignoring, "end", (1, 0)) == base
    # they stay negatives for the other type, and the spans that do not
    # touch the gold stay negatives for type 0
    assert loss_after_bump(ignoring, "span", (spans.index((2, 3)), 1)) > base
    assert loss_after_bump(ignoring, "span", (spans.index((3, 4)), 0)) > base
    assert loss_after_bump(ignoring, "start", (3, 0)) > base
    # without the option every overlapping span is a negative
    plain = loss_and_grads(example, LossWeights())[0].item()
    assert plain > base
    assert loss_after_bump(LossWeights(), "span", (spans.index((2, 3)), 0)) > plain
    # the gradient of an ignored entry is exactly zero
    _, grads = loss_and_grads(example, ignoring)
    assert grads[SPAN][spans.index((1, 3)), 0].item() == 0.0 and grads[SPAN][spans.index((1, 3)), 1].item() != 0.0


def test_ignore_overlapping_without_gold_is_the_plain_loss() -> None:
    example = make_example(numpy.random.default_rng(0), 2, [])
    plain, _ = loss_and_grads(example, LossWeights())
    ignoring, _ = loss_and_grads(example, LossWeights(ignore_overlapping_negatives=True))
    assert torch.equal(plain, ignoring)


@pytest.mark.parametrize("value", [0.0, -0.5, 1.5, float("nan"), float("inf"), True, "0.5"])
def test_unlabeled_weight_validation(value) -> None:
    with pytest.raises(ValueError, match=r"'unlabeled_weight' must be a number in \(0, 1\]"):
        LossWeights(unlabeled_weight=value)


def test_ignore_overlapping_validation() -> None:
    with pytest.raises(ValueError, match="'ignore_overlapping_negatives' must be true or false"):
        LossWeights(ignore_overlapping_negatives="yes")


def test_component_options_in_config_and_cfg(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unlabeled_weight"):
        cnn_pipeline(loss={"@misc": "spacy-binder.BinderLoss.v1", "unlabeled_weight": 0.0})
    loss = {"@misc": "spacy-binder.BinderLoss.v1", "unlabeled_weight": 0.5, "ignore_overlapping_negatives": True}
    nlp = cnn_pipeline(loss=loss)
    binder = nlp.get_pipe("binder_ner")
    assert binder.loss_weights.unlabeled_weight == 0.5 and binder.loss_weights.ignore_overlapping_negatives
    assert binder.cfg["unlabeled_weight"] == 0.5 and binder.cfg["ignore_overlapping_negatives"] is True
    losses = train(nlp, make_examples(nlp, NESTED_DATA), 3)
    assert math.isfinite(losses["binder_ner"]) and losses["binder_ner"] > 0
    nlp.to_disk(tmp_path / "pipeline")
    saved = srsly.read_json(tmp_path / "pipeline" / "binder_ner" / "cfg")
    assert saved["unlabeled_weight"] == 0.5 and saved["ignore_overlapping_negatives"] is True
    loaded = spacy.load(tmp_path / "pipeline").get_pipe("binder_ner")
    assert loaded.loss_weights.unlabeled_weight == 0.5 and loaded.cfg["ignore_overlapping_negatives"] is True

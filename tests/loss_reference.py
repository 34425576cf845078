"""The one reference for the BINDER loss that the library's loss is tested
against: written out loop by loop from the definition, sharing nothing with
`spacy_binder.torch_binder` (no masks, no segment sums, no log-weight trick).

An example is a dict of NumPy arrays (or lists), as built by
`test_losses.make_example`: scores "start", "end" (n_tokens x n_types),
"span" (n_candidates x n_types), "anchor" (n_segments x 3 x n_types), and
"token_segments", "span_starts", "span_ends", "span_segments", "gold_spans",
"gold_types", and optionally "annotated" (n_segments x n_types booleans: False
where the segment's doc is not annotated for the type).

Per level (start, end, span) and type t, the negatives of a segment are its
items that are not gold for t. Threshold row per annotated (segment, type):
-log of the anchor's softmax share against the negatives. Gold row per gold
mention: -log of the gold item's share against the anchor and the negatives
(the anchor alone in a row that is not annotated). The loss of a level is
gold * mean(gold rows, 0 without any) + threshold * mean(threshold rows),
and the total is the level-weighted sum.
"""
import numpy
import torch

SCORE_FIELDS = ("start", "end", "span", "anchor")


def _neg_log_share(first, others):
    """-log(exp(first) / (exp(first) + sum of exp(x) over x in others))."""
    logits = torch.stack([first] + list(others))
    top = logits.detach().max()
    return -(first - top - torch.log(torch.exp(logits - top).sum()))


def _mean(rows):
    return torch.stack(rows).mean()


def _reference(scores, example, weights):
    """The total loss as a 0-d tensor; `scores` maps the SCORE_FIELDS to
    float64 tensors."""
    starts = [int(s) for s in numpy.asarray(example["span_starts"])]
    ends = [int(e) for e in numpy.asarray(example["span_ends"])]
    token_segments = [int(g) for g in numpy.asarray(example["token_segments"])]
    span_segments = [int(g) for g in numpy.asarray(example["span_segments"])]
    gold = [(int(c), int(t)) for c, t in zip(example["gold_spans"], example["gold_types"])]
    annotated = example.get("annotated")

    def is_annotated(g, t):
        return annotated is None or bool(annotated[g][t])

    # level, item scores, segment of each item, (item, type) of each gold
    # mention (a token can start two gold mentions: one gold row each), level weight
    levels = [
        (0, scores["start"], token_segments, [(starts[c], t) for c, t in gold], weights.start),
        (1, scores["end"], token_segments, [(ends[c], t) for c, t in gold], weights.end),
        (2, scores["span"], span_segments, gold, weights.span),
    ]  # fmt: skip
    total = torch.zeros((), dtype=torch.float64)
    for level, level_scores, segments, pairs, level_weight in levels:
        anchors = scores["anchor"][:, level]
        n_segments, n_types = anchors.shape
        gold_set = set(pairs)

        def negatives(g, t):
            if not is_annotated(g, t):
                return []
            return [level_scores[i, t] for i in range(len(segments)) if segments[i] == g and (i, t) not in gold_set]

        threshold_rows = [
            _neg_log_share(anchors[g, t], negatives(g, t))
            for g in range(n_segments)
            for t in range(n_types)
            if is_annotated(g, t)
        ]
        gold_rows = [
            _neg_log_share(level_scores[i, t], [anchors[segments[i], t]] + negatives(segments[i], t))
            for i, t in pairs
        ]
        gold_loss = _mean(gold_rows) if gold_rows else torch.zeros((), dtype=torch.float64)
        threshold_loss = _mean(threshold_rows) if threshold_rows else torch.zeros((), dtype=torch.float64)
        total = total + level_weight * (weights.gold * gold_loss + weights.threshold * threshold_loss)
    return total


def _leaves(example, requires_grad):
    return {
        k: torch.tensor(numpy.asarray(example[k], dtype=numpy.float64), requires_grad=requires_grad)
        for k in SCORE_FIELDS
    }


def reference_loss(example, weights) -> float:
    """The BINDER loss of `example` under `weights` (a LossWeights)."""
    with torch.no_grad():
        return _reference(_leaves(example, False), example, weights).item()


def reference_loss_and_grads(example, weights):
    """The loss and its gradient with respect to each of the SCORE_FIELDS
    (by autograd through the loops above), as (float, [Tensor, ...])."""
    leaves = _leaves(example, True)
    loss = _reference(leaves, example, weights)
    loss.backward()
    grads = [leaves[k].grad for k in SCORE_FIELDS]
    return loss.item(), [torch.zeros_like(leaves[k]) if g is None else g for k, g in zip(SCORE_FIELDS, grads)]

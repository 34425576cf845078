"""The BINDER scoring head and its contrastive losses, in plain PyTorch.

Nothing here knows about spaCy or thinc: tensors in, tensors out. The thinc
wrapper in `model.py` feeds the head one flat batch (all tokens of all docs
concatenated) plus integer index arrays describing the candidate spans and the
segments (sentences or whole docs) they live in, so all work is vectorised and
grows linearly with the number of tokens.
"""
import math
from dataclasses import dataclass
from typing import Dict, List, NamedTuple, Optional, Tuple

import torch
from torch import Tensor, nn
from torch.nn import functional as F

# Order of the three score levels in `anchor_scores[:, level, :]`.
START, END, SPAN = 0, 1, 2
LEVELS = ("start", "end", "span")


class BinderScores(NamedTuple):
    """Raw (scaled cosine) scores of one batch.

    start (Tensor[n_tokens, n_types]): token-as-start scores.
    end (Tensor[n_tokens, n_types]): token-as-end scores.
    span (Tensor[n_candidates, n_types]): candidate span scores.
    anchor (Tensor[n_segments, 3, n_types]): threshold ("no entity here")
        scores per segment for the start, end and span level.
    """

    start: Tensor
    end: Tensor
    span: Tensor
    anchor: Tensor


class NormalizedProjection(nn.Module):
    """Linear layer, dropout, then L2 normalisation to unit length."""

    def __init__(self, n_in: int, n_out: int, dropout: float, bias: bool = True):
        super().__init__()
        self.linear = nn.Linear(n_in, n_out, bias=bias)
        self.dropout = nn.Dropout(dropout)

    def forward(self, inputs: Tensor) -> Tensor:
        return F.normalize(self.dropout(self.linear(inputs)), dim=-1)


class BinderHead(nn.Module):
    """Bi-encoder scoring head of BINDER (Zhang et al., ICLR 2023).

    text_width (int): width of the contextual token vectors.
    type_width (int): width of the entity type vectors.
    projection_size (int): size D of the shared unit-sphere space.
    max_span_width (int): longest candidate span, in tokens.
    width_embedding_size (int): size of the learned span-width embedding.
    dropout (float): dropout after every projection.
    init_temperature (float): scores are `exp(a) * cosine` with `a`
        initialised to log(1 / init_temperature).
    """

    def __init__(
        self,
        text_width: int,
        type_width: int,
        *,
        projection_size: int = 128,
        max_span_width: int = 30,
        width_embedding_size: int = 128,
        dropout: float = 0.1,
        init_temperature: float = 0.07,
    ):
        super().__init__()
        self.config = {
            "text_width": text_width,
            "type_width": type_width,
            "projection_size": projection_size,
            "max_span_width": max_span_width,
            "width_embedding_size": width_embedding_size,
            "dropout": dropout,
            "init_temperature": init_temperature,
        }
        D = projection_size
        self.text_start = NormalizedProjection(text_width, D, dropout)
        self.text_end = NormalizedProjection(text_width, D, dropout)
        # W_r [h_i; h_j; w] is computed as W_a h_i + W_b h_j + W_c w, so no
        # (n_candidates x 2 * text_width) matrix is ever built.
        self.span_start = nn.Linear(text_width, D)
        self.span_end = nn.Linear(text_width, D, bias=False)
        self.span_width = nn.Linear(width_embedding_size, D, bias=False)
        self.width_embedding = nn.Embedding(max_span_width, width_embedding_size)
        self.span_dropout = nn.Dropout(dropout)
        self.type_start = NormalizedProjection(type_width, D, dropout)
        self.type_end = NormalizedProjection(type_width, D, dropout)
        self.type_span = NormalizedProjection(type_width, D, dropout)
        # The "no entity here" anchors: a pooled segment vector through heads
        # of their own, so the threshold depends on the text and on the type.
        self.anchor_start = NormalizedProjection(text_width, D, dropout)
        self.anchor_end = NormalizedProjection(text_width, D, dropout)
        self.anchor_span = NormalizedProjection(text_width, D, dropout)
        self.log_scales = nn.Parameter(
            torch.full((3,), math.log(1.0 / init_temperature))
        )

    # candidates whose vectors are built at once when no gradient is needed
    # and the scores are not factored (inference_chunk x projection_size floats)
    inference_chunk = 16384
    # without a gradient, whole segments of about this many tokens are scored
    # at a time: the projections of a long doc never live all at once
    inference_tokens = 4096
    # span scores come from per-token terms (`factored_span_scores`), in
    # training and at inference, instead of one vector per candidate; off,
    # each candidate's vector is built (the reference the tests compare to)
    factored_scores = True
    # without a gradient, token start and end scores are computed only when
    # this is set (binder_ner's predict clears it for the "span" rule, which
    # does not read them); else they are NaN, so a rule reading them fails
    boundary_scores = True

    @property
    def max_span_width(self) -> int:
        return self.width_embedding.num_embeddings

    def forward(
        self,
        tokens: Tensor,
        type_vectors: Tensor,
        span_starts: Tensor,
        span_ends: Tensor,
        token_segments: Tensor,
        n_segments: int,
    ) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
        """Score every token, candidate span and segment anchor against
        every type.

        tokens (Tensor[n_tokens, text_width]): token vectors of the batch.
        type_vectors (Tensor[n_types, type_width]): one vector per type.
        span_starts (Tensor[n_candidates]): first token of each candidate.
        span_ends (Tensor[n_candidates]): last token (inclusive).
        token_segments (Tensor[n_tokens]): segment index of each token.
        n_segments (int): number of segments in the batch.
        RETURNS (Tuple[Tensor, ...]): the fields of `BinderScores`.
        """
        widths = span_ends - span_starts
        if widths.numel() and int(widths.max()) >= self.max_span_width:
            raise ValueError(
                f"A candidate span is {int(widths.max()) + 1} tokens long, but "
                f"the head was built for at most {self.max_span_width}."
            )
        if not torch.is_grad_enabled() and tokens.shape[0] > self.inference_tokens:
            groups = segment_groups(token_segments, n_segments, span_starts, self.inference_tokens)
            if groups is not None and len(groups) > 1:
                parts = [
                    self._score(
                        tokens[t0:t1],
                        type_vectors,
                        span_starts[c0:c1] - t0,
                        span_ends[c0:c1] - t0,
                        token_segments[t0:t1] - s0,
                        s1 - s0,
                    )
                    for (s0, s1), (t0, t1), (c0, c1) in groups
                ]
                return tuple(torch.cat(field) for field in zip(*parts))  # type: ignore[return-value]
        return self._score(tokens, type_vectors, span_starts, span_ends, token_segments, n_segments)

    def _score(
        self,
        tokens: Tensor,
        type_vectors: Tensor,
        span_starts: Tensor,
        span_ends: Tensor,
        token_segments: Tensor,
        n_segments: int,
    ) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
        """`forward` on one batch or one group of whole segments."""
        widths = span_ends - span_starts
        scales = self.log_scales.exp()
        type_start = self.type_start(type_vectors)
        type_end = self.type_end(type_vectors)
        type_span = self.type_span(type_vectors)

        if torch.is_grad_enabled() or self.boundary_scores:
            start = scales[START] * self.text_start(tokens) @ type_start.T
            end = scales[END] * self.text_end(tokens) @ type_end.T
        else:  # two of the four token projections saved
            start = end = tokens.new_full((tokens.shape[0], type_start.shape[0]), float("nan"))
        # dropout on the three terms of a span's vector rather than on each
        # candidate's sum, so that the scores factor per token in training too
        span_start = self.span_dropout(self.span_start(tokens))
        span_end = self.span_dropout(self.span_end(tokens))
        width_vectors = self.span_dropout(self.span_width(self.width_embedding.weight))

        def score_spans(rows: slice) -> Tensor:
            # index_select, not indexing: its backward is an index_add, which
            # on the CPU takes half the time of indexing's accumulating put
            vectors = (
                span_start.index_select(0, span_starts[rows])
                + span_end.index_select(0, span_ends[rows])
                + width_vectors.index_select(0, widths[rows])
            )
            return scales[SPAN] * F.normalize(vectors, dim=-1) @ type_span.T

        if self.factored_scores:
            span = scales[SPAN] * factored_span_scores(
                span_start, span_end, width_vectors, type_span, span_starts, span_ends, widths
            )
        elif torch.is_grad_enabled():
            span = score_spans(slice(None))
        else:
            # score in chunks: peak memory stays at n_candidates x n_types
            # plus one chunk of span vectors
            n = span_starts.shape[0]
            span = torch.cat(
                [score_spans(slice(i, i + self.inference_chunk)) for i in range(0, n, self.inference_chunk)]
                or [type_span.new_zeros((0, type_span.shape[0]))]
            )

        pooled = segment_mean(tokens, token_segments, n_segments)
        anchor = torch.stack(
            [
                scales[START] * self.anchor_start(pooled) @ type_start.T,
                scales[END] * self.anchor_end(pooled) @ type_end.T,
                scales[SPAN] * self.anchor_span(pooled) @ type_span.T,
            ],
            dim=1,
        )
        return start, end, span, anchor


def factored_span_scores(
    starts_proj: Tensor,
    ends_proj: Tensor,
    width_vectors: Tensor,
    type_span: Tensor,
    span_starts: Tensor,
    span_ends: Tensor,
    widths: Tensor,
) -> Tensor:
    """cos(a_s + b_e + w_k, t) for every candidate (s, e, k = e - s) and
    type t, without building a vector per candidate.

    The dot product with t splits into per-token terms (a_s . t, b_e . t,
    w_k . t), and so does the squared norm of the sum, except for a_s . b_e,
    which only the pairs of tokens at most max_span_width apart need: one
    band of dot products. That replaces max_span_width vectors of
    projection_size floats per token (gathered, summed and normalized) by a
    few numbers per candidate, which was most of the head's inference time.
    Where the norm is a tiny difference of large terms (float32 rounding
    would dominate it), those candidates are scored directly.
    """
    if not span_starts.numel():
        return type_span.new_zeros((0, type_span.shape[0]))
    n_tokens, width = ends_proj.shape
    n_widths = width_vectors.shape[0]  # every candidate's width is below it
    n_types = type_span.shape[0]
    # each token's dot products with the types and with the width vectors, in
    # one product; rows are gathered with index_select (faster than indexing)
    targets = torch.cat([type_span, width_vectors]).T
    starts_dots, ends_dots = starts_proj @ targets, ends_proj @ targets
    numerator = (
        starts_dots[:, :n_types].contiguous().index_select(0, span_starts)
        + ends_dots[:, :n_types].contiguous().index_select(0, span_ends)
        + (width_vectors @ type_span.T).index_select(0, widths)
    )
    # band[s, k] = a_s . b_(s+k): each start against the windows of the end
    # vectors that follow it (a strided view, zeros past the last token)
    padded_ends = torch.cat([ends_proj, ends_proj.new_zeros((n_widths - 1, width))])
    band = torch.bmm(starts_proj.unsqueeze(1), padded_ends.unfold(0, n_widths, 1)).squeeze(1)
    squares = (
        starts_proj.square().sum(-1).index_select(0, span_starts)
        + ends_proj.square().sum(-1).index_select(0, span_ends)
        + width_vectors.square().sum(-1).index_select(0, widths)
    )
    # (token, width) pairs as flat indices into (n_tokens, n_widths) arrays
    start_width = span_starts * n_widths + widths
    cross = (
        band.reshape(-1).index_select(0, start_width)
        + starts_dots[:, n_types:].contiguous().reshape(-1).index_select(0, start_width)
        + ends_dots[:, n_types:].contiguous().reshape(-1).index_select(0, span_ends * n_widths + widths)
    )
    squared_norm = squares + 2.0 * cross
    # F.normalize's floor on the norm, so that both paths agree on zero vectors
    scores = numerator / squared_norm.clamp(min=0.0).sqrt().clamp(min=1e-12).unsqueeze(-1)
    unstable = torch.nonzero(squared_norm < CANCELLATION * squares).flatten()
    if unstable.numel():
        vectors = starts_proj[span_starts[unstable]] + ends_proj[span_ends[unstable]] + width_vectors[widths[unstable]]
        scores[unstable] = F.normalize(vectors, dim=-1) @ type_span.T
    return scores


# a squared norm below this share of its terms' sum has lost about
# log10(1 / CANCELLATION) of float32's 7 digits to cancellation; above it the
# cosine is within about 1e-5 of the direct one (1e-3 allowed 3.5e-5 in a check)
CANCELLATION = 1e-2


def segment_groups(
    token_segments: Tensor, n_segments: int, span_starts: Tensor, max_tokens: int
) -> Optional[List[Tuple[Tuple[int, int], Tuple[int, int], Tuple[int, int]]]]:
    """Consecutive runs of whole segments, grouped by the multiple of
    `max_tokens` their first token falls in (so at most `max_tokens` tokens
    plus one segment's), as (segments, tokens, candidates) index ranges.
    None unless the tokens are ordered by segment and the candidates by
    start token, as `enumerate_candidates` gives them: only then is a
    group's slice of each input its own and scoring group by group the same
    as scoring at once.
    """
    if token_segments.numel() and bool((token_segments[1:] < token_segments[:-1]).any()):
        return None
    if span_starts.numel() and bool((span_starts[1:] < span_starts[:-1]).any()):
        return None
    counts = torch.bincount(token_segments, minlength=n_segments)
    segment_starts = torch.cumsum(counts, 0) - counts
    group_of_segment = segment_starts // max_tokens
    breaks = (torch.nonzero(group_of_segment[1:] != group_of_segment[:-1]).flatten() + 1).tolist()
    segment_bounds = [0] + breaks + [n_segments]
    token_bounds = segment_starts[breaks].tolist()
    token_bounds = [0] + token_bounds + [int(token_segments.shape[0])]
    bounds = torch.tensor(token_bounds, dtype=span_starts.dtype, device=span_starts.device)
    candidate_bounds = torch.searchsorted(span_starts, bounds).tolist()
    return [
        ((segment_bounds[i], segment_bounds[i + 1]), (token_bounds[i], token_bounds[i + 1]),
         (candidate_bounds[i], candidate_bounds[i + 1]))
        for i in range(len(segment_bounds) - 1)
    ]


def segment_mean(values: Tensor, segments: Tensor, n_segments: int) -> Tensor:
    """Mean of the rows of `values` per segment (zeros for empty segments)."""
    sums = values.new_zeros((n_segments, values.shape[1]))
    sums = sums.index_add(0, segments, values)
    counts = values.new_zeros((n_segments,)).index_add(
        0, segments, values.new_ones((values.shape[0],))
    )
    return sums / counts.clamp(min=1.0).unsqueeze(1)


def segment_logsumexp(scores: Tensor, segments: Tensor, n_segments: int) -> Tensor:
    """Log-sum-exp of the rows of `scores` per segment, column by column.

    scores (Tensor[n, k]): may hold -inf for masked entries.
    segments (Tensor[n]): segment index of each row.
    RETURNS (Tensor[n_segments, k]): -inf where a segment has no finite entry,
        with a zero (not NaN) gradient there.
    """
    k = scores.shape[1]
    index = segments.unsqueeze(1).expand(-1, k)
    neg_inf = scores.new_full((n_segments, k), float("-inf"))
    maxima = neg_inf.scatter_reduce(0, index, scores.detach(), "amax")
    finite = torch.isfinite(maxima)
    safe_max = torch.where(finite, maxima, torch.zeros_like(maxima))
    exps = torch.exp(scores - safe_max[segments])
    sums = scores.new_zeros((n_segments, k)).index_add(0, segments, exps)
    safe_sums = torch.where(finite, sums, torch.ones_like(sums))
    return torch.where(finite, safe_max + safe_sums.log(), neg_inf)


@dataclass(frozen=True)
class LossWeights:
    """Weights of the BINDER loss.

    total = gold * (start * L_start + end * L_end + span * L_span)_gold
          + threshold * (...)_threshold
    """

    gold: float = 0.5
    threshold: float = 0.5
    start: float = 0.2
    end: float = 0.2
    span: float = 0.6

    def __post_init__(self):
        for name in ("gold", "threshold", "start", "end", "span"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(
                    f"Loss weight '{name}' must be a finite number >= 0, got {value}."
                )
        if self.gold + self.threshold <= 0:
            raise ValueError(
                "The 'gold' and 'threshold' loss weights sum to zero, so nothing "
                "would be trained. Give at least one of them a positive weight."
            )
        if self.start + self.end + self.span <= 0:
            raise ValueError(
                "The 'start', 'end' and 'span' loss weights sum to zero, so "
                "nothing would be trained. Give at least one a positive weight."
            )


def contrastive_losses(
    scores: Tensor,
    anchors: Tensor,
    segments: Tensor,
    is_gold: Tensor,
    gold_rows: Tensor,
    gold_types: Tensor,
    *,
    annotated: Optional[Tensor] = None,
) -> Tuple[Tensor, Tensor]:
    """The two BINDER losses for one level (start, end or span).

    Per (segment, type), the threshold loss is the softmax cross-entropy of
    the anchor against all non-gold items of that type in the segment. Per
    gold mention, the gold loss is the softmax cross-entropy of the gold item
    against the anchor and the same non-gold items (other gold items of the
    type are left out; gold items of other types stay negatives).

    scores (Tensor[n, n_types]): item scores (tokens or candidate spans).
    anchors (Tensor[n_segments, n_types]): anchor score per segment and type.
    segments (Tensor[n]): segment index of each item.
    is_gold (Tensor[n, n_types]): True where the item is gold for the type.
    gold_rows (Tensor[n_gold]): item index of each gold mention.
    gold_types (Tensor[n_gold]): type index of each gold mention.
    annotated (Optional[Tensor[n_segments, n_types]]): False where the
        segment's doc is not annotated for the type: its threshold row is
        left out and a gold mention there competes with the anchor alone
        (the row's unlabelled items say nothing about the type).
    RETURNS (Tuple[Tensor, Tensor]): mean gold loss (0 without gold mentions)
        and mean threshold loss over the annotated (segment, type) rows.
    """
    negatives = scores.masked_fill(is_gold, float("-inf"))
    negatives_lse = segment_logsumexp(negatives, segments, anchors.shape[0])
    # log-sum-exp over the anchor and the negatives, per (segment, type)
    denominator = torch.logaddexp(anchors, negatives_lse)
    threshold_rows = denominator - anchors
    if annotated is not None:
        threshold_rows = threshold_rows[annotated]
        # a gold mention in a row that is not annotated competes with the
        # anchor only: the row's unlabelled items are not known negatives
        denominator = torch.where(annotated, denominator, anchors)
    threshold_loss = (
        threshold_rows.mean() if threshold_rows.numel() else scores.sum() * 0.0
    )
    if gold_rows.numel():
        gold_scores = scores[gold_rows, gold_types]
        gold_denominator = torch.logaddexp(
            gold_scores, denominator[segments[gold_rows], gold_types]
        )
        gold_loss = (gold_denominator - gold_scores).mean()
    else:
        gold_loss = scores.sum() * 0.0
    return gold_loss, threshold_loss


def binder_loss(
    scores: BinderScores,
    *,
    token_segments: Tensor,
    span_starts: Tensor,
    span_ends: Tensor,
    span_segments: Tensor,
    gold_spans: Tensor,
    gold_types: Tensor,
    weights: LossWeights,
    annotated: Optional[Tensor] = None,
) -> Tuple[Tensor, Dict[str, float]]:
    """The full BINDER training loss of a batch.

    gold_spans (Tensor[n_gold]): candidate index of each gold mention
        (unique (candidate, type) pairs).
    gold_types (Tensor[n_gold]): type index of each gold mention.
    weights (LossWeights): term weights.
    annotated (Optional[Tensor[n_segments, n_types]]): False where a
        segment's doc is not annotated for a type (None: annotated for all);
        those (segment, type) threshold rows are left out of the loss.
    RETURNS (Tuple[Tensor, Dict[str, float]]): the scalar loss and its parts.
    """
    n_types = scores.span.shape[1]
    gold_starts = span_starts[gold_spans]
    gold_ends = span_ends[gold_spans]
    parts: Dict[str, float] = {}
    total = scores.span.new_zeros(())
    levels = (
        (START, scores.start, token_segments, gold_starts, weights.start),
        (END, scores.end, token_segments, gold_ends, weights.end),
        (SPAN, scores.span, span_segments, gold_spans, weights.span),
    )
    for level, level_scores, segments, rows, level_weight in levels:
        is_gold = torch.zeros(
            (level_scores.shape[0], n_types),
            dtype=torch.bool,
            device=level_scores.device,
        )
        is_gold[rows, gold_types] = True
        gold_loss, threshold_loss = contrastive_losses(
            level_scores,
            scores.anchor[:, level],
            segments,
            is_gold,
            rows,
            gold_types,
            annotated=annotated,
        )
        total = total + level_weight * (
            weights.gold * gold_loss + weights.threshold * threshold_loss
        )
        parts[f"gold_{LEVELS[level]}"] = float(gold_loss.detach())
        parts[f"threshold_{LEVELS[level]}"] = float(threshold_loss.detach())
    return total, parts

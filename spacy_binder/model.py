"""Thinc wiring of BINDER: text encoder + type encoder + torch scoring head."""
from contextvars import ContextVar
from dataclasses import dataclass
from io import BytesIO
from typing import Any, Callable, List, Optional, Sequence, Tuple

import numpy
import srsly
import torch
from spacy.tokens import Doc
from spacy.util import registry
from thinc.api import ArgsKwargs, Model, PyTorchWrapper_v3, torch2xp, xp2torch
from thinc.types import Floats2d, Ints1d

from .spans import DEFAULT_MAX_SEGMENT_LENGTH, CandidateBatch, enumerate_candidates
from .torch_binder import BinderHead, BinderScores, LossWeights, binder_loss


@dataclass
class BinderOutput:
    """What the BINDER model returns for a batch of docs.

    candidates (CandidateBatch): token, segment and candidate layout.
    scores (BinderScores): xp arrays of start, end, span and anchor scores.
    """

    candidates: CandidateBatch
    scores: BinderScores


class TypeVectorCache:
    """Type vectors computed at inference, reused while weights, labels and
    descriptions stay the same. The owner calls `clear()` when weights, or
    which types are trained, change; a change of descriptions is detected
    from the key."""

    def __init__(self):
        self.clear()

    def clear(self) -> None:
        self.key: Optional[Tuple[str, ...]] = None
        self.vectors: Optional[Floats2d] = None


# Set by binder_ner around its predict (per thread, never saved): drop each
# doc's transformer output once the text encoder has pooled it.
FREE_TRANSFORMER_OUTPUT: ContextVar[bool] = ContextVar("free_transformer_output", default=False)

# where the removal of v1's partial-label options is measured
PARTIAL_LABEL_RESULTS = "benchmarks/results/README.md#training-from-distant-labels"


@registry.misc("spacy-binder.BinderLoss.v2")
def make_binder_loss(
    gold_weight: float = 0.5,
    threshold_weight: float = 0.5,
    start_weight: float = 0.2,
    end_weight: float = 0.2,
    span_weight: float = 0.6,
) -> LossWeights:
    """Weights of the BINDER loss: gold vs threshold rows, and start, end and
    span levels (see DESIGN: total = 0.5 gold + 0.5 threshold, each
    0.2 start + 0.2 end + 0.6 span)."""
    return LossWeights(
        gold=gold_weight,
        threshold=threshold_weight,
        start=start_weight,
        end=end_weight,
        span=span_weight,
    )


@registry.misc("spacy-binder.BinderLoss.v1")
def make_binder_loss_v1(
    gold_weight: float = 0.5,
    threshold_weight: float = 0.5,
    start_weight: float = 0.2,
    end_weight: float = 0.2,
    span_weight: float = 0.6,
    unlabeled_weight: float = 1.0,
    ignore_overlapping_negatives: bool = False,
) -> LossWeights:
    """BinderLoss.v2 for the configs of pipelines saved before it: they hold
    the two partial-label options, which were removed (measured not to help
    on gold dev); their plain values are accepted."""
    if unlabeled_weight != 1.0 or ignore_overlapping_negatives is not False:
        raise ValueError(
            "spacy-binder.BinderLoss.v1's partial-label options were removed: "
            f"got unlabeled_weight = {unlabeled_weight!r}, ignore_overlapping_negatives = "
            f"{ignore_overlapping_negatives!r}. Neither helped on a gold dev set "
            f"({PARTIAL_LABEL_RESULTS}). Use spacy-binder.BinderLoss.v2 without them; for "
            "examples annotated for some types only, see spacy-binder.NewTypesCorpus.v1."
        )
    return make_binder_loss(gold_weight, threshold_weight, start_weight, end_weight, span_weight)


@registry.architectures("spacy-binder.BinderModel.v1")
def build_binder_model(
    text_encoder: Model[List[Doc], List[Floats2d]],
    type_encoder: Model[List[str], Floats2d],
    *,
    projection_size: int = 128,
    width_embedding_size: int = 128,
    dropout: float = 0.1,
) -> Model[List[Doc], BinderOutput]:
    """BINDER: score every candidate span of each doc against every entity
    type, with a text-dependent "no entity" anchor per segment and type.

    text_encoder (Model[List[Doc], List[Floats2d]]): one vector per token,
        e.g. a TransformerListener with pooling, or a Tok2Vec.
    type_encoder (Model[List[str], Floats2d]): one vector per type, from the
        type descriptions in label order.
    projection_size (int): size of the shared unit-sphere space.
    width_embedding_size (int): size of the span-width embedding.
    dropout (float): dropout rate in the projection heads.
    """
    for setting, value in (
        ("projection_size", projection_size),
        ("width_embedding_size", width_embedding_size),
    ):
        if value < 1:
            raise ValueError(f"BinderModel {setting} must be >= 1, got {value}.")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"BinderModel dropout must be in [0, 1), got {dropout}.")
    head = PyTorchWrapper_v3(
        torch.nn.Module(),  # replaced by a BinderHead once the widths are known
        convert_inputs=_convert_head_inputs,
        convert_outputs=_convert_head_outputs,
        serialize_model=serialize_head,
        deserialize_model=deserialize_head,
    )
    return Model(
        "binder",
        binder_forward,
        init=binder_init,
        layers=[text_encoder, type_encoder, head],
        refs={"text_encoder": text_encoder, "type_encoder": type_encoder, "head": head},
        attrs={
            "projection_size": projection_size,
            "width_embedding_size": width_embedding_size,
            "dropout": dropout,
            # set by the component
            "max_span_width": None,
            "max_segment_length": DEFAULT_MAX_SEGMENT_LENGTH,
            "descriptions": [],
            # indices of the types not trained yet (added by add_label)
            "untrained_types": (),
            "type_vector_cache": TypeVectorCache(),
        },
    )


def clear_type_vectors(model: Model) -> None:
    """Drop the type vectors cached for inference: call it whenever the
    weights, labels or descriptions change."""
    model.attrs["type_vector_cache"].clear()


def binder_loss_and_gradient(
    model: Model,
    output: BinderOutput,
    gold_spans: Ints1d,
    gold_types: Ints1d,
    weights: LossWeights,
    annotated: Optional[numpy.ndarray] = None,
) -> Tuple[float, BinderScores]:
    """The BINDER loss of a batch (see `torch_binder.binder_loss`) and its
    gradient with respect to the scores, as xp arrays for `backprop`.

    gold_spans (Ints1d): candidate index of each gold mention.
    gold_types (Ints1d): type index of each gold mention.
    annotated (Optional[ndarray[n_segments, n_types]]): False where a
        segment's doc is not annotated for a type (see new_types).
    """
    candidates = output.candidates
    leaves = [xp2torch(score, requires_grad=True) for score in output.scores]
    device = leaves[0].device

    def index(array) -> torch.Tensor:
        return torch.as_tensor(numpy.asarray(array, dtype="int64"), device=device)

    loss, _ = binder_loss(
        BinderScores(*leaves),
        token_segments=index(candidates.token_segments),
        span_starts=index(candidates.span_starts),
        span_ends=index(candidates.span_ends),
        span_segments=index(candidates.span_segments),
        gold_spans=index(gold_spans),
        gold_types=index(gold_types),
        weights=weights,
        annotated=None if annotated is None else torch.as_tensor(annotated, device=device),
    )
    loss.backward()
    d_scores = BinderScores(
        *(
            torch2xp(leaf.grad, ops=model.ops) if leaf.grad is not None else model.ops.xp.zeros_like(score)
            for leaf, score in zip(leaves, output.scores)
        )
    )
    return float(loss.detach()), d_scores


def get_head(model: Model) -> Optional[BinderHead]:
    """The torch head, or None before the model is initialized."""
    module = model.get_ref("head").shims[0]._model
    return module if isinstance(module, BinderHead) else None


def binder_init(model: Model, X: Optional[List[Doc]] = None, Y=None) -> None:
    text_encoder = model.get_ref("text_encoder")
    type_encoder = model.get_ref("type_encoder")
    descriptions = model.attrs["descriptions"]
    if not descriptions:
        raise ValueError("The BINDER model needs at least one entity type.")
    docs = [doc for doc in (X or []) if len(doc)]
    if not docs:
        raise ValueError(
            "The BINDER model needs sample docs with at least one token to "
            "infer the width of its text encoder."
        )
    text_encoder.initialize(X=docs)
    text_width = text_encoder.predict(docs[:1])[0].shape[1]
    type_encoder.initialize(X=descriptions)
    type_width = type_encoder.predict(descriptions).shape[1]
    head_wrapper = model.get_ref("head")
    module = BinderHead(
        text_width,
        type_width,
        projection_size=model.attrs["projection_size"],
        max_span_width=model.attrs["max_span_width"],
        width_embedding_size=model.attrs["width_embedding_size"],
        dropout=model.attrs["dropout"],
    )
    head_wrapper.shims[0]._model = module.to(head_wrapper.shims[0].device)
    clear_type_vectors(model)


def _type_vectors(model: Model, is_train: bool) -> Tuple[Floats2d, Callable]:
    type_encoder = model.get_ref("type_encoder")
    descriptions = model.attrs["descriptions"]
    if is_train:
        return type_encoder(descriptions, is_train=True)
    cache = model.attrs["type_vector_cache"]
    key = tuple(descriptions)
    if cache.key != key or cache.vectors is None:
        cache.vectors = _predict_type_vectors(type_encoder, descriptions, model.attrs["untrained_types"])
        cache.key = key
    return cache.vectors, lambda d_vectors: descriptions


def _predict_type_vectors(type_encoder: Model, descriptions: List[str], untrained: Sequence[int]) -> Floats2d:
    """Type vectors for inference: the trained types' in one batch, as before
    any type was added, the untrained types' in another. One batch pads every
    description to its longest, which moves the other vectors by float noise;
    apart, adding a type leaves the trained types' predictions bit for bit."""
    if not untrained:
        return type_encoder.predict(descriptions)
    vectors = type_encoder.ops.alloc2f(len(descriptions), type_encoder.get_dim("nO"))
    for group in _trained_and_untrained(len(descriptions), untrained):
        vectors[type_encoder.ops.asarray1i(group)] = type_encoder.predict([descriptions[i] for i in group])
    return vectors


def _trained_and_untrained(n_types: int, untrained: Sequence[int]) -> List[List[int]]:
    """The indices of the trained types and of the untrained ones, the
    groups that inference runs apart (an empty one left out)."""
    trained = [i for i in range(n_types) if i not in untrained]
    return [group for group in (trained, list(untrained)) if group]


def binder_forward(
    model: Model, docs: List[Doc], is_train: bool
) -> Tuple[BinderOutput, Callable]:
    head_module = get_head(model)
    if head_module is None:
        raise ValueError(
            "The BINDER model is not initialized. Call nlp.initialize() (or "
            "train the pipeline) before using binder_ner."
        )
    max_span_width = model.attrs["max_span_width"]
    if max_span_width > head_module.max_span_width:
        raise ValueError(
            f"binder_ner is set to max_span_width={max_span_width}, but its "
            f"weights were trained for at most {head_module.max_span_width} "
            "tokens. Use a value <= that, or retrain."
        )
    candidates = enumerate_candidates(docs, max_span_width, model.attrs["max_segment_length"])
    text_encoder = model.get_ref("text_encoder")
    if is_train:
        token_vectors, backprop_text = text_encoder(docs, is_train)
    else:  # predict keeps no backprop closure, and with it no copy of the input
        token_vectors = text_encoder.predict(docs)
        if FREE_TRANSFORMER_OUTPUT.get():
            # pooled into token vectors: the head works without the output
            for doc in docs:
                doc._.trf_data = None
    tokens = _concatenate_token_vectors(model, docs, token_vectors, head_module.config["text_width"])
    # an empty doc's gradient has the shape its encoder gave it, e.g. (0, 0)
    shapes = [vectors.shape for vectors in token_vectors]
    del token_vectors  # `tokens` may be a copy: hold one, not both
    type_vectors, backprop_types = _type_vectors(model, is_train)
    layout = (candidates.span_starts, candidates.span_ends, candidates.token_segments, candidates.n_segments)
    head = model.get_ref("head")
    untrained = model.attrs["untrained_types"]
    if is_train or not untrained:
        scores, backprop_head = head((tokens, type_vectors, *layout), is_train)
    else:  # at inference, with nothing to backpropagate
        scores = _score_apart(head, tokens, type_vectors, layout, untrained)
    lengths = [len(doc) for doc in docs]

    def backprop(d_output: BinderOutput) -> List[Doc]:
        d_tokens, d_types = backprop_head(d_output.scores)
        backprop_types(d_types)
        d_token_vectors = []
        start = 0
        for length, shape in zip(lengths, shapes):
            if length:
                d_token_vectors.append(d_tokens[start : start + length])
            else:
                d_token_vectors.append(model.ops.alloc(shape, dtype=d_tokens.dtype))
            start += length
        backprop_text(d_token_vectors)
        return docs

    return BinderOutput(candidates=candidates, scores=scores), backprop


def _score_apart(
    head: Model, tokens: Floats2d, type_vectors: Floats2d, layout: tuple, untrained: Sequence[int]
) -> BinderScores:
    """Inference scores of the trained types and of the untrained ones from
    two runs of the head: a matrix product's values move by float noise with
    its number of columns, so apart a type added later leaves the trained
    types' scores bit for bit."""
    n_types = type_vectors.shape[0]
    fields: List[Any] = []
    for group in _trained_and_untrained(n_types, untrained):
        index = head.ops.asarray1i(group)
        scores = head.predict((tokens, type_vectors[index], *layout))
        if not fields:  # every field has the types on its last axis
            fields = [head.ops.xp.empty(array.shape[:-1] + (n_types,), dtype=array.dtype) for array in scores]
        for field, array in zip(fields, scores):
            field[..., index] = array
    return BinderScores(*fields)


def _concatenate_token_vectors(
    model: Model, docs: List[Doc], token_vectors: List[Floats2d], width: int
) -> Floats2d:
    """The token vectors of the batch as one (n_tokens, width) array.

    Encoders disagree on what an empty doc gets (a transformer listener
    gives (0, 0), a Tok2Vec (0, width)); empty docs add no rows, so their
    arrays are left out whatever their shape.
    """
    rows = []
    for doc, vectors in zip(docs, token_vectors):
        if vectors.shape[0] != len(doc):
            raise ValueError(
                f"The text encoder returned {vectors.shape[0]} vectors for a doc "
                f"of {len(doc)} tokens; binder_ner needs one vector per token."
            )
        if len(doc) == 0:
            continue
        if vectors.ndim != 2 or vectors.shape[1] != width:
            raise ValueError(
                f"The text encoder returned vectors of shape {tuple(vectors.shape)} "
                f"for a doc of {len(doc)} tokens, but binder_ner's weights expect "
                f"width {width}. Use the text encoder the component was trained with."
            )
        rows.append(vectors)
    if not rows:
        return model.ops.alloc2f(0, width)
    if len(rows) == 1:  # one doc with tokens: no copy
        return rows[0]
    return model.ops.xp.concatenate(rows, axis=0)


def _convert_head_inputs(
    model: Model, inputs: Tuple[Any, ...], is_train: bool
) -> Tuple[ArgsKwargs, Callable]:
    tokens, type_vectors, starts, ends, segments, n_segments = inputs
    device = model.shims[0].device

    def as_index(array) -> torch.Tensor:
        return xp2torch(model.ops.asarray(array), device=device).long()

    args = (
        xp2torch(tokens, requires_grad=is_train, device=device),
        xp2torch(type_vectors, requires_grad=is_train, device=device),
        as_index(starts),
        as_index(ends),
        as_index(segments),
        n_segments,
    )

    def convert_grads(d_args: ArgsKwargs) -> Tuple[Floats2d, Floats2d]:
        d_tokens, d_types = d_args.args[:2]
        return (
            torch2xp(d_tokens, ops=model.ops)
            if d_tokens is not None
            else model.ops.alloc2f(*tokens.shape),
            torch2xp(d_types, ops=model.ops)
            if d_types is not None
            else model.ops.alloc2f(*type_vectors.shape),
        )

    return ArgsKwargs(args=args, kwargs={}), convert_grads


def _convert_head_outputs(
    model: Model, inputs_outputs: Tuple[Any, Any], is_train: bool
) -> Tuple[BinderScores, Callable]:
    _, outputs = inputs_outputs
    scores = BinderScores(*(torch2xp(t.detach(), ops=model.ops) for t in outputs))
    device = model.shims[0].device

    def convert_grads(d_scores: BinderScores) -> ArgsKwargs:
        return ArgsKwargs(
            args=(list(outputs),),
            kwargs={"grad_tensors": [xp2torch(d, device=device) for d in d_scores]},
        )

    return scores, convert_grads


def serialize_head(module: torch.nn.Module) -> bytes:
    """The head's constructor settings plus its weights, so a saved pipeline
    rebuilds it without the sample data that sized it."""
    weights = BytesIO()
    torch.save(module.state_dict(), weights)
    config = module.config if isinstance(module, BinderHead) else None
    return srsly.msgpack_dumps({"config": config, "state": weights.getvalue()})


def deserialize_head(
    module: torch.nn.Module, data: bytes, device: "torch.device"
) -> torch.nn.Module:
    msg = srsly.msgpack_loads(data)
    if msg["config"] is None:
        return module
    head = BinderHead(**msg["config"])
    state = torch.load(BytesIO(msg["state"]), map_location=device, weights_only=True)
    head.load_state_dict(state)
    return head.to(device)

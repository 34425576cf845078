"""Data diagnostics for a binder_ner config (`python -m spacy_binder debug-data`).

`spacy debug data` analyses spans only for spancat. This module reports, for
each binder_ner component of a config and the train and dev corpora it
reads, what that analysis gives for spancat (mentions per label, their
lengths, mentions crossing a sentence or with punctuation or whitespace at
an edge, low-count labels, dev labels missing from train) and what only
BINDER needs: lengths against `max_span_width`, nesting and overlap, type
descriptions against the description encoder, and the gold that training
will leave out, counted by the function binder_ner's initialize uses
(`spans.count_skipped_gold`), so the report cannot disagree with it.

Nothing is trained or initialized: the pipeline is built from the config
and the corpora are read the way `spacy train` reads them.
"""
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy
from spacy import util
from spacy.language import Language
from spacy.tokens import Span
from spacy.training import Example
from spacy.util import registry, resolve_dot_names
from thinc.api import Model

from .component import BinderNER
from .descriptions import read_descriptions
from .spans import SKIP_REASONS, count_skipped_gold, get_gold_spans
from .type_encoders import description_piece_limit

# Fewer train mentions than this is little to learn a type from (the
# threshold `spacy debug data` uses for a new NER or spancat label).
LOW_COUNT_THRESHOLD = 50
# How a mention overlaps the others of its doc; each mention is counted
# once per kind, however many mentions it overlaps that way.
INSIDE = "lie inside another mention"
CONTAINS = "contain another mention"
CROSSES = "cross another mention without nesting"
SAME_TOKENS_OTHER_LABEL = "have the exact tokens of a mention with another label"
REPEATED = "repeat an earlier mention with the same label (training counts it once)"
OVERLAP_KINDS = (INSIDE, CONTAINS, CROSSES, SAME_TOKENS_OTHER_LABEL, REPEATED)


@dataclass
class SplitReport:
    """The gold mentions of one corpus (train or dev), per label.

    Lengths, sentences and edges are read on the reference doc's tokens, as
    `spacy debug data` does; `skipped` on the predicted doc's, as training
    does.

    n_docs (int): number of examples the corpus reader gave.
    label_counts (Counter): mentions per label.
    docs_with_label (Counter): examples with at least one mention of each label.
    lengths (Dict[str, Counter]): label -> {length in tokens: mentions}.
    longer_than_max_span_width (Counter): mentions per label longer than
        max_span_width reference tokens.
    has_sentences (bool): whether any reference doc has sentence boundaries.
    crossing_sentences (Counter): mentions per label that cross a sentence
        of the reference doc.
    punctuation_edges (Counter): mentions per label that start or end on punctuation.
    whitespace_edges (Counter): mentions per label that start or end on whitespace.
    overlaps (Dict[str, Counter]): overlap kind (OVERLAP_KINDS) -> mentions per label.
    skipped (Dict[str, Counter]): reason (spans.SKIP_*) -> mentions per
        label that training leaves out of the loss.
    """

    n_docs: int = 0
    label_counts: Counter = field(default_factory=Counter)
    docs_with_label: Counter = field(default_factory=Counter)
    lengths: Dict[str, Counter] = field(default_factory=dict)
    longer_than_max_span_width: Counter = field(default_factory=Counter)
    has_sentences: bool = False
    crossing_sentences: Counter = field(default_factory=Counter)
    punctuation_edges: Counter = field(default_factory=Counter)
    whitespace_edges: Counter = field(default_factory=Counter)
    overlaps: Dict[str, Counter] = field(default_factory=lambda: {kind: Counter() for kind in OVERLAP_KINDS})
    skipped: Dict[str, Counter] = field(default_factory=lambda: {reason: Counter() for reason in SKIP_REASONS})

    @property
    def n_mentions(self) -> int:
        return sum(self.label_counts.values())

    @property
    def n_skipped(self) -> int:
        return sum(sum(per_label.values()) for per_label in self.skipped.values())


@dataclass
class DescriptionReport:
    """The type descriptions of `[initialize.components.<name>]` against the
    labels and the description encoder.

    reads_descriptions (bool): False for a type encoder that ignores them
        (the label embedding); the other fields are then not checked.
    given (Dict[str, str]): label -> description, as the component reads them.
    without_description (List[str]): labels that will use their own name.
    for_unknown_labels (List[str]): described labels that are neither in the
        train data nor in `labels`: initialize raises on them.
    encoder_name (Optional[str]): the checkpoint whose tokenizer counts pieces.
    max_pieces (Optional[int]): the most word pieces the encoder reads.
    pieces (Dict[str, int]): label -> word pieces of its description (or name).
    too_long (Dict[str, int]): the labels whose description has more than
        max_pieces word pieces: the description encoder raises on them.
    encoder_error (Optional[str]): why the encoder's tokenizer could not be read.
    """

    reads_descriptions: bool = True
    given: Dict[str, str] = field(default_factory=dict)
    without_description: List[str] = field(default_factory=list)
    for_unknown_labels: List[str] = field(default_factory=list)
    encoder_name: Optional[str] = None
    max_pieces: Optional[int] = None
    pieces: Dict[str, int] = field(default_factory=dict)
    too_long: Dict[str, int] = field(default_factory=dict)
    encoder_error: Optional[str] = None


@dataclass
class DataReport:
    """Everything `debug-data` reports for one binder_ner component."""

    component: str
    spans_key: str
    max_span_width: int
    max_segment_length: int
    labels: List[str]
    train: SplitReport
    dev: SplitReport
    descriptions: DescriptionReport

    @property
    def low_count_labels(self) -> Dict[str, int]:
        """Labels with at most LOW_COUNT_THRESHOLD train mentions."""
        return {
            label: self.train.label_counts[label]
            for label in self.labels
            if self.train.label_counts[label] <= LOW_COUNT_THRESHOLD
        }

    @property
    def dev_labels_not_in_train(self) -> List[str]:
        return sorted(set(self.dev.label_counts) - set(self.train.label_counts))

    @property
    def labels_in_every_train_doc(self) -> List[str]:
        """Labels without a train example that lacks them (no negative docs)."""
        return [
            label
            for label in self.labels
            if self.train.n_docs and self.train.docs_with_label[label] == self.train.n_docs
        ]

    @property
    def errors(self) -> List[str]:
        """What makes training fail, as sentences."""
        errors = []
        if not self.train.n_mentions and not self.labels:
            errors.append(
                f"No gold mentions in the train corpus (reference.spans['{self.spans_key}'], "
                "else reference.ents) and no `labels`: initialize raises."
            )
        if self.descriptions.for_unknown_labels:
            errors.append(
                "Descriptions for labels neither in the train data nor in `labels` "
                f"(initialize raises): {', '.join(self.descriptions.for_unknown_labels)}."
            )
        if self.descriptions.too_long:
            errors.append(
                f"Descriptions longer than the {self.descriptions.max_pieces} word pieces the "
                "description encoder reads (it raises): "
                + ", ".join(f"{label} ({n})" for label, n in sorted(self.descriptions.too_long.items()))
                + "."
            )
        if self.descriptions.encoder_error:
            errors.append(self.descriptions.encoder_error)
        return errors


def diagnose_config(
    config_path: Union[str, Path], overrides: Dict[str, Any] = {}
) -> List[DataReport]:
    """Build the pipeline of a config, read its train and dev corpora the
    way `spacy train` does, and diagnose each binder_ner component.

    config_path (Union[str, Path]): the training config ("-" for stdin).
    overrides (Dict[str, Any]): dot-name config overrides, e.g. {"paths.train": ...}.
    RETURNS (List[DataReport]): one report per binder_ner component.
    """
    config = util.load_config(config_path, overrides=overrides)
    # filled as spacy train fills it: a config may leave [training] defaults out
    nlp = util.load_model_from_config(config, auto_fill=True, validate=True)
    config = nlp.config.interpolate()
    training = config["training"]
    train_corpus, dev_corpus = resolve_dot_names(config, [training["train_corpus"], training["dev_corpus"]])
    train_examples = list(train_corpus(nlp))
    dev_examples = list(dev_corpus(nlp))
    init_components = registry.resolve({"components": config["initialize"]["components"]})["components"]
    names = [name for name, pipe in nlp.pipeline if isinstance(pipe, BinderNER)]
    if not names:
        raise ValueError(f"The config '{config_path}' has no binder_ner component in its pipeline.")
    return [
        diagnose(nlp, name, train_examples, dev_examples, init_settings=init_components.get(name, {}))
        for name in names
    ]


def diagnose(
    nlp: Language,
    name: str,
    train_examples: Sequence[Example],
    dev_examples: Sequence[Example],
    *,
    init_settings: Dict[str, Any] = {},
) -> DataReport:
    """Diagnose the data of one binder_ner component, not yet initialized.

    nlp (Language): the pipeline the component is in.
    name (str): the component's name.
    train_examples (Sequence[Example]): the train corpus, as the reader gives it.
    dev_examples (Sequence[Example]): the dev corpus.
    init_settings (Dict[str, Any]): its `[initialize.components.<name>]`
        settings, resolved (`labels`, `descriptions`).
    RETURNS (DataReport): the report.
    """
    pipe = nlp.get_pipe(name)
    train = _split_report(train_examples, pipe.spans_key, pipe.max_span_width)
    # the labels initialize() gives the component
    given = list(init_settings["labels"]) if init_settings.get("labels") is not None else list(pipe.labels)
    labels = list(dict.fromkeys(given + sorted(set(train.label_counts) - set(given))))
    dev = _split_report(dev_examples, pipe.spans_key, pipe.max_span_width)
    label_index = {label: i for i, label in enumerate(labels)}
    for report, examples in ((train, train_examples), (dev, dev_examples)):
        report.skipped = count_skipped_gold(
            examples, label_index, pipe.spans_key, pipe.max_span_width, pipe.max_segment_length
        )
    return DataReport(
        component=name,
        spans_key=pipe.spans_key,
        max_span_width=pipe.max_span_width,
        max_segment_length=pipe.max_segment_length,
        labels=labels,
        train=train,
        dev=dev,
        descriptions=_description_report(nlp, pipe, labels, init_settings.get("descriptions")),
    )


def _split_report(examples: Iterable[Example], spans_key: str, max_span_width: int) -> SplitReport:
    report = SplitReport()
    for eg in examples:
        report.n_docs += 1
        reference = eg.reference
        mentions = [span for span in get_gold_spans(reference, spans_key) if span.label_]
        report.docs_with_label.update(set(span.label_ for span in mentions))
        has_sentences = reference.has_annotation("SENT_START")
        report.has_sentences |= has_sentences
        sent_starts = reference.to_array("SENT_START") == 1 if has_sentences else None
        for span in mentions:
            label = span.label_
            report.label_counts[label] += 1
            report.lengths.setdefault(label, Counter())[len(span)] += 1
            if len(span) > max_span_width:
                report.longer_than_max_span_width[label] += 1
            if sent_starts is not None and sent_starts[span.start + 1 : span.end].any():
                report.crossing_sentences[label] += 1
            edges = (span[0], span[-1])
            if any(token.is_punct for token in edges):
                report.punctuation_edges[label] += 1
            if any(token.is_space for token in edges):
                report.whitespace_edges[label] += 1
        _count_overlaps(mentions, report.overlaps)
    return report


def _count_overlaps(mentions: Sequence[Span], overlaps: Dict[str, Counter]) -> None:
    """Add the overlap kinds of a doc's mentions to `overlaps`."""
    ordered = sorted(mentions, key=lambda span: (span.start, -span.end))
    kinds: List[set] = [set() for _ in ordered]
    for i, outer in enumerate(ordered):
        for j in range(i + 1, len(ordered)):
            other = ordered[j]
            if other.start >= outer.end:  # sorted by start: no later one overlaps either
                break
            if (other.start, other.end) == (outer.start, outer.end):
                if other.label_ == outer.label_:
                    kinds[j].add(REPEATED)
                else:
                    kinds[i].add(SAME_TOKENS_OTHER_LABEL)
                    kinds[j].add(SAME_TOKENS_OTHER_LABEL)
            elif other.end <= outer.end:
                kinds[i].add(CONTAINS)
                kinds[j].add(INSIDE)
            else:
                kinds[i].add(CROSSES)
                kinds[j].add(CROSSES)
    for span, span_kinds in zip(ordered, kinds):
        for kind in span_kinds:
            overlaps[kind][span.label_] += 1


def _description_report(
    nlp: Language, pipe: BinderNER, labels: List[str], descriptions: Any
) -> DescriptionReport:
    type_encoder = pipe.model.get_ref("type_encoder")
    given = read_descriptions(descriptions) if descriptions is not None else {}
    report = DescriptionReport(
        reads_descriptions=type_encoder.attrs.get("reads_descriptions", True),
        given=given,
        without_description=[label for label in labels if label not in given],
        for_unknown_labels=[label for label in given if label not in labels],
    )
    shared = type_encoder.attrs.get("shares_transformer", False)
    if not report.reads_descriptions or not (shared or type_encoder.has_ref("transformer")):
        return report
    try:
        if shared:  # the transformer component reads the descriptions
            upstream = pipe._upstream_transformers(nlp)
            if len(upstream) != 1:
                raise ValueError(f"the shared description encoder needs one transformer component, found {len(upstream)}")
            transformer = upstream[0].model
        else:
            # name = null: the checkpoint of the transformer, as initialize resolves it
            pipe.resolve_description_encoder_name(nlp)
            transformer = type_encoder.get_ref("transformer")
        report.encoder_name = transformer.attrs["name"]
        tokenizer, max_pieces = _encoder_tokenizer(transformer)
    except (OSError, ValueError) as error:
        report.encoder_error = f"The description encoder's tokenizer could not be loaded: {error}"
        return report
    report.max_pieces = max_pieces
    texts = {label: given.get(label, label) for label in labels}
    # verbose=False: the length warning of transformers is what we report
    report.pieces = {label: len(tokenizer(text, verbose=False)["input_ids"]) for label, text in texts.items()}
    report.too_long = {label: n for label, n in report.pieces.items() if n > max_pieces}
    return report


def _encoder_tokenizer(transformer: Model) -> Tuple[Any, int]:
    """The tokenizer of a spacy-transformers TransformerModel, not yet
    loaded, and the most word pieces it reads, as
    `type_encoders.check_description_lengths` computes it (without loading
    the weights)."""
    from transformers import AutoConfig, AutoTokenizer

    name = transformer.attrs["name"]
    tokenizer = AutoTokenizer.from_pretrained(name, **dict(transformer._init_tokenizer_config))
    hf_config = AutoConfig.from_pretrained(name, **dict(transformer._init_transformer_config))
    return tokenizer, description_piece_limit(tokenizer, hf_config)


def length_percentile(lengths: Counter, percent: float) -> int:
    """The smallest length that at least `percent` % of the mentions have or
    stay under."""
    values = numpy.repeat(
        numpy.asarray(list(lengths.keys()), dtype="int64"), numpy.asarray(list(lengths.values()), dtype="int64")
    )
    return int(numpy.percentile(values, percent, method="inverted_cdf")) if len(values) else 0

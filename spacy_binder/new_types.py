"""Adding entity types to a trained pipeline with `spacy train`.

The new types' examples are usually annotated for the new types only: there,
a span without a label may well be one of the old types, so it must not
teach the old types' "no entity here" anchors anything. A reference doc
says which labels its gold is complete for through `doc.user_data`:

- ANNOTATED_LABELS: only these labels are annotated (the new data);
- MISSING_LABELS: every label but these is annotated (the pipeline's own
  training data, mixed in so that the old types are rehearsed).

binder_ner leaves the (segment, type) threshold rows of the labels a doc is
not annotated for out of its loss; gold mentions always count. Instead of
leaving the old types out there, `label_old_types` can give the new data
the trained pipeline's own predictions of its types (pseudo-labels), so the
old types keep being trained on the new text too.
`spacy-binder.NewTypesCorpus.v1` sets the marks, `spacy-binder.add_types.v1`
adds the new types to the sourced component before training
(`configs/binder_add_types.cfg`).
"""
import random
import weakref
from collections import Counter
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Union

import numpy
from spacy.language import Language
from spacy.tokens import Doc, Span, SpanGroup
from spacy.training import Corpus, Example
from spacy.util import load_model, registry
from wasabi import msg

from .descriptions import read_descriptions

ANNOTATED_LABELS = "binder_ner.annotated_labels"
MISSING_LABELS = "binder_ner.missing_labels"


def annotated_label_set(doc: Doc, labels: Sequence[str]) -> Optional[set]:
    """The labels of `labels` the doc's gold is complete for, or None when
    it is complete for all of them (no mark)."""
    annotated = doc.user_data.get(ANNOTATED_LABELS)
    missing = doc.user_data.get(MISSING_LABELS)
    if annotated is None and missing is None:
        return None
    if annotated is not None and missing is not None:
        raise ValueError(
            f"A reference doc has both {ANNOTATED_LABELS!r} and {MISSING_LABELS!r} "
            "in doc.user_data: mark it with one (the labels it is annotated for, "
            "or the labels it is not)."
        )
    if annotated is not None:
        return set(_label_list(annotated, ANNOTATED_LABELS)) & set(labels)
    return set(labels) - set(_label_list(missing, MISSING_LABELS))


def _label_list(value: object, key: str) -> List[str]:
    if isinstance(value, str) or not isinstance(value, (list, tuple, set, frozenset)):
        raise ValueError(f"doc.user_data[{key!r}] must be a list of labels, got {value!r}.")
    return list(value)


def annotated_rows(
    references: Sequence[Doc], labels: Sequence[str], doc_first_segments: numpy.ndarray, n_segments: int
) -> Optional[numpy.ndarray]:
    """Per (segment, type): whether the segment's doc is annotated for the
    type. None when every doc is annotated for every type.

    doc_first_segments (ndarray[n_docs + 1]): first segment of each doc, and
        the number of segments last.
    """
    sets = [annotated_label_set(doc, labels) for doc in references]
    if all(found is None for found in sets):
        return None
    rows = numpy.ones((n_segments, len(labels)), dtype=bool)
    for i, found in enumerate(sets):
        if found is not None:
            rows[doc_first_segments[i] : doc_first_segments[i + 1]] = [label in found for label in labels]
    return rows


def _new_type_labels(new_types: Union[str, Path, Dict[str, str]]) -> List[str]:
    labels = list(read_descriptions(new_types))
    if not labels:
        raise ValueError(f"No new types in {new_types!r}: give a JSON object of label -> description.")
    return labels


def binder_component(nlp: Language):
    """The pipeline's one binder_ner component."""
    from .component import BinderNER

    found = [pipe for _, pipe in nlp.pipeline if isinstance(pipe, BinderNER)]
    if len(found) != 1:
        raise ValueError(
            f"Expected one binder_ner component in the pipeline {nlp.pipe_names}, found {len(found)}."
        )
    return found[0]


def label_old_types(pipeline: Language, references: Sequence[Doc], new_labels: Sequence[str]) -> Counter:
    """Add `pipeline`'s predictions of its own types to reference docs
    annotated for `new_labels` only, in place, and mark the docs annotated
    for both. The pipeline reads each doc's own tokens (and sentence starts,
    where set), so every prediction lands on the reference's tokens. Nested
    references (with `doc.spans[spans_key]`) get the ranked output; flat
    ones `doc.ents` (also nested ones when the pipeline sets no spans). A
    gold mention wins: a prediction on the same tokens (nested) or
    overlapping it (flat) is left out and counted.

    RETURNS (Counter): spans added per label, and "left out".
    """
    from .spans import get_gold_spans  # spans imports this module

    pipe = binder_component(pipeline)
    clash = sorted(set(new_labels) & set(pipe.labels))
    if clash:
        raise ValueError(
            f"The pipeline that labels the old types already has the new types {clash}: "
            "give the trained pipeline from before they were added."
        )
    old_labels = set(pipe.labels)
    key = pipe.spans_key
    inputs = (
        Doc(
            pipeline.vocab,
            words=[token.text for token in ref],
            spaces=[bool(token.whitespace_) for token in ref],
            sent_starts=[token.is_sent_start for token in ref] if ref.has_annotation("SENT_START") else None,
        )
        for ref in references
    )
    counts: Counter = Counter()
    for ref, doc in zip(references, pipeline.pipe(inputs)):
        gold = list(get_gold_spans(ref, key))
        nested = key in ref.spans
        predicted = doc.spans[key] if nested and key in doc.spans else doc.ents
        added = [span for span in predicted if span.label_ in old_labels]
        if nested:
            taken = {(span.start, span.end) for span in gold}
            kept = [Span(ref, s.start, s.end, label=s.label_) for s in added if (s.start, s.end) not in taken]
            ref.spans[key] = SpanGroup(ref, name=key, spans=gold + kept)
        else:
            occupied = {i for span in gold for i in range(span.start, span.end)}
            kept = [
                Span(ref, e.start, e.end, label=e.label_) for e in added
                if not occupied.intersection(range(e.start, e.end))
            ]  # fmt: skip
            ref.set_ents(kept, default="unmodified")
        counts.update(span.label_ for span in kept)
        counts["left out"] += len(added) - len(kept)
        ref.user_data.pop(MISSING_LABELS, None)
        ref.user_data[ANNOTATED_LABELS] = sorted(old_labels | set(new_labels))
    return counts


@registry.readers("spacy-binder.NewTypesCorpus.v1")
def create_new_types_corpus(
    path: Optional[Path],
    new_types: Optional[Path],
    rehearsal_path: Optional[Path] = None,
    rehearsal_limit: int = 0,
    seed: int = 0,
    gold_preproc: bool = False,
    max_length: int = 0,
    old_types_from: Optional[Path] = None,
    new_repeats: int = 1,
) -> Callable[[Language], Iterator[Example]]:
    """Training data for adding types, read as spacy.Corpus.v1 reads it:
    `path` (.spacy) annotated for the new types only, then, when given,
    `rehearsal_path` (.spacy), the pipeline's own training data, taken to be
    annotated for every label but the new ones (after a second round of
    adding types, give it the gold of the first round's types too).

    new_types (Path): JSON file of the new types: label -> description (the
        file `spacy-binder.add_types.v1` reads).
    rehearsal_limit (int): at most this many rehearsal docs, one sample
        drawn with `seed` (0: all of them); spacy train reads the corpus
        once and shuffles new and rehearsal docs together each epoch.
    old_types_from (Path): a trained pipeline (the one the new types are
        added to) whose predictions of its own types label the new
        examples (`label_old_types`); None: the new examples train the new
        types only.
    new_repeats (int): read each new example this many times per epoch
        (as copies), so that with many rehearsal docs the new ones keep
        their share of the updates.
    """
    if path is None or new_types is None:
        raise ValueError(
            "spacy-binder.NewTypesCorpus.v1 needs `path` (the new types' examples, .spacy) "
            "and `new_types` (JSON: label -> description): set paths.train and paths.new_types."
        )
    labels = _new_type_labels(new_types)
    if rehearsal_limit < 0:
        raise ValueError(f"rehearsal_limit must be >= 0 (0: all), got {rehearsal_limit}.")
    if new_repeats < 1:
        raise ValueError(f"new_repeats must be 1 or more (each new example read that many times), got {new_repeats}.")
    new_corpus = Corpus(path, gold_preproc=gold_preproc, max_length=max_length)
    old_corpus = Corpus(rehearsal_path, gold_preproc=gold_preproc, max_length=max_length) if rehearsal_path else None

    def read(nlp: Language) -> Iterator[Example]:
        new = list(new_corpus(nlp))
        if not new:
            raise ValueError(f"The new types' corpus {path} has no examples.")
        for eg in new:
            eg.reference.user_data[ANNOTATED_LABELS] = list(labels)
        if old_types_from is not None:
            counts = label_old_types(load_model(old_types_from), [eg.reference for eg in new], labels)
            left_out = counts.pop("left out")
            msg.info(
                f"Old types labelled by {old_types_from} in {len(new)} new examples: "
                + (", ".join(f"{label} {n}" for label, n in sorted(counts.items())) or "none")
                + f"; {left_out} on a new type's gold mention left out"
            )
        yield from new
        for _ in range(new_repeats - 1):
            # copies: the same Doc twice in a batch would share its annotations
            yield from (eg.copy() for eg in new)
        if old_corpus is None:
            return
        old = list(old_corpus(nlp))
        if rehearsal_limit and len(old) > rehearsal_limit:
            old = random.Random(seed).sample(old, rehearsal_limit)
        for eg in old:
            eg.reference.user_data[MISSING_LABELS] = list(labels)
            yield eg

    return read


@registry.callbacks("spacy-binder.add_types.v1")
def make_add_types_callback(
    new_types: Union[str, Path], component: str = "binder_ner", base_model: Optional[str] = None
) -> Callable[[Language], Language]:
    """`[initialize.before_init]` of a config whose binder_ner is sourced
    from a trained pipeline: add every type of `new_types` (JSON: label ->
    description) with its description. `base_model` (the trained pipeline)
    also copies its tokenizer and vocab, as spacy.copy_from_base_model.v1.
    """
    descriptions = read_descriptions(new_types)
    _new_type_labels(descriptions)
    copy_base = registry.callbacks.get("spacy.copy_from_base_model.v1")(base_model, base_model) if base_model else None

    def add_types(nlp: Language) -> Language:
        if copy_base is not None:
            copy_base(nlp)
        # component_names: spacy train disables sourced components here
        if component not in nlp.component_names:
            raise ValueError(
                f"spacy-binder.add_types.v1: no component {component!r} in the pipeline "
                f"{nlp.component_names}; set `component` to the binder_ner component's name."
            )
        pipe = nlp.get_pipe(component)
        already = [label for label in descriptions if label in pipe.labels]
        if already:
            raise ValueError(
                f"spacy-binder.add_types.v1: {already} are already types of {component!r}; "
                "new_types must list new types only (fine-tuning existing types needs no add_types)."
            )
        for label, text in descriptions.items():
            pipe.add_label(label, description=text)
        # sourced: the component still points at the pipeline it was loaded
        # in; link it to this one (its transformer reads the descriptions)
        pipe._nlp = weakref.ref(nlp)
        pipe._link_shared_encoder(nlp)
        return nlp

    return add_types


@registry.callbacks("spacy-binder.freeze_lower_layers.v1")
def make_freeze_lower_layers_callback(component: str = "transformer", layers: int = 0) -> Callable[[Language], Language]:
    """`[initialize.after_init]`: keep the embeddings and the first `layers`
    layers of a transformer component's Hugging Face model as they are during
    training (no gradient, no update), so a fine-tune moves the upper layers
    only. 0 freezes nothing.
    """
    if layers < 0:
        raise ValueError(f"spacy-binder.freeze_lower_layers.v1: layers must be 0 or more, got {layers}.")

    def freeze_lower_layers(nlp: Language) -> Language:
        if layers == 0:
            return nlp
        if component not in nlp.component_names:
            raise ValueError(
                f"spacy-binder.freeze_lower_layers.v1: no component {component!r} in the pipeline "
                f"{nlp.component_names}; set `component` to the transformer component's name."
            )
        for module in _lower_modules(nlp, layers, component):
            module.requires_grad_(False)
        return nlp

    return freeze_lower_layers


def _lower_modules(nlp: Language, layers: int, component: str) -> list:
    """The embeddings and first `layers` layers of the Hugging Face model in `component`."""
    import torch
    from transformers import PreTrainedModel

    from .int8 import hf_shims

    found = {id(shim._model): shim._model for shim in hf_shims(nlp, component)}
    hf_models = [m for m in found.values() if isinstance(m, PreTrainedModel)]
    if len(hf_models) != 1:
        raise ValueError(
            f"spacy-binder.freeze_lower_layers.v1: {component!r} holds {len(hf_models)} initialized "
            "Hugging Face models, expected one: set `component` to the transformer component."
        )
    hf = hf_models[0]
    n_layers = getattr(hf.config, "num_hidden_layers", None)
    stacks = [m for name, m in hf.named_modules() if isinstance(m, torch.nn.ModuleList) and len(m) == n_layers]
    embeddings = getattr(hf, "embeddings", None)
    if len(stacks) != 1 or embeddings is None:
        raise ValueError(
            f"spacy-binder.freeze_lower_layers.v1: cannot find the embeddings and the layer stack "
            f"of {type(hf).__name__} in {component!r}."
        )
    if layers >= n_layers:
        raise ValueError(
            f"spacy-binder.freeze_lower_layers.v1: layers={layers}, but {type(hf).__name__} has {n_layers} "
            f"layers: freeze fewer than {n_layers} (to keep the whole transformer fixed, list it in "
            "[training] frozen_components and annotating_components instead)."
        )
    return [embeddings, *stacks[0][:layers]]

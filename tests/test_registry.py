"""Every registered name resolves through the installed package's entry points."""
import subprocess
import sys
from importlib.metadata import entry_points

REGISTERED = {
    "spacy_factories": {"binder_ner": "spacy_binder.component:make_binder_ner"},
    "spacy_architectures": {
        "spacy-binder.BinderModel.v1": "spacy_binder.model:build_binder_model",
        "spacy-binder.DescriptionEncoder.v1": "spacy_binder.type_encoders:build_description_encoder",
        "spacy-binder.LabelEmbeddingEncoder.v1": "spacy_binder.type_encoders:build_label_embedding_encoder",
        "spacy-binder.LengthBucketedTransformer.v1": "spacy_binder.length_buckets:build_length_bucketed_transformer",
        "spacy-binder.SharedDescriptionEncoder.v1": "spacy_binder.type_encoders:build_shared_description_encoder",
        "spacy-binder.TransformerListener.v1": "spacy_binder.listener:build_transformer_listener",
    },
    "spacy_scorers": {"spacy-binder.binder_scorer.v1": "spacy_binder.scorer:make_binder_scorer"},
    "spacy_misc": {
        "spacy-binder.BinderLoss.v1": "spacy_binder.model:make_binder_loss_v1",
        "spacy-binder.BinderLoss.v2": "spacy_binder.model:make_binder_loss",
    },
    "spacy_span_getters": {"spacy-binder.segment_spans.v1": "spacy_binder.span_getters:configure_segment_spans"},
    "spacy_callbacks": {
        "spacy-binder.add_types.v1": "spacy_binder.new_types:make_add_types_callback",
        "spacy-binder.int8_transformers.v1": "spacy_binder.int8:make_int8_callback",
    },
    "spacy_augmenters": {"spacy-binder.with_sentences.v1": "spacy_binder.augmenters:create_sentence_augmenter"},
    "spacy_readers": {
        "spacy-binder.BratCorpus.v1": "spacy_binder.corpora.readers:create_brat_reader",
        "spacy-binder.IOBCorpus.v1": "spacy_binder.corpora.readers:create_iob_reader",
        "spacy-binder.NewTypesCorpus.v1": "spacy_binder.new_types:create_new_types_corpus",
        "spacy-binder.SpansJsonlCorpus.v1": "spacy_binder.corpora.readers:create_spans_jsonl_reader",
        "spacy-binder.TokenJsonlCorpus.v1": "spacy_binder.corpora.readers:create_token_jsonl_reader",
    },
}


def test_entry_points_are_declared():
    for group, names in REGISTERED.items():
        declared = {ep.name: ep.value for ep in entry_points(group=group)}
        for name, target in names.items():
            assert declared.get(name) == target, (group, name)


def test_names_resolve_in_a_fresh_process_without_importing_the_package():
    """spaCy finds everything through entry points alone, as it does when
    loading a config or a saved pipeline."""
    script = """
import sys, spacy
from spacy.util import registry
assert "spacy_binder" not in sys.modules
for name in {architectures}:
    assert callable(registry.architectures.get(name)), name
assert callable(registry.scorers.get("spacy-binder.binder_scorer.v1")())
for name in {readers}:
    assert callable(registry.readers.get(name)), name
for name in {callbacks}:
    assert callable(registry.callbacks.get(name)), name
assert callable(registry.augmenters.get("spacy-binder.with_sentences.v1")(level=0.5))
weights = registry.misc.get("spacy-binder.BinderLoss.v2")()
assert (weights.gold, weights.threshold, weights.span) == (0.5, 0.5, 0.6)
from spacy_transformers.util import registry as trf_registry
assert callable(trf_registry.span_getters.get("spacy-binder.segment_spans.v1")(max_length=64))
nlp = spacy.blank("en")
nlp.add_pipe("transformer")
pipe = nlp.add_pipe("binder_ner")
assert type(pipe).__name__ == "BinderNER"
assert spacy.registry.factories.get("binder_ner") is not None
print("ok")
""".format(
        architectures=sorted(REGISTERED["spacy_architectures"]),
        readers=sorted(REGISTERED["spacy_readers"]),
        callbacks=sorted(REGISTERED["spacy_callbacks"]),
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("ok")

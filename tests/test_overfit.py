"""binder_ner can learn small corpora perfectly, nested and flat, and a saved
pipeline predicts exactly what the trained one did."""
import shutil

import numpy
import pytest
import spacy

from util import DESCRIPTIONS, FLAT_DATA, NESTED_DATA, cnn_pipeline, make_examples
from util import predictions, predictions_in_subprocess, span_tuples, train, transformer_pipeline


def overlapping_pairs(doc, key="sc"):
    spans = list(doc.spans[key])
    return [
        (a, b) for i, a in enumerate(spans) for b in spans[i + 1:]
        if a.start < b.end and b.start < a.end and a.label_ != b.label_
    ]


def assert_same_predictions(nlp_a, nlp_b, texts):
    for doc_a, doc_b in zip(nlp_a.pipe(texts), nlp_b.pipe(texts)):
        assert span_tuples(doc_a) == span_tuples(doc_b)
        numpy.testing.assert_array_equal(doc_a.spans["sc"].attrs["scores"], doc_b.spans["sc"].attrs["scores"])
        assert [(e.start, e.end, e.label_) for e in doc_a.ents] == [(e.start, e.end, e.label_) for e in doc_b.ents]


def test_overfit_nested_cnn(tmp_path):
    nlp = cnn_pipeline()
    examples = make_examples(nlp, NESTED_DATA)
    train(nlp, examples, 40)
    scores = nlp.evaluate(examples)
    assert scores["spans_sc_f"] == 1.0
    texts = [text for text, _ in NESTED_DATA]
    docs = list(nlp.pipe(texts))
    assert all(overlapping_pairs(doc) for doc in docs[:3])
    assert len(docs[3].spans["sc"]) == 0 and len(docs[3].ents) == 0
    # flat view: non-overlapping subset of the nested spans
    for doc in docs:
        assert set((e.start, e.end, e.label_) for e in doc.ents) <= set(span_tuples(doc))
    nlp.to_disk(tmp_path / "model")
    assert_same_predictions(nlp, spacy.load(tmp_path / "model"), texts)


def test_overfit_flat_from_ents(tmp_path):
    nlp = cnn_pipeline()
    examples = make_examples(nlp, FLAT_DATA, spans_key=None)
    train(nlp, examples, 40)
    scores = nlp.evaluate(examples)
    assert scores["ents_f"] == 1.0
    assert scores["spans_sc_f"] == 1.0  # gold ents double as nested gold
    nlp.to_disk(tmp_path / "model")
    assert_same_predictions(nlp, spacy.load(tmp_path / "model"), [t for t, _ in FLAT_DATA])


def test_overfit_nested_transformer_and_reload_offline(tiny_bert_path, tmp_path):
    """Listener text encoder + description encoder; the saved pipeline reloads
    in a fresh process with the hub offline and the model folder gone."""
    model_dir = tmp_path / "encoder"
    shutil.copytree(tiny_bert_path, model_dir)
    nlp = transformer_pipeline(str(model_dir))
    examples = make_examples(nlp, NESTED_DATA)
    train(nlp, examples, 60, descriptions=DESCRIPTIONS)
    assert nlp.evaluate(examples)["spans_sc_f"] == 1.0
    binder = nlp.get_pipe("binder_ner")
    assert binder.descriptions == DESCRIPTIONS and set(binder.labels) == set(DESCRIPTIONS)
    texts = [text for text, _ in NESTED_DATA]
    expected = predictions(nlp, texts)
    assert any(overlapping_pairs(doc) for doc in nlp.pipe(texts))
    nlp.to_disk(tmp_path / "pipeline")
    shutil.rmtree(model_dir)
    reloaded = predictions_in_subprocess(tmp_path / "pipeline", texts)
    for exp, got in zip(expected, reloaded):
        assert [tuple(s) for s in got["spans"]] == exp["spans"]
        assert got["scores"] == exp["scores"]

"""binder_ner frees the transformer output once it has read it
(`free_transformer_output`), unless a later component listens to the same
transformer; a doc whose output is gone is refused, not read as zeros."""
import numpy
import pytest
from spacy_transformers.data_classes import TransformerData

from util import LONG_DOC_SENTENCE, TRANSFORMER_LISTENER, span_tuples, transformer_pipeline

TEXT = "Anna Berg joined the University of Paris . " + LONG_DOC_SENTENCE


@pytest.fixture(scope="module")
def nlp(tiny_bert_path):
    nlp = transformer_pipeline(tiny_bert_path, segments=True, max_segment_length=16)
    nlp.get_pipe("binder_ner").add_label("PER", description="a person")
    nlp.get_pipe("binder_ner").add_label("ORG", description="an organization")
    nlp.initialize()
    return nlp


def _kept(nlp, free: bool):
    binder = nlp.get_pipe("binder_ner")
    before = binder.cfg["free_transformer_output"]
    binder._set_settings(free_transformer_output=free)
    try:
        return nlp(TEXT)
    finally:
        binder._set_settings(free_transformer_output=before)


def test_transformer_output_is_freed_by_default(nlp):
    assert nlp.get_pipe("binder_ner").cfg["free_transformer_output"] is True
    doc = nlp(TEXT)
    assert doc._.trf_data is None
    for doc in nlp.pipe([TEXT, "Paris .", ""]):
        assert doc._.trf_data is None


def test_freeing_changes_no_prediction(nlp):
    freed, kept = _kept(nlp, True), _kept(nlp, False)
    assert isinstance(kept._.trf_data, TransformerData)
    # the activations of every segment: the memory the option gives back
    assert kept._.trf_data.model_output.last_hidden_state.size > 0
    assert span_tuples(freed) == span_tuples(kept)
    assert list(freed.spans["sc"].attrs["scores"]) == list(kept.spans["sc"].attrs["scores"])
    assert [(e.start, e.end, e.label_) for e in freed.ents] == [(e.start, e.end, e.label_) for e in kept.ents]


def test_a_freed_doc_is_refused_not_read_as_zeros(nlp):
    doc = nlp(TEXT)
    with pytest.raises(ValueError, match="no transformer output.*free_transformer_output = false"):
        nlp.get_pipe("binder_ner")(doc)


def test_kept_for_a_later_listener(tiny_bert_path):
    nlp = transformer_pipeline(tiny_bert_path, segments=True, max_segment_length=16)
    tagger_model = {"@architectures": "spacy.Tagger.v2", "tok2vec": TRANSFORMER_LISTENER}
    nlp.add_pipe("tagger", config={"model": tagger_model})
    nlp.get_pipe("binder_ner").add_label("PER", description="a person")
    nlp.get_pipe("tagger").add_label("NOUN")
    nlp.initialize()
    doc = nlp(TEXT)
    # the tagger, after binder_ner, read it: it must still be there
    assert isinstance(doc._.trf_data, TransformerData)
    assert all(token.tag_ == "NOUN" for token in doc)
    # with the tagger disabled, binder_ner is the last listener again
    with nlp.select_pipes(disable=["tagger"]):
        assert nlp(TEXT)._.trf_data is None


def test_a_long_doc_is_scored_in_groups_of_segments_with_the_same_result(nlp, monkeypatch):
    """Without autograd the head scores whole segments about
    `inference_tokens` at a time, so its working memory does not grow with
    the doc; the predictions are those of one pass over the whole doc."""
    from spacy_binder.torch_binder import BinderHead

    text = " ".join([TEXT] * 12)
    monkeypatch.setattr(BinderHead, "inference_tokens", 10**9)
    whole = nlp(text)
    calls = []
    score = BinderHead._score
    monkeypatch.setattr(BinderHead, "inference_tokens", 32)
    monkeypatch.setattr(BinderHead, "_score", lambda self, *args: calls.append(args[0].shape[0]) or score(self, *args))
    grouped = nlp(text)
    assert len(calls) > 3 and max(calls) < len(whole)  # groups, each far shorter than the doc
    assert span_tuples(grouped) == span_tuples(whole)
    numpy.testing.assert_allclose(list(grouped.spans["sc"].attrs["scores"]), list(whole.spans["sc"].attrs["scores"]), atol=1e-5)
    assert [(e.start, e.end, e.label_) for e in grouped.ents] == [(e.start, e.end, e.label_) for e in whole.ents]


def test_span_scores_without_candidate_vectors_are_the_same(nlp, monkeypatch):
    """A pipeline scores spans from per-token terms at inference
    (`factored_span_scores`); every candidate's score is the one its own
    vector gives (threshold 0: every candidate is in doc.spans)."""
    from spacy_binder import torch_binder

    binder = nlp.get_pipe("binder_ner")
    monkeypatch.setitem(binder.cfg, "threshold", 0.0)
    text = " ".join([TEXT] * 3)
    calls = []
    factored = torch_binder.factored_span_scores
    monkeypatch.setattr(torch_binder, "factored_span_scores", lambda *args: calls.append(1) or factored(*args))
    fast = nlp(text)
    assert calls
    monkeypatch.setattr(torch_binder.BinderHead, "factored_scores", False)
    direct = nlp(text)
    assert len(direct.spans["sc"]) > 100
    assert span_tuples(fast) == span_tuples(direct)
    numpy.testing.assert_allclose(list(fast.spans["sc"].attrs["scores"]), list(direct.spans["sc"].attrs["scores"]), atol=1e-5)


def test_the_output_is_freed_before_the_head_runs(nlp, monkeypatch):
    """The head reads only the pooled token vectors: the transformer output
    is gone before it runs, so the two never take memory at once."""
    from spacy_binder.torch_binder import BinderHead

    binder = nlp.get_pipe("binder_ner")
    doc = nlp.get_pipe("transformer")(nlp.make_doc(TEXT))
    seen = []
    score = BinderHead._score
    monkeypatch.setattr(BinderHead, "_score", lambda self, *args: seen.append(doc._.trf_data is None) or score(self, *args))
    binder.predict([doc])
    assert seen and all(seen)
    seen.clear()
    doc = nlp.get_pipe("transformer")(nlp.make_doc(TEXT))
    binder._set_settings(free_transformer_output=False)
    try:
        binder.predict([doc])
    finally:
        binder._set_settings(free_transformer_output=True)
    assert seen and not any(seen)


def test_the_setting_ends_with_predict_even_when_it_fails(nlp, monkeypatch):
    """The model frees the output only inside binder_ner's predict: after a
    predict that raised, a direct model.predict keeps doc._.trf_data."""
    from spacy_binder.model import FREE_TRANSFORMER_OUTPUT
    from spacy_binder.torch_binder import BinderHead

    binder = nlp.get_pipe("binder_ner")
    doc = nlp.get_pipe("transformer")(nlp.make_doc(TEXT))

    def failing(self, *args):
        assert FREE_TRANSFORMER_OUTPUT.get() is True
        raise RuntimeError("head failed")

    with monkeypatch.context() as patch:
        patch.setattr(BinderHead, "_score", failing)
        with pytest.raises(RuntimeError, match="head failed"):
            binder.predict([doc])
    assert FREE_TRANSFORMER_OUTPUT.get() is False
    doc = nlp.get_pipe("transformer")(nlp.make_doc(TEXT))
    binder.model.predict([doc])
    assert isinstance(doc._.trf_data, TransformerData)

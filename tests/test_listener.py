"""`spacy-binder.TransformerListener.v1`: spacy-transformers' listener whose
inference pools in chunks of tokens gives the same token vectors, for any
pooling and any chunk size, and trains as spacy-transformers' does."""
import numpy
import pytest
import spacy
from thinc.api import reduce_first, reduce_last, reduce_max, reduce_mean

from spacy_binder.listener import build_transformer_listener
from util import DESCRIPTIONS, LONG_DOC_SENTENCE, NESTED_DATA, TRANSFORMER_LISTENER, make_examples, predictions
from util import transformer_pipeline, update

TEXTS = [" ".join(f"{text} ." for text, _ in NESTED_DATA * 8), "Anna Berg .", "", "   ", LONG_DOC_SENTENCE]


@pytest.fixture(scope="module")
def docs_with_output(tiny_bert_path):
    """Docs with doc._.trf_data, packed (length buckets) and padded."""
    docs = {}
    for name, pieces in (("padded", None), ("packed", 32)):
        nlp = transformer_pipeline(tiny_bert_path, segments=True, max_segment_length=16, max_batch_pieces=pieces)
        nlp.initialize(lambda: make_examples(nlp, NESTED_DATA))
        docs[name] = list(nlp.get_pipe("transformer").pipe(nlp.make_doc(text) for text in TEXTS))
    return docs


@pytest.mark.parametrize("layout", ["padded", "packed"])
@pytest.mark.parametrize("pooling", [reduce_mean, reduce_first, reduce_last, reduce_max])
@pytest.mark.parametrize("chunk_tokens", [1, 7, 4096])
def test_chunked_pooling_gives_spacy_transformers_vectors(docs_with_output, layout, pooling, chunk_tokens):
    docs = docs_with_output[layout]
    upstream = spacy.registry.architectures.get("spacy-transformers.TransformerListener.v1")(pooling())
    chunked = build_transformer_listener(pooling(), chunk_tokens=chunk_tokens)
    for listener in (upstream, chunked):  # as the transformer component sets it
        listener.get_ref("listener").set_dim("nO", docs[0]._.trf_data.width)
    expected, got = upstream.predict(docs), chunked.predict(docs)
    assert [vectors.shape for vectors in got] == [vectors.shape for vectors in expected]
    assert sum(len(vectors) for vectors in got) == sum(len(doc) for doc in docs) > 100
    for have, want in zip(got, expected):
        numpy.testing.assert_array_equal(have, want)  # the same arithmetic, row by row


CHUNKED_LISTENER = {**TRANSFORMER_LISTENER, "@architectures": "spacy-binder.TransformerListener.v1", "chunk_tokens": 3}


def test_a_pipeline_trains_through_it_and_predicts_as_with_spacy_transformers_listener(tiny_bert_path, tmp_path):
    nlp = transformer_pipeline(tiny_bert_path, segments=True, max_segment_length=16, max_batch_pieces=64, listener=CHUNKED_LISTENER)
    assert nlp.get_pipe("transformer").listening_components == ["binder_ner"]
    examples = make_examples(nlp, NESTED_DATA)
    nlp.config["initialize"]["components"]["binder_ner"] = {"descriptions": DESCRIPTIONS}
    optimizer = nlp.initialize(lambda: examples)
    optimizer.learn_rate = 0.003
    hf_model = nlp.get_pipe("transformer").model.layers[0].shims[0]._model
    before = {name: param.detach().clone() for name, param in hf_model.named_parameters()}
    for _ in range(40):
        update(nlp, examples, optimizer)
    # the transformer learned through the listener's gradients
    assert sum(not bool((before[name] == param).all()) for name, param in hf_model.named_parameters()) > len(before) // 2
    nlp.to_disk(tmp_path / "chunked")
    upstream = spacy.load(tmp_path / "chunked", config={"components.binder_ner.model.text_encoder": TRANSFORMER_LISTENER})
    upstream_config = upstream.config["components"]["binder_ner"]["model"]["text_encoder"]
    assert upstream_config["@architectures"] == "spacy-transformers.TransformerListener.v1"
    texts = TEXTS + [text for text, _ in NESTED_DATA]
    got, expected = predictions(spacy.load(tmp_path / "chunked"), texts), predictions(upstream, texts)
    assert any(prediction["spans"] for prediction in got)
    for have, want in zip(got, expected):
        assert have["spans"] == want["spans"]
        numpy.testing.assert_allclose(have["scores"], want["scores"], atol=1e-6)


def test_chunk_tokens_must_be_positive():
    with pytest.raises(ValueError, match="chunk_tokens must be >= 1"):
        build_transformer_listener(reduce_mean(), chunk_tokens=0)

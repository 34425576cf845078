"""A shared description encoder (`SharedDescriptionEncoder.v1`): the type
vectors come from the transformer component binder_ner listens to, which the
descriptions train too; the pipeline holds one transformer."""
import numpy
import pytest
import spacy
import torch

from spacy_binder.model import clear_type_vectors
from util import DESCRIPTIONS, NESTED_DATA, TRANSFORMER_LISTENER, cnn_pipeline, make_examples, predictions
from util import small_binder_config
from util import predictions_in_subprocess, transformer_pipeline, update

TEXTS = [text for text, _ in NESTED_DATA] + ["Anna Berg met the University of Geneva in Paris ."]


def shared_pipeline(tiny_bert_path, shared_descriptions=True, **settings):
    return transformer_pipeline(
        tiny_bert_path, segments=True, max_segment_length=16, max_batch_pieces=64, shared_descriptions=shared_descriptions, **settings
    )


def initialized(nlp):
    examples = make_examples(nlp, NESTED_DATA)
    nlp.config["initialize"]["components"]["binder_ner"] = {"descriptions": DESCRIPTIONS}
    optimizer = nlp.initialize(lambda: examples)
    optimizer.learn_rate = 0.003
    return nlp, examples, optimizer


def hf_model(nlp):
    return nlp.get_pipe("transformer").model.layers[0].shims[0]._model


def cls_vectors(nlp, texts):
    """[CLS] outputs of the transformer component's own model."""
    tokenizer = nlp.get_pipe("transformer").model.tokenizer
    model = hf_model(nlp).eval()
    with torch.no_grad():
        return model(**tokenizer(texts, return_tensors="pt", padding=True)).last_hidden_state[:, 0, :].numpy()


def test_type_vectors_are_the_transformer_components_cls_outputs(tiny_bert_path):
    nlp, _, _ = initialized(shared_pipeline(tiny_bert_path))
    binder = nlp.get_pipe("binder_ner")
    type_encoder = binder.model.get_ref("type_encoder")
    assert type_encoder.attrs["transformer"] is nlp.get_pipe("transformer").model
    descriptions = [DESCRIPTIONS[label] for label in binder.labels]
    numpy.testing.assert_allclose(type_encoder.predict(descriptions), cls_vectors(nlp, descriptions), atol=1e-5)
    # no second transformer: binder_ner's model has no shim of its own but the head's
    assert [node.name for node in binder.model.walk() if node.shims] == ["pytorch"]


def test_descriptions_train_the_shared_transformer(tiny_bert_path):
    """With the text encoder's gradient off (grad_factor 0), only the
    descriptions can move the transformer's weights."""
    listener = {**TRANSFORMER_LISTENER, "grad_factor": 0.0}
    nlp, examples, optimizer = initialized(shared_pipeline(tiny_bert_path, listener=listener))
    before = {name: param.detach().clone() for name, param in hf_model(nlp).named_parameters()}
    for _ in range(3):
        update(nlp, examples, optimizer)
    changed = [name for name, param in hf_model(nlp).named_parameters() if not bool((before[name] == param).all())]
    assert len(changed) > len(before) // 2
    # and the cached type vectors follow the new weights
    binder = nlp.get_pipe("binder_ner")
    descriptions = [DESCRIPTIONS[label] for label in binder.labels]
    numpy.testing.assert_allclose(binder.model.get_ref("type_encoder").predict(descriptions), cls_vectors(nlp, descriptions), atol=1e-5)


def test_gradient_every_reads_and_backpropagates_the_descriptions_every_nth_step(tiny_bert_path):
    nlp, _, _ = initialized(shared_pipeline(tiny_bert_path, shared_descriptions={"gradient_every": 3}))
    binder = nlp.get_pipe("binder_ner")
    type_encoder = binder.model.get_ref("type_encoder")
    descriptions = [DESCRIPTIONS[label] for label in binder.labels]
    params = list(hf_model(nlp).parameters())
    moved = [param for name, param in hf_model(nlp).named_parameters() if "encoder.layer" in name][-1]
    got_gradient, read = [], []
    for step in range(6):
        for param in params:
            param.grad = None
        with torch.no_grad():  # move the weights, as an optimizer step would
            moved.add_(0.1)
        vectors, backprop = type_encoder(descriptions, is_train=True)
        backprop(numpy.ones_like(vectors))
        got_gradient.append(any(param.grad is not None and bool(param.grad.abs().sum() > 0) for param in params))
        if got_gradient[-1]:
            read = vectors.copy()
        else:  # the vectors of the last step that read them, though the weights moved
            numpy.testing.assert_array_equal(vectors, read)
            assert not numpy.allclose(vectors, type_encoder.predict(descriptions), atol=1e-4)
    assert got_gradient == [True, False, False, True, False, False]
    # other descriptions than those read last are read now, as at inference
    other = descriptions[::-1] + ["an extra type"]
    type_encoder(descriptions, is_train=True)  # step 7 reads
    vectors, _ = type_encoder(other, is_train=True)  # step 8
    numpy.testing.assert_array_equal(vectors, type_encoder.predict(other))
    # steps 9 and 10 (10 reads); then weights are loaded into the pipeline:
    # step 11 reads the descriptions again instead of reusing step 10's
    type_encoder(descriptions, is_train=True)
    stale, _ = type_encoder(descriptions, is_train=True)
    with torch.no_grad():
        moved.add_(0.1)
    binder.from_bytes(binder.to_bytes())
    vectors, _ = type_encoder(descriptions, is_train=True)
    numpy.testing.assert_array_equal(vectors, type_encoder.predict(descriptions))
    assert not numpy.allclose(vectors, stale, atol=1e-4)
    with pytest.raises(ValueError, match="gradient_every must be >= 1"):
        shared_pipeline(tiny_bert_path, shared_descriptions={"gradient_every": 0})


@pytest.fixture(scope="module")
def trained_folder(tiny_bert_path, tmp_path_factory):
    nlp, examples, optimizer = initialized(shared_pipeline(tiny_bert_path))
    for _ in range(40):
        update(nlp, examples, optimizer)
    folder = tmp_path_factory.mktemp("shared") / "pipeline"
    nlp.to_disk(folder)
    return folder


def test_saved_once_and_reloaded_the_same(trained_folder, tiny_bert_path):
    nlp = spacy.load(trained_folder)
    expected = predictions(nlp, TEXTS)
    assert any(prediction["spans"] for prediction in expected)
    got = predictions_in_subprocess(trained_folder, TEXTS)
    for have, want in zip(got, expected):
        assert list(map(tuple, have["spans"])) == want["spans"]
        numpy.testing.assert_allclose(have["scores"], want["scores"], atol=1e-5)
    # binder_ner's file holds the head only: far smaller than the transformer's
    binder_bytes = (trained_folder / "binder_ner" / "model").stat().st_size
    transformer_bytes = (trained_folder / "transformer" / "model").stat().st_size
    assert binder_bytes < transformer_bytes / 5
    separate, _, _ = initialized(transformer_pipeline(tiny_bert_path, segments=True, max_segment_length=16))
    assert len(separate.get_pipe("binder_ner").to_bytes()) > transformer_bytes / 2


def test_add_label_reads_the_new_description_with_the_transformer(trained_folder):
    nlp = spacy.load(trained_folder)
    expected = predictions(nlp, TEXTS)
    binder = nlp.get_pipe("binder_ner")
    binder.add_label("CITY", description="a city or a town")
    binder.threshold = 0.0
    binder.untrained_threshold = 0.0
    assert any(span[2] == "CITY" for prediction in predictions(nlp, TEXTS) for span in prediction["spans"])
    binder.threshold = binder.untrained_threshold = 0.5
    got = predictions(nlp, TEXTS)
    for have, want in zip(got, expected):  # the trained types' predictions are kept
        old = [(span, score) for span, score in zip(map(tuple, have["spans"]), have["scores"]) if span[2] != "CITY"]
        assert old == list(zip(map(tuple, want["spans"]), want["scores"]))
    clear_type_vectors(binder.model)


def test_without_a_transformer_component_the_error_says_so():
    nlp = cnn_pipeline(model={
        "@architectures": "spacy-binder.BinderModel.v1",
        "text_encoder": {"@architectures": "spacy.HashEmbedCNN.v2", "width": 32, "depth": 1, "embed_size": 100,
                         "window_size": 1, "maxout_pieces": 2, "subword_features": True, "pretrained_vectors": None},
        "type_encoder": {"@architectures": "spacy-binder.SharedDescriptionEncoder.v1"},
    })
    with pytest.raises(ValueError, match="SharedDescriptionEncoder.v1 reads the descriptions with the transformer component"):
        nlp.initialize(lambda: make_examples(nlp, NESTED_DATA))


def test_an_inline_transformer_text_encoder_reads_the_descriptions(tiny_bert_path):
    """With a transformer inside the text encoder (Tok2VecTransformer, no
    transformer component), that transformer reads the descriptions."""
    nlp = spacy.blank("en")
    nlp.add_pipe("binder_ner", config=small_binder_config(
        {"@architectures": "spacy-transformers.Tok2VecTransformer.v3", "name": tiny_bert_path,
         "get_spans": {"@span_getters": "spacy-binder.segment_spans.v1", "max_length": 16},
         "tokenizer_config": {"use_fast": True}, "pooling": {"@layers": "reduce_mean.v1"}},
        {"@architectures": "spacy-binder.SharedDescriptionEncoder.v1"},
    ))
    nlp.initialize(lambda: make_examples(nlp, NESTED_DATA))
    binder = nlp.get_pipe("binder_ner")
    inline = binder.model.get_ref("type_encoder").attrs["transformer"]
    assert any(node is inline for node in binder.model.get_ref("text_encoder").walk())
    tokenizer = inline.tokenizer
    model = inline.layers[0].shims[0]._model.eval()
    with torch.no_grad():
        expected = model(**tokenizer(["a person"], return_tensors="pt")).last_hidden_state[:, 0, :].numpy()
    numpy.testing.assert_allclose(binder.model.get_ref("type_encoder").predict(["a person"]), expected, atol=1e-5)
    assert len(nlp("Anna Berg visited Paris .")) == 5  # and it predicts

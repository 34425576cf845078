"""Transformer inference in length buckets with a packed output
(`LengthBucketedTransformer.v1`): the activations of one padded call at every
real word piece, in calls of at most `max_batch_pieces` pieces, read the same
by any listener, and the same predictions; training is spacy-transformers'."""
import pytest
import spacy
import torch
from spacy_transformers.layers.trfs2arrays import trfs2arrays
from thinc.api import reduce_first, reduce_last, reduce_mean
from transformers import AutoModel

from spacy_binder.length_buckets import InPlaceGELU, PackedForward, use_in_place_gelu
from util import DESCRIPTIONS, NESTED_DATA, make_examples, train, transformer_pipeline

LONG_TEXT = " ".join(f"{text} ." for text, _ in NESTED_DATA * 30) + " the Bank of Rome hired Anna Berg in Oslo and Paris ."
BUCKETED = {
    "components.transformer.model.@architectures": "spacy-binder.LengthBucketedTransformer.v1",
    "components.transformer.model.max_batch_pieces": 24,
}


def _padded_batch(lengths, vocab_size):
    width = max(lengths)
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(1000, vocab_size, (len(lengths), width), generator=generator)
    attention_mask = torch.zeros((len(lengths), width), dtype=torch.long)
    for row, length in enumerate(lengths):
        attention_mask[row, :length] = 1
        input_ids[row, length:] = 0
    return {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": torch.zeros_like(input_ids)}


def test_packed_buckets_give_the_padded_activations(tiny_bert_path):
    model = AutoModel.from_pretrained(tiny_bert_path).eval()
    lengths = [3, 17, 5, 17, 1, 9, 12, 2]
    batch = _padded_batch(lengths, model.config.vocab_size)
    with torch.no_grad():
        expected = model(**batch)
    calls = []

    def counting_forward(**kwargs):
        calls.append(tuple(kwargs["input_ids"].shape))
        return type(model).forward(model, **kwargs)

    with torch.no_grad():
        got = PackedForward(counting_forward, max_batch_pieces=20)(**batch)
    # the real positions only, row after row
    real = batch["attention_mask"].bool()
    assert got.last_hidden_state.shape == (1, sum(lengths), model.config.hidden_size)
    torch.testing.assert_close(got.last_hidden_state[0], expected.last_hidden_state[real], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(got.pooler_output, expected.pooler_output, atol=1e-5, rtol=1e-4)
    # every row once, each call within the budget (a row longer than it goes alone)
    assert sum(rows for rows, _ in calls) == len(lengths)
    assert all(rows * width <= 20 or rows == 1 for rows, width in calls)
    assert len(calls) > 1 and max(width for _, width in calls) == max(lengths)
    # most of the padding is not computed: 8 x 17 = 136 positions in one call
    assert sum(rows * width for rows, width in calls) < 0.6 * len(lengths) * max(lengths)


def test_in_place_gelu_overwrites_only_without_gradient(tiny_bert_path):
    model = AutoModel.from_pretrained(tiny_bert_path).eval()
    batch = _padded_batch([5, 9, 2], model.config.vocab_size)
    with torch.no_grad():
        expected = model(**batch).last_hidden_state
    assert use_in_place_gelu(model) == model.config.num_hidden_layers
    assert use_in_place_gelu(model) == model.config.num_hidden_layers  # idempotent: no double wrap
    assert not any(isinstance(m.activation, InPlaceGELU) for m in model.modules() if isinstance(m, InPlaceGELU))
    with torch.no_grad():
        torch.testing.assert_close(model(**batch).last_hidden_state, expected, rtol=0, atol=0)
    gelu = model.encoder.layer[0].intermediate.intermediate_act_fn
    hidden = torch.randn(4, 7)
    with torch.no_grad():
        want = torch.nn.functional.gelu(hidden)
        out = gelu(hidden)
    assert out.data_ptr() == hidden.data_ptr() and torch.equal(out, want)
    # with autograd the input is kept (GELU's backward reads it)
    leaf = torch.randn(4, 7, requires_grad=True)
    gelu(leaf).sum().backward()
    reference = leaf.detach().clone().requires_grad_(True)
    torch.nn.functional.gelu(reference).sum().backward()
    assert torch.equal(leaf.grad, reference.grad)


def test_in_place_gelu_leaves_other_activations(tiny_bert_path):
    from transformers import BertConfig, BertModel

    config = BertConfig.from_pretrained(tiny_bert_path, hidden_act="gelu_new")
    assert use_in_place_gelu(BertModel(config)) == 0
    assert use_in_place_gelu(BertModel(BertConfig.from_pretrained(tiny_bert_path, hidden_act="relu"))) == 0


@pytest.fixture(scope="module")
def trained_folder(tiny_bert_path, tmp_path_factory):
    nlp = transformer_pipeline(tiny_bert_path, segments=True, max_segment_length=16)
    train(nlp, make_examples(nlp, [(text + " .", spans) for text, spans in NESTED_DATA]), 40, descriptions=DESCRIPTIONS)
    folder = tmp_path_factory.mktemp("bucketed") / "pipeline"
    nlp.to_disk(folder)
    return folder


def _outputs(doc):
    spans = doc.spans["sc"]
    return [(s.start, s.end, s.label_) for s in spans], list(spans.attrs["scores"]), [(e.start, e.end, e.label_) for e in doc.ents]


def test_bucketed_pipeline_predicts_the_same(trained_folder):
    plain = spacy.load(trained_folder)
    bucketed = spacy.load(trained_folder, config=BUCKETED)
    hf_model = bucketed.get_pipe("transformer").model.layers[0].shims[0]._model
    calls = []
    original = type(hf_model).forward

    def recording_forward(self, **kwargs):
        if self is hf_model:  # not the description encoder's
            calls.append(tuple(kwargs["input_ids"].shape))
        return original(self, **kwargs)

    texts = [LONG_TEXT, "", "Anna Berg .", NESTED_DATA[0][0] + " . " + NESTED_DATA[1][0] + " ."]
    expected = [_outputs(doc) for doc in plain.pipe(texts, batch_size=4)]
    type(hf_model).forward = recording_forward
    try:
        got = [_outputs(doc) for doc in bucketed.pipe(texts, batch_size=4)]
    finally:
        type(hf_model).forward = original
    assert len(calls) > 1 and all(rows * width <= 24 or rows == 1 for rows, width in calls)  # buckets were used
    assert "forward" not in vars(hf_model)  # the wrapper is gone after the call
    assert use_in_place_gelu(hf_model) == hf_model.config.num_hidden_layers  # and the GELUs ran in place
    assert sum(isinstance(m, InPlaceGELU) for m in hf_model.modules()) == hf_model.config.num_hidden_layers
    assert len(expected[0][0]) > 0
    for (spans, scores, ents), (want_spans, want_scores, want_ents) in zip(got, expected):
        assert spans == want_spans and ents == want_ents
        assert scores == pytest.approx(want_scores, abs=1e-4)


@pytest.mark.parametrize("pooling", [reduce_mean, reduce_first, reduce_last])
def test_any_listener_reads_the_packed_output_as_the_padded_one(trained_folder, pooling):
    keep = {"components.binder_ner.free_transformer_output": False}
    plain = spacy.load(trained_folder, config=keep)
    bucketed = spacy.load(trained_folder, config={**BUCKETED, **keep})
    docs = [plain(LONG_TEXT), plain("Anna Berg .")]
    packed_docs = [bucketed(LONG_TEXT), bucketed("Anna Berg .")]
    packed = packed_docs[0]._.trf_data
    padded = docs[0]._.trf_data.model_output.last_hidden_state
    # (1, the real word pieces, width): fewer rows than the padded form holds
    assert packed.model_output.last_hidden_state.shape[:2] == (1, int(packed.wordpieces.attention_mask.sum()))
    assert packed.model_output.last_hidden_state.shape[1] < padded.shape[0] * padded.shape[1]
    to_vectors = trfs2arrays(pooling(), 1.0)
    expected = to_vectors.predict([doc._.trf_data for doc in docs])
    got = to_vectors.predict([doc._.trf_data for doc in packed_docs])
    for want, have in zip(expected, got):
        assert have.shape == want.shape
        assert abs(have - want).max() < 1e-4


def test_training_runs_spacy_transformers_forward(trained_folder):
    nlp = spacy.load(trained_folder, config=BUCKETED)
    model = nlp.get_pipe("transformer").model
    docs = [nlp.make_doc(LONG_TEXT), nlp.make_doc("Anna Berg .")]
    batch, _ = model(docs, is_train=True)  # padded, with a backprop
    assert batch.model_output.last_hidden_state.shape[:2] == batch.wordpieces.input_ids.shape
    assert batch.model_output.last_hidden_state.requires_grad
    predicted = model.predict(docs)
    assert predicted.model_output.last_hidden_state.shape[:2] == (1, int(batch.wordpieces.attention_mask.sum()))


def test_heap_growth_is_checked_between_buckets_with_the_output_counted(tiny_bert_path, monkeypatch):
    """Before each bucket after the first and once at the end, PackedForward
    asks whether the process has grown by more than the limit beyond the
    output written so far (the pages it keeps)."""
    from spacy_binder import length_buckets

    model = AutoModel.from_pretrained(tiny_bert_path).eval()
    lengths = [3, 17, 5, 17, 1, 9, 12, 2]
    kept = []

    class RecordingLimit:
        def __init__(self, limit_bytes):
            assert limit_bytes == length_buckets.HEAP_GROWTH_LIMIT

        def check(self, kept_bytes=0):
            kept.append(kept_bytes)
            return False

    monkeypatch.setattr(length_buckets, "HeapGrowthLimit", RecordingLimit)
    calls = []

    def counting_forward(**kwargs):
        calls.append(int(kwargs["attention_mask"].sum()))
        return type(model).forward(model, **kwargs)

    with torch.no_grad():
        PackedForward(counting_forward, max_batch_pieces=20)(**_padded_batch(lengths, model.config.vocab_size))
    row_bytes = model.config.hidden_size * 4  # float32
    # one check per bucket boundary and one at the end, each counting the real pieces written
    written = [sum(calls[: i + 1]) * row_bytes for i in range(len(calls))]
    assert len(calls) > 2 and kept == written
    assert kept[-1] == sum(lengths) * row_bytes

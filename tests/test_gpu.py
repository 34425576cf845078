"""binder_ner on a GPU: it learns there, and a pipeline moves between the
devices without changing its predictions. Skipped where no CUDA GPU is
visible (CI has none); `spacy train --gpu-id 0` is covered in test_train_cli.py."""
import numpy
import pytest
import spacy
import torch
from thinc.api import CupyOps, get_current_ops

from util import DESCRIPTIONS, NESTED_DATA, make_examples, predictions, predictions_in_subprocess, requires_gpu
from util import train, transformer_pipeline

pytestmark = requires_gpu

TEXTS = [text for text, _ in NESTED_DATA]
# Same weights, different arithmetic (cuBLAS vs CPU BLAS): scores agree to
# float32 round-off, amplified a little by 2 transformer layers and the head.
SCORE_ATOL = 1e-4


@pytest.fixture
def on_gpu():
    spacy.require_gpu(0)
    try:
        yield
    finally:
        spacy.require_cpu()


def assert_close(expected, got):
    for exp, out in zip(expected, got):
        assert [tuple(s) for s in out["spans"]] == [tuple(s) for s in exp["spans"]]
        numpy.testing.assert_allclose(out["scores"], exp["scores"], atol=SCORE_ATOL)


def torch_shims(model):
    return [shim for node in model.walk() for shim in node.shims if hasattr(shim, "_model")]


def test_trains_on_gpu_and_predicts_the_same_on_cpu(on_gpu, tiny_bert_path, tmp_path):
    nlp = transformer_pipeline(tiny_bert_path)
    examples = make_examples(nlp, NESTED_DATA)
    train(nlp, examples, 60, descriptions=DESCRIPTIONS)
    binder = nlp.get_pipe("binder_ner")
    # it really ran on the GPU: thinc's ops and every torch weight
    assert isinstance(get_current_ops(), CupyOps) and isinstance(binder.model.ops, CupyOps)
    devices = {p.device.type for shim in torch_shims(binder.model) for p in shim._model.parameters()}
    assert devices == {"cuda"}
    assert nlp.evaluate(examples)["spans_sc_f"] == 1.0
    expected = predictions(nlp, TEXTS)
    nlp.to_disk(tmp_path / "pipeline")
    assert_close(expected, predictions_in_subprocess(tmp_path / "pipeline", TEXTS, "cpu"))


def test_cpu_trained_pipeline_predicts_the_same_on_gpu(tiny_bert_path, tmp_path):
    nlp = transformer_pipeline(tiny_bert_path)
    assert not isinstance(get_current_ops(), CupyOps)
    train(nlp, make_examples(nlp, NESTED_DATA), 60, descriptions=DESCRIPTIONS)
    expected = predictions(nlp, TEXTS)
    assert any(item["spans"] for item in expected)
    nlp.to_disk(tmp_path / "pipeline")
    assert_close(expected, predictions_in_subprocess(tmp_path / "pipeline", TEXTS, "gpu"))


def test_gpu_memory_is_released_between_batches(on_gpu, tiny_bert_path):
    """Inference keeps no per-batch tensors alive (no growing cache)."""
    nlp = transformer_pipeline(tiny_bert_path)
    train(nlp, make_examples(nlp, NESTED_DATA), 2, descriptions=DESCRIPTIONS)
    texts = [" ".join(TEXTS)] * 8
    list(nlp.pipe(texts))
    torch.cuda.synchronize()
    after_first = torch.cuda.memory_allocated()
    for _ in range(5):
        list(nlp.pipe(texts))
    torch.cuda.synchronize()
    assert torch.cuda.memory_allocated() <= after_first

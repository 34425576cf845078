"""A forward and backward pass with the offline pretrained MiniLM encoder."""
import numpy
import pytest
import torch

from util import DESCRIPTIONS, NESTED_DATA, make_examples, transformer_pipeline, update


def first_weight(module: torch.nn.Module) -> numpy.ndarray:
    return next(module.parameters()).detach().cpu().numpy().copy()


@pytest.mark.slow
def test_minilm_forward_backward_through_listener(minilm_path):
    nlp = transformer_pipeline(minilm_path, window=128, stride=96, max_span_width=8)
    examples = make_examples(nlp, NESTED_DATA)
    nlp.config["initialize"]["components"]["binder_ner"] = {"descriptions": DESCRIPTIONS}
    optimizer = nlp.initialize(lambda: examples)
    binder = nlp.get_pipe("binder_ner")
    description_model = binder.model.get_ref("type_encoder").get_ref("transformer").transformer
    text_model = nlp.get_pipe("transformer").model.transformer
    assert text_model.config.hidden_size == 384 and description_model is not text_model
    before = {
        "text": first_weight(text_model),
        "description": first_weight(description_model),
        "head": first_weight(binder.model.get_ref("head").shims[0]._model),
    }
    losses = update(nlp, examples, optimizer)
    assert numpy.isfinite(losses["binder_ner"]) and losses["binder_ner"] > 0
    after = {
        "text": first_weight(text_model),
        "description": first_weight(description_model),
        "head": first_weight(binder.model.get_ref("head").shims[0]._model),
    }
    for part in before:  # gradients reached every part
        assert not numpy.array_equal(before[part], after[part]), part
    doc = nlp("the University of Paris hired Anna Berg")
    assert len(doc.spans["sc"].attrs["scores"]) == len(doc.spans["sc"])

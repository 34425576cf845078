"""A frozen description encoder (`DescriptionEncoder.v1`, frozen = true)
keeps its checkpoint's weights in training, while the head and the text
transformer still learn; the default one learns too."""
import pytest

from util import DESCRIPTIONS, NESTED_DATA, make_examples, transformer_pipeline, update


def _torch_module(model):
    return next(node for node in model.walk() if node.shims).shims[0]._model


def _weights(torch_module):
    return {name: param.detach().clone() for name, param in torch_module.named_parameters()}


def _changed(before, after):
    return [name for name in before if not bool((before[name] == after[name]).all())]


@pytest.mark.parametrize("frozen", [True, False])
def test_frozen_description_encoder_keeps_its_weights(tiny_bert_path, frozen):
    nlp = transformer_pipeline(tiny_bert_path, segments=True, max_segment_length=16, frozen_descriptions=frozen)
    examples = make_examples(nlp, NESTED_DATA)
    nlp.config["initialize"]["components"]["binder_ner"] = {"descriptions": DESCRIPTIONS}
    optimizer = nlp.initialize(lambda: examples)
    optimizer.learn_rate = 0.003
    binder = nlp.get_pipe("binder_ner").model
    modules = {
        "types": _torch_module(binder.get_ref("type_encoder")),
        "text": _torch_module(nlp.get_pipe("transformer").model),
        "head": _torch_module(binder.get_ref("head")),
    }
    before = {key: _weights(module) for key, module in modules.items()}
    for _ in range(3):
        update(nlp, examples, optimizer)
    changed = {key: _changed(before[key], _weights(module)) for key, module in modules.items()}
    if frozen:
        assert changed["types"] == []
        # no gradient ever reached it: no backward pass, no optimizer step
        assert all(param.grad is None for param in modules["types"].parameters())
    else:
        assert len(changed["types"]) > len(before["types"]) // 2
    # the text transformer and the head learn either way
    assert changed["text"] and changed["head"]

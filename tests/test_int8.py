"""int8 CPU inference (`spacy_binder.int8`, `python -m spacy_binder quantize`)
on the trained tiny-transformer pipeline of conftest."""
import json
import platform
import subprocess

import numpy
import pytest
import spacy
import torch
from spacy.tokens import DocBin
from thinc.api import Config

from spacy_binder.int8 import CALLBACK, Int8Linear, Int8Transformer, SmoothedLinear, hf_shims, is_int8, quantize_pipeline
from spacy_binder.int8 import smooth_linear_layers
from util import LONG_DOC_SENTENCE, NESTED_DATA, install_as_package, make_examples, offline_env, predictions
from util import predictions_in_subprocess, run_python, transformer_pipeline

TEXTS = [text for text, _ in NESTED_DATA] + [LONG_DOC_SENTENCE, "", "Anna Berg met the University of Geneva in Paris ."]
# int8 weights keep each output channel's values to 1/254 of its largest, and
# activations are quantized per batch: a span probability moves by about 1e-3
# on this pipeline. 0.02 leaves room for other CPUs' kernels and still fails
# for a broken quantization (a wrong scale or a layer left random moves
# scores by tenths).
SCORE_TOLERANCE = 0.02
# the transformer kind of conftest's trained pipelines (the CNN has no transformer)
pytestmark = pytest.mark.parametrize("trained_pipeline", ["transformer"], indirect=True)


@pytest.fixture(scope="module")
def fp32_folder(trained_pipeline, tmp_path_factory):
    folder = tmp_path_factory.mktemp("int8") / "fp32"
    trained_pipeline.to_disk(folder)
    return folder


@pytest.fixture(scope="module")
def int8_nlp(fp32_folder):
    nlp = spacy.load(fp32_folder)
    assert quantize_pipeline(nlp) == 1  # the transformer component, which reads the descriptions too
    return nlp


def all_candidates(nlp, texts):
    """Every candidate span with its probability (threshold 0 keeps them all)."""
    binder = nlp.get_pipe("binder_ner")
    saved = binder.threshold
    binder.threshold = 0.0
    try:
        return predictions(nlp, texts)
    finally:
        binder.threshold = saved


def test_int8_replaces_every_linear_layer(int8_nlp):
    shims = hf_shims(int8_nlp)
    assert len(shims) == 1 and is_int8(int8_nlp)
    for shim in shims:
        layers = list(shim._model.modules())
        assert not any(isinstance(layer, torch.nn.Linear) for layer in layers)
        assert any(isinstance(layer, torch.ao.nn.quantized.dynamic.Linear) for layer in layers)
    assert int8_nlp.config["nlp"]["after_pipeline_creation"] == {"@callbacks": CALLBACK}


@pytest.mark.parametrize("calibrated", [False, True])
def test_a_description_encoder_of_its_own_is_quantized_too(trained_pipeline, tiny_bert_path, calibrated):
    nlp = transformer_pipeline(tiny_bert_path, segments=True, max_segment_length=16)
    nlp.initialize(lambda: make_examples(nlp, NESTED_DATA))
    assert quantize_pipeline(nlp, TEXTS if calibrated else None) == 2 and is_int8(nlp)
    # calibration reaches the description encoder too (it reads the type descriptions)
    smoothed = [any(isinstance(layer, SmoothedLinear) for layer in shim._model.modules()) for shim in hf_shims(nlp)]
    assert smoothed == [calibrated, calibrated]
    assert any(isinstance(node.shims[0]._model, Int8Transformer) for node in nlp.get_pipe("binder_ner").model.walk() if node.shims and hasattr(node.shims[0], "_hfmodel"))


def test_int8_agrees_with_fp32(fp32_folder, int8_nlp):
    fp32 = spacy.load(fp32_folder)
    expected, got = all_candidates(fp32, TEXTS), all_candidates(int8_nlp, TEXTS)
    n_candidates = 0
    for want, have in zip(expected, got):
        assert have["spans"] == want["spans"]  # the same candidates
        numpy.testing.assert_allclose(have["scores"], want["scores"], atol=SCORE_TOLERANCE)
        n_candidates += len(want["spans"])
    assert n_candidates > 100
    # at the default threshold: the same spans wherever fp32 is not within the tolerance of it
    threshold = fp32.get_pipe("binder_ner").threshold
    for want, have in zip(predictions(fp32, TEXTS), predictions(int8_nlp, TEXTS)):
        clear = {span for span, score in zip(map(tuple, want["spans"]), want["scores"]) if score > threshold + SCORE_TOLERANCE}
        assert clear <= set(map(tuple, have["spans"]))
    assert any(prediction["spans"] for prediction in predictions(int8_nlp, TEXTS))


def packed_for_onednn(layer) -> bool:
    """Whether a quantized Linear runs oneDNN's kernels: they are picked when
    the weights are packed, and only oneDNN's names itself in this error."""
    try:
        torch.ops.quantized.linear_dynamic(torch.ones(1, layer.in_features, dtype=torch.float64), layer._packed_params._packed_params, False)
    except RuntimeError as error:
        return "ONEDNN" in str(error)
    raise AssertionError("float64 inputs were accepted by an int8 Linear")


@pytest.mark.skipif(
    "onednn" not in torch.backends.quantized.supported_engines or platform.machine().lower() not in {"x86_64", "amd64"},
    reason="oneDNN packing is used on x86 builds of PyTorch only",
)
def test_int8_weights_are_packed_for_onednn_quantized_and_reloaded(fp32_folder, tmp_path):
    engine = torch.backends.quantized.engine
    assert engine != "onednn"  # PyTorch's default; else the last check proves nothing
    nlp = spacy.load(fp32_folder)
    quantize_pipeline(nlp)
    nlp.to_disk(tmp_path / "int8")
    for nlp in [nlp, spacy.load(tmp_path / "int8")]:
        layers = [layer for layer in hf_shims(nlp)[0]._model.modules() if isinstance(layer, Int8Linear)]
        assert layers and all(packed_for_onednn(layer) for layer in layers)
    # the process-wide setting is left as it was, for other models
    assert torch.backends.quantized.engine == engine


def test_quantize_command_saves_a_pipeline_that_reloads_the_same(fp32_folder, int8_nlp, tmp_path):
    result = run_python("-m", "spacy_binder", "quantize", str(fp32_folder), str(tmp_path / "int8"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "1 transformer(s) quantized" in result.stdout
    reloaded = predictions_in_subprocess(tmp_path / "int8", TEXTS)
    expected = predictions(int8_nlp, TEXTS)
    assert [[tuple(span) for span in p["spans"]] for p in reloaded] == [p["spans"] for p in expected]
    for have, want in zip(reloaded, expected):
        numpy.testing.assert_allclose(have["scores"], want["scores"], atol=1e-6)
    nlp = spacy.load(tmp_path / "int8")
    assert is_int8(nlp)
    # the saved transformer weights are int8: packed params, no fp32 matrix per Linear
    state = hf_shims(nlp)[0]._model.state_dict()
    assert any(key.endswith("_packed_params._packed_params") for key in state)


def test_fp32_weights_with_the_int8_setting_load_as_int8(fp32_folder, int8_nlp, tmp_path):
    """The config setting alone ([nlp.after_pipeline_creation], e.g. in a
    training config) gives an int8 pipeline when the fp32 weights load."""
    folder = tmp_path / "fp32_with_setting"
    spacy.load(fp32_folder).to_disk(folder)
    config = Config().from_disk(folder / "config.cfg", interpolate=False)
    config["nlp"]["after_pipeline_creation"] = {"@callbacks": CALLBACK}
    config.to_disk(folder / "config.cfg")
    nlp = spacy.load(folder)
    assert is_int8(nlp)
    assert predictions(nlp, TEXTS) == predictions(int8_nlp, TEXTS)  # the same quantization of the same weights


@pytest.fixture(scope="module")
def smoothed_nlp(fp32_folder):
    nlp = spacy.load(fp32_folder)
    assert quantize_pipeline(nlp, TEXTS, smoothing=0.7) == 1
    return nlp


def test_smoothing_leaves_the_fp32_function_unchanged(fp32_folder):
    """Scaling a Linear layer's input channels by 1/s and its weight columns
    by s is the same function in fp32; only the weights move."""
    model = hf_shims(spacy.load(fp32_folder))[0]._model.eval()  # no dropout
    inputs = {"input_ids": torch.tensor([[2, 15, 40, 7, 3]]), "attention_mask": torch.ones((1, 5), dtype=torch.long)}
    before = model(**inputs).last_hidden_state
    names = [name for name, layer in model.named_modules() if isinstance(layer, torch.nn.Linear)]
    query = names[0]
    weight_before = model.get_submodule(query).weight.detach().clone()
    generator = torch.Generator().manual_seed(0)
    maxima = {name: torch.rand(model.get_submodule(name).in_features, generator=generator) * 10 for name in names}
    assert smooth_linear_layers(model, maxima, alpha=0.7) == len(names)
    assert isinstance(model.get_submodule(query), SmoothedLinear)
    assert not torch.allclose(model.get_submodule(query).linear.weight, weight_before)
    torch.testing.assert_close(model(**inputs).last_hidden_state, before, atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match=r"alpha must be in \[0, 1\]"):
        smooth_linear_layers(model, {}, alpha=1.5)


def test_smoothed_int8_agrees_with_fp32(fp32_folder, smoothed_nlp):
    model = hf_shims(smoothed_nlp)[0]._model.model
    smoothed = [layer for layer in model.modules() if isinstance(layer, SmoothedLinear)]
    # every Linear the texts passed through: the 4 attention and 2 feed-forward layers per layer, and the pooler's
    assert len(smoothed) == 6 * model.config.num_hidden_layers + int(getattr(model, "pooler", None) is not None)
    assert all(isinstance(layer.linear, torch.ao.nn.quantized.dynamic.Linear) for layer in smoothed)
    fp32 = spacy.load(fp32_folder)
    for want, have in zip(all_candidates(fp32, TEXTS), all_candidates(smoothed_nlp, TEXTS)):
        assert have["spans"] == want["spans"]
        numpy.testing.assert_allclose(have["scores"], want["scores"], atol=SCORE_TOLERANCE)
    with pytest.raises(ValueError, match="No calibration texts"):
        quantize_pipeline(spacy.load(fp32_folder), [])
    with pytest.raises(ValueError, match="int8 already"):
        quantize_pipeline(smoothed_nlp, TEXTS)


def test_calibration_must_reach_every_transformer(fp32_folder):
    """A transformer the calibration texts never ran through (here a
    disabled second transformer component) cannot be smoothed: refused, not
    quantized plain behind the user's back."""
    nlp = spacy.load(fp32_folder)
    nlp.add_pipe("transformer", name="second_transformer", source=spacy.load(fp32_folder))
    nlp.disable_pipe("second_transformer")
    with pytest.raises(ValueError, match="1 transformer.*did not run on the calibration texts"):
        quantize_pipeline(nlp, TEXTS)


def test_quantize_command_with_calibration_reloads_the_same(fp32_folder, smoothed_nlp, tmp_path):
    calibration = tmp_path / "calibration.spacy"
    blank = spacy.blank("en")
    DocBin(docs=[blank(text) for text in TEXTS]).to_disk(calibration)
    result = run_python("-m", "spacy_binder", "quantize", str(fp32_folder), str(tmp_path / "int8"),
                        "--calibration", str(calibration), "--smoothing", "0.7")
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"smoothed on {len(TEXTS)} calibration texts" in " ".join(result.stdout.split())  # wasabi wraps lines
    reloaded = predictions_in_subprocess(tmp_path / "int8", TEXTS)
    expected = predictions(smoothed_nlp, TEXTS)  # the same calibration texts, so the same scales
    assert [[tuple(span) for span in p["spans"]] for p in reloaded] == [p["spans"] for p in expected]
    for have, want in zip(reloaded, expected):
        numpy.testing.assert_allclose(have["scores"], want["scores"], atol=1e-6)
    state = hf_shims(spacy.load(tmp_path / "int8"))[0]._model.state_dict()
    assert any(key.endswith(".input_scale") for key in state)


def test_int8_pipeline_refuses_training(int8_nlp):
    from spacy.training import Example

    doc = int8_nlp.make_doc("Anna Berg lives in Paris .")
    reference = int8_nlp.make_doc("Anna Berg lives in Paris .")
    reference.spans["sc"] = [reference.char_span(0, 9, label="PER")]
    with pytest.raises(ValueError, match="int8, which PyTorch can run but not train"):
        int8_nlp.update([Example(doc, reference)])


def test_quantize_needs_the_cpu_and_a_transformer(fp32_folder, monkeypatch):
    from util import cnn_pipeline

    with pytest.raises(ValueError, match="no initialized spacy-transformers model"):
        quantize_pipeline(cnn_pipeline())
    nlp = spacy.load(fp32_folder)
    monkeypatch.setattr("spacy_binder.int8.get_torch_default_device", lambda: torch.device("cuda", 0))
    with pytest.raises(ValueError, match="runs on the CPU only"):
        quantize_pipeline(nlp)
    with pytest.raises(ValueError, match="runs on the CPU only"):
        Int8Transformer.from_config(hf_shims(nlp)[0]._model.config)


PREDICT_ALL = """
import json, sys, spacy
nlp = spacy.load(sys.argv[1])
print(json.dumps([[[s.start, s.end, s.label_] for s in d.spans["sc"]] for d in nlp.pipe(json.loads(sys.argv[2]))]))
"""


@pytest.mark.slow
def test_int8_pipeline_packages_and_predicts_the_same(int8_nlp, tmp_path):
    python = install_as_package(int8_nlp, "binder_int8", tmp_path)
    out = subprocess.run([str(python), "-c", PREDICT_ALL, "en_binder_int8", json.dumps(TEXTS)],
                         capture_output=True, text=True, env=offline_env(), timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert [[tuple(span) for span in spans] for spans in got] == [p["spans"] for p in predictions(int8_nlp, TEXTS)]

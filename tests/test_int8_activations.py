"""The int8 Linear layer's activation range (`spacy_binder.int8.Int8Linear`)."""
import pytest
import torch

from spacy_binder.int8 import Int8Linear, full_range_activations, packing_engine, quantize_module


def test_full_range_activations_read_the_cpu_flags(tmp_path):
    with_vnni, without = tmp_path / "vnni", tmp_path / "avx2"
    with_vnni.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_vnni\n")
    without.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx_vnni\n")
    assert full_range_activations(str(with_vnni)) is True
    assert full_range_activations(str(without)) is False  # AVX-VNNI (256-bit) is not fbgemm's VNNI path
    assert full_range_activations(str(tmp_path / "missing")) is False


def test_8_bit_activations_halve_the_rounding_error(monkeypatch):
    """Where the CPU allows it, Int8Linear quantizes its inputs to 8 bits
    instead of PyTorch's 7: the same weights, closer to fp32."""
    torch.manual_seed(0)
    linear = torch.nn.Linear(64, 32)
    inputs = torch.randn(256, 64)
    expected = linear(inputs).detach()
    quantized = quantize_module(torch.nn.Sequential(linear))[0]
    assert isinstance(quantized, Int8Linear)
    errors = {}
    for full_range in (True, False):
        monkeypatch.setattr("spacy_binder.int8.full_range_activations", lambda: full_range)
        errors[full_range] = (quantized(inputs) - expected).abs().mean().item()
    assert errors[True] < 0.75 * errors[False]


def test_packing_engine_is_restored_after_an_error():
    """The engine is global to the process: packing switches it only inside."""
    engine = torch.backends.quantized.engine
    with pytest.raises(RuntimeError, match="inside"):
        with packing_engine():
            raise RuntimeError("inside")
    assert torch.backends.quantized.engine == engine

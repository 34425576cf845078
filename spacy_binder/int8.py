"""int8 CPU inference: PyTorch dynamic quantization of a pipeline's transformers.

`quantize_pipeline(nlp)` replaces the Hugging Face model inside every
spacy-transformers shim of the pipeline (the `transformer` component's and
binder_ner's description encoder) by an `Int8Transformer`: the same model with
its `torch.nn.Linear` layers quantized to int8 weights (one scale per output
channel) and activations quantized on the fly. It records the callback
`spacy-binder.int8_transformers.v1` as `[nlp.after_pipeline_creation]`, so that
`spacy.load` (and an installed `spacy package` wheel) builds int8 models before
the saved int8 weights are loaded into them.

int8 is for inference on the CPU: PyTorch's quantized kernels have no GPU and no
training path. Train in fp32, then quantize (`python -m spacy_binder quantize`).
"""
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List

import torch
from spacy.language import Language
from spacy.util import registry
from spacy_transformers.layers.hf_shim import HFShim
from thinc.api import get_torch_default_device
from transformers import AutoModel

CALLBACK = "spacy-binder.int8_transformers.v1"


@contextmanager
def _quiet_quantization() -> Iterator[None]:
    # torch.ao's dynamic quantization warns that it is deprecated in favour of
    # torchao, whose int8 kernels target GPUs; on the CPU it is the fast path.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.ao\.quantization is deprecated", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=r".*quantized tensor creation functions", category=UserWarning)
        yield


def quantize_module(module: torch.nn.Module) -> torch.nn.Module:
    """Quantize the module's Linear layers to int8, in place (per-channel
    weight scales: per-tensor scales lose more of MiniLM's accuracy)."""
    qconfig = torch.ao.quantization.per_channel_dynamic_qconfig
    with _quiet_quantization():
        torch.ao.quantization.quantize_dynamic(module.eval(), {torch.nn.Linear: qconfig}, dtype=torch.qint8, inplace=True)
    return module


def _check_cpu() -> None:
    device = get_torch_default_device()
    if device.type != "cpu":
        raise ValueError(
            f"This pipeline's transformers are int8 (PyTorch dynamic quantization), which runs on "
            f"the CPU only, but the current device is {device}. Load it without "
            "spacy.require_gpu() / --gpu-id, or use the fp32 pipeline on the GPU."
        )


class Int8Transformer(torch.nn.Module):
    """A Hugging Face model with int8 Linear layers, as spacy-transformers'
    shim uses it: called with the tokenizer's tensors, `config` and `device`
    of the model inside, saved and loaded with `state_dict`."""

    def __init__(self, model: torch.nn.Module, quantize: bool = True):
        super().__init__()
        self.model = quantize_module(model) if quantize else model

    @classmethod
    def from_config(cls, config: Any, **kwargs) -> "Int8Transformer":
        """An fp32 skeleton, as `AutoModel.from_config` builds it (the shim's
        `model_cls` hook); `load_state_dict` fills and quantizes it."""
        _check_cpu()
        return cls(AutoModel.from_config(config, **kwargs), quantize=False)

    @property
    def config(self) -> Any:
        return self.model.config

    @property
    def device(self) -> torch.device:
        return self.model.device

    def forward(self, *args, **kwargs):
        # thinc runs a prediction under no_grad; gradients mean training
        if torch.is_grad_enabled():
            raise ValueError(
                "This pipeline's transformers are int8, which PyTorch can run but not train. "
                "Train the fp32 pipeline (the one `python -m spacy_binder quantize` was given) "
                "and quantize it again."
            )
        return self.model(*args, **kwargs)

    def load_state_dict(self, state_dict: Dict[str, Any], strict: bool = True, assign: bool = False):
        """Load int8 weights saved from an Int8Transformer, or fp32 weights of
        the plain model (a pipeline saved before quantization), which are then
        quantized."""
        if not _is_int8_state(state_dict):
            if _is_quantized(self.model):  # fp32 weights need an fp32 skeleton
                self.model = AutoModel.from_config(self.model.config)
            result = self.model.load_state_dict(state_dict, strict=strict, assign=assign)
            quantize_module(self.model)
            return result
        if not _is_quantized(self.model):
            quantize_module(self.model)
        return super().load_state_dict(state_dict, strict=strict, assign=assign)


def _is_int8_state(state_dict: Dict[str, Any]) -> bool:
    # each quantized Linear saves its packed weights with their dtype
    return any(key.endswith("_packed_params.dtype") for key in state_dict)


def _is_quantized(module: torch.nn.Module) -> bool:
    return not any(isinstance(layer, torch.nn.Linear) for layer in module.modules())


def hf_shims(nlp: Language) -> List[HFShim]:
    """The spacy-transformers shims of every component's model, each once."""
    shims: Dict[int, HFShim] = {}
    for _, component in nlp.components:
        model = getattr(component, "model", None)
        if model is None or not hasattr(model, "walk"):
            continue
        for node in model.walk():
            for shim in node.shims:
                if isinstance(shim, HFShim):
                    shims[id(shim)] = shim
    return list(shims.values())


def _loaded_shims(nlp: Language) -> List[HFShim]:
    """The shims that hold a Hugging Face model (initialized or loaded)."""
    return [shim for shim in hf_shims(nlp) if shim._hfmodel.transformer is not None]


def folder_mb(path: Path) -> float:
    """Size of a saved pipeline folder in MB."""
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6


def is_int8(nlp: Language) -> bool:
    """Whether the pipeline's transformers are int8."""
    shims = _loaded_shims(nlp)
    return bool(shims) and all(isinstance(shim._model, Int8Transformer) for shim in shims)


def quantize_pipeline(nlp: Language) -> int:
    """Quantize the pipeline's transformers to int8 in place and record it in
    `nlp.config`, so that `nlp.to_disk` saves a pipeline that loads as int8.

    RETURNS (int): the number of transformers quantized.
    """
    _check_cpu()
    config = nlp.config
    callback = config["nlp"].get("after_pipeline_creation")
    if callback and callback.get("@callbacks") != CALLBACK:
        raise ValueError(
            f"The pipeline already has an [nlp.after_pipeline_creation] callback ({callback}); "
            f"an int8 pipeline needs {CALLBACK} there. Call your callback's work from elsewhere "
            "(e.g. after spacy.load) and quantize again."
        )
    shims = _loaded_shims(nlp)
    if not shims:
        raise ValueError(
            "The pipeline has no initialized spacy-transformers model to quantize (int8 "
            "quantization applies to transformer encoders; a CNN pipeline is already small)."
        )
    count = 0
    for shim in shims:
        shim.model_cls = Int8Transformer
        if isinstance(shim._model, Int8Transformer):
            continue
        int8 = Int8Transformer(shim._model)
        shim._model = int8
        shim._hfmodel.transformer = int8
        count += 1
    config["nlp"]["after_pipeline_creation"] = {"@callbacks": CALLBACK}
    nlp.config = config
    _clear_cached_type_vectors(nlp)
    return count


def _clear_cached_type_vectors(nlp: Language) -> None:
    from .component import BinderNER
    from .model import clear_type_vectors

    for _, component in nlp.components:
        if isinstance(component, BinderNER):
            clear_type_vectors(component.model)


@registry.callbacks(CALLBACK)
def make_int8_callback() -> Callable[[Language], Language]:
    """`[nlp.after_pipeline_creation]` of an int8 pipeline: its transformers
    are built as int8 models, so that the int8 weights saved with the
    pipeline load into them."""

    def use_int8_transformers(nlp: Language) -> Language:
        _check_cpu()
        # torch.load warns about its own storage API when it reads quantized
        # tensors (in spacy-transformers' loader), which no user can act on
        warnings.filterwarnings("ignore", message="TypedStorage is deprecated", category=UserWarning)
        for shim in hf_shims(nlp):
            shim.model_cls = Int8Transformer
        return nlp

    return use_int8_transformers

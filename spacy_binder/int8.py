"""int8 CPU inference: PyTorch dynamic quantization of a pipeline's transformers.

`quantize_pipeline(nlp)` replaces the Hugging Face model inside every
spacy-transformers shim of the pipeline (the `transformer` component's and
binder_ner's description encoder) by an `Int8Transformer`: the same model with
its `torch.nn.Linear` layers quantized to int8 weights (one scale per output
channel) and activations quantized on the fly, one scale per call, to 8 bits
where the CPU allows (`Int8Linear`). Given calibration texts, each Linear
first gets SmoothQuant's rescaling (Xiao et al.,
2023): a few input channels of a transformer carry values far larger than the
rest, and with one activation scale per call they coarsen every other channel;
dividing each input channel by s_j = max|X_j| ** alpha / max|W_j| ** (1 - alpha)
and multiplying the weights' column j by it moves that range into the weights,
which have a scale per output channel. It records the callback
`spacy-binder.int8_transformers.v1` as `[nlp.after_pipeline_creation]`, so that
`spacy.load` (and an installed `spacy package` wheel) builds int8 models before
the saved int8 weights are loaded into them.

int8 is for inference on the CPU: PyTorch's quantized kernels have no GPU and no
training path. Train in fp32, then quantize (`python -m spacy_binder quantize`).
"""
import platform
import warnings
from contextlib import contextmanager
from functools import lru_cache, partial
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional

import torch
from spacy.language import Language
from spacy.util import registry
from spacy_transformers.layers.hf_shim import HFShim
from thinc.api import get_torch_default_device
from transformers import AutoModel

CALLBACK = "spacy-binder.int8_transformers.v1"
# SmoothQuant's migration strength; picked on NCBI-disease and GENIA dev with
# 7-bit activations (0.7, 0.8 and 0.9 tried, see the results document); 0.5,
# the paper's default for its models, lost 6 F on NCBI-disease
DEFAULT_SMOOTHING = 0.7
MIN_INPUT_SCALE, MAX_INPUT_SCALE = 1e-2, 1e2


@contextmanager
def _quiet_quantization() -> Iterator[None]:
    # torch.ao's dynamic quantization warns that it is deprecated in favour of
    # torchao, whose int8 kernels target GPUs; on the CPU it is the fast path.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.ao\.quantization is deprecated", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=r".*quantized tensor creation functions", category=UserWarning)
        yield


def packing_engine_name() -> str:
    """The quantized engine int8 weights are packed for: oneDNN where PyTorch
    has it on x86, else the process's engine."""
    if "onednn" in torch.backends.quantized.supported_engines and platform.machine().lower() in {"x86_64", "amd64"}:
        return "onednn"
    return torch.backends.quantized.engine


@contextmanager
def packing_engine() -> Iterator[None]:
    """Pack int8 weights for `packing_engine_name()`'s kernels.

    PyTorch's quantized Linear runs the kernels of the engine its weights were
    packed with, whatever the engine is later; oneDNN's ran MiniLM's int8
    Linears about 20% faster than those of the default x86 engine (fbgemm for
    this op) on this project's machines (see the results document). Only
    packing switches the engine, and it is restored at once: the setting is
    global to the process, and other models in it keep theirs."""
    previous = torch.backends.quantized.engine
    torch.backends.quantized.engine = packing_engine_name()
    try:
        yield
    finally:
        torch.backends.quantized.engine = previous


@lru_cache(maxsize=None)
def full_range_activations(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether this CPU multiplies 8-bit activations by int8 weights without
    saturating: with AVX512-VNNI, the int8 kernels (oneDNN's or fbgemm's)
    accumulate the products in 32 bits; without it, pairs of products are
    summed in 16 bits first, which 8-bit activations can overflow, so
    PyTorch quantizes them to 7 bits (`reduce_range`). Linux only
    (elsewhere: False, the safe choice)."""
    try:
        with open(cpuinfo, encoding="utf8") as lines:
            return any(line.startswith("flags") and "avx512_vnni" in line.split() for line in lines)
    except OSError:
        return False


class Int8Linear(torch.ao.nn.quantized.dynamic.Linear):
    """PyTorch's dynamic int8 Linear layer (the same weights and saved form)
    that quantizes its inputs to 8 bits where `full_range_activations()`,
    instead of PyTorch's 7: half the rounding error for the same speed (7
    bits cost MiniLM about 1 F on NCBI-disease, see the results document)."""

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        if self._packed_params.dtype != torch.qint8:
            return super().forward(inputs)
        packed = self._packed_params._packed_params
        outputs = torch.ops.quantized.linear_dynamic(inputs, packed, reduce_range=not full_range_activations())
        return outputs.to(inputs.dtype)

    def _get_name(self) -> str:
        return "Int8Linear"


def quantize_module(module: torch.nn.Module) -> torch.nn.Module:
    """Quantize the module's Linear layers to int8 `Int8Linear` layers, in
    place (per-channel weight scales: per-tensor scales lose more of MiniLM's
    accuracy)."""
    qconfig = torch.ao.quantization.per_channel_dynamic_qconfig
    with _quiet_quantization(), packing_engine():
        torch.ao.quantization.quantize_dynamic(
            module.eval(), {torch.nn.Linear: qconfig}, dtype=torch.qint8, mapping={torch.nn.Linear: Int8Linear}, inplace=True
        )
    return module


class SmoothedLinear(torch.nn.Module):
    """`linear(x * input_scale)`: a Linear layer whose weight columns were
    multiplied by 1 / input_scale, so that the output is unchanged in fp32
    and the scaled input quantizes with less error."""

    def __init__(self, linear: torch.nn.Module, input_scale: torch.Tensor):
        super().__init__()
        self.linear = linear
        self.register_buffer("input_scale", input_scale)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.linear(inputs * self.input_scale)


def smooth_linear_layers(module: torch.nn.Module, input_maxima: Dict[str, torch.Tensor], alpha: float) -> int:
    """Wrap each Linear layer named in `input_maxima` (its inputs' largest
    absolute value per channel) in a `SmoothedLinear`, in place, with the
    weights rescaled to match. RETURNS (int): the layers wrapped."""
    _check_smoothing(alpha)
    count = 0
    for name, maxima in input_maxima.items():
        linear = module.get_submodule(name)
        if not isinstance(linear, torch.nn.Linear):
            raise ValueError(f"{name} is a {type(linear).__name__}, not a Linear layer to smooth.")
        weight_maxima = linear.weight.detach().abs().amax(dim=0).clamp(min=1e-5)
        # bounded: a channel that calibration barely saw would otherwise get a
        # tiny scale and its weight column would round to zero in int8 (the
        # measured pipelines' scales lie in 0.019-16.1, inside the bounds)
        scale = (maxima.clamp(min=1e-5).pow(alpha) / weight_maxima.pow(1.0 - alpha)).clamp(
            min=MIN_INPUT_SCALE, max=MAX_INPUT_SCALE
        )
        with torch.no_grad():
            linear.weight.mul_(scale)
        _replace_submodule(module, name, SmoothedLinear(linear, 1.0 / scale))
        count += 1
    return count


def _check_smoothing(alpha: float) -> None:
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"The smoothing strength alpha must be in [0, 1], got {alpha}.")


def _replace_submodule(module: torch.nn.Module, name: str, new: torch.nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(module.get_submodule(parent_name) if parent_name else module, child, new)


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
        """Load int8 weights saved from an Int8Transformer (smoothed or not),
        or fp32 weights of the plain model (a pipeline saved before
        quantization), which are then quantized."""
        if not _is_int8_state(state_dict):
            if _is_quantized(self.model):  # fp32 weights need an fp32 skeleton
                self.model = AutoModel.from_config(self.model.config)
            result = self.model.load_state_dict(state_dict, strict=strict, assign=assign)
            quantize_module(self.model)
            return result
        smoothed = sorted(key[len("model.") : -len(".input_scale")] for key in state_dict if key.endswith(".input_scale"))
        if not _is_quantized(self.model) or smoothed != _smoothed_names(self.model):
            # the skeleton of the saved layout: smoothed layers wrapped, then quantized
            self.model = AutoModel.from_config(self.model.config)
            for name in smoothed:
                linear = self.model.get_submodule(name)
                _replace_submodule(self.model, name, SmoothedLinear(linear, torch.ones(linear.in_features)))
            quantize_module(self.model)
        with packing_engine():  # the loaded weights are packed again
            return super().load_state_dict(state_dict, strict=strict, assign=assign)


def _smoothed_names(module: torch.nn.Module) -> List[str]:
    return sorted(name for name, layer in module.named_modules() if isinstance(layer, SmoothedLinear))


def _is_int8_state(state_dict: Dict[str, Any]) -> bool:
    # each quantized Linear saves its packed weights with their dtype
    return any(key.endswith("_packed_params.dtype") for key in state_dict)


def _is_quantized(module: torch.nn.Module) -> bool:
    return not any(isinstance(layer, torch.nn.Linear) for layer in module.modules())


def hf_shims(nlp: Language, component: Optional[str] = None) -> List[HFShim]:
    """The spacy-transformers shims of every component's model (or of the
    component named `component` only), each once."""
    shims: Dict[int, HFShim] = {}
    for name, pipe in nlp.components:
        if component is not None and name != component:
            continue
        model = getattr(pipe, "model", None)
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


def linear_input_maxima(nlp: Language, texts: Iterable[str]) -> Dict[int, Dict[str, torch.Tensor]]:
    """The largest absolute input value per channel of every Linear layer
    of the pipeline's fp32 transformers while it processes `texts` (type
    descriptions included), per shim (by id) and layer name."""
    maxima: Dict[int, Dict[str, torch.Tensor]] = {}
    hooks = []

    def record(shim_id: int, name: str, layer: torch.nn.Module, inputs: tuple, output: Any) -> None:
        values = inputs[0].detach()
        values = values.reshape(-1, values.shape[-1]).abs().amax(dim=0).float().cpu()
        seen = maxima.setdefault(shim_id, {})
        seen[name] = torch.maximum(seen[name], values) if name in seen else values

    for shim in _loaded_shims(nlp):
        for name, layer in shim._model.named_modules():
            if isinstance(layer, torch.nn.Linear):
                hooks.append(layer.register_forward_hook(partial(record, id(shim), name)))
    n_texts = 0
    try:
        _clear_cached_type_vectors(nlp)  # the descriptions are encoded again, and recorded
        for _ in nlp.pipe(texts):
            n_texts += 1
    finally:
        for hook in hooks:
            hook.remove()
    if not n_texts:
        raise ValueError("No calibration texts: give at least one text the pipeline will see, e.g. from its training data.")
    unseen = sum(1 for shim in _loaded_shims(nlp) if id(shim) not in maxima)
    if unseen:
        raise ValueError(
            f"{unseen} transformer(s) of the pipeline did not run on the calibration texts (a disabled "
            "component?), so they cannot be smoothed. Enable every component that uses one and quantize again."
        )
    return maxima


def quantize_pipeline(
    nlp: Language, calibration_texts: Optional[Iterable[str]] = None, smoothing: float = DEFAULT_SMOOTHING
) -> int:
    """Quantize the pipeline's transformers to int8 in place and record it in
    `nlp.config`, so that `nlp.to_disk` saves a pipeline that loads as int8.

    calibration_texts (Optional[Iterable[str]]): texts like those the pipeline
        will see (a few hundred suffice); with them, each Linear layer is
        smoothed (see the module's docstring) before it is quantized.
    smoothing (float): SmoothQuant's alpha in [0, 1], with calibration texts.
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
    _check_smoothing(smoothing)  # before the calibration pass, not after it
    maxima: Dict[int, Dict[str, torch.Tensor]] = {}
    if calibration_texts is not None:
        if any(isinstance(shim._model, Int8Transformer) for shim in shims):
            raise ValueError("The pipeline is int8 already: calibrate and quantize its fp32 version.")
        maxima = linear_input_maxima(nlp, calibration_texts)
    count = 0
    for shim in shims:
        shim.model_cls = Int8Transformer
        if isinstance(shim._model, Int8Transformer):
            continue
        smooth_linear_layers(shim._model, maxima.get(id(shim), {}), smoothing)
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

"""spacy-binder: BINDER bi-encoder named entity recognition for spaCy."""
from . import augmenters, component, corpora, int8, length_buckets, listener, model, new_types, scorer, span_getters, type_encoders  # noqa: F401  (registrations)
from .component import BinderNER
from .torch_binder import LossWeights

__version__ = "0.1.0"
__all__ = ["BinderNER", "LossWeights", "__version__"]

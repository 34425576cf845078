"""The corpus readers in spaCy's `registry.readers`, for a config's
`[corpora.train]` / `[corpora.dev]` blocks: each reads its files directly
and behaves like `spacy.Corpus.v1`.

A reader's options are `path`, the options of its `read_*` function
(`spans_key`, the format's own) and spacy.Corpus.v1's `gold_preproc`,
`max_length`, `limit` and `augmenter`. Its signature is built from the
`read_*` function's, so each option and default is declared once and config
validation and `spacy init fill-config` see them all.
"""
import inspect
from pathlib import Path
from typing import Callable, Dict, NamedTuple, Optional

from spacy.errors import Errors
from spacy.util import registry

from .brat import read_brat
from .core import GoldCorpus
from .iob import read_iob
from .spans_jsonl import read_spans_jsonl
from .token_jsonl import read_token_jsonl



class Format(NamedTuple):
    """A corpus format: its read function, the name of its registered reader,
    and whether the function takes the nlp object (to tokenize texts) rather
    than its vocab."""

    read: Callable
    reader_name: str
    takes_nlp: bool


# by the name the convert command's --format takes
FORMATS: Dict[str, Format] = {
    "iob": Format(read_iob, "spacy-binder.IOBCorpus.v1", False),
    "token-jsonl": Format(read_token_jsonl, "spacy-binder.TokenJsonlCorpus.v1", False),
    "brat": Format(read_brat, "spacy-binder.BratCorpus.v1", True),
    "spans-jsonl": Format(read_spans_jsonl, "spacy-binder.SpansJsonlCorpus.v1", True),
}
# spacy.Corpus.v1's options and their defaults
CORPUS_OPTIONS = (
    ("gold_preproc", bool, False),
    ("max_length", int, 0),
    ("limit", int, 0),
    ("augmenter", Optional[Callable], None),
)


def make_reader(read: Callable, takes_nlp: bool) -> Callable[..., GoldCorpus]:
    """The registered function of a format: `path`, then `read`'s options,
    then spacy.Corpus.v1's, returning a GoldCorpus.

    read (Callable): A `read_*` function: (path, nlp or vocab, **options).
    takes_nlp (bool): Whether `read` takes the nlp object rather than its vocab.
    RETURNS (Callable[..., GoldCorpus]): The reader function.
    """

    def create_reader(path: Optional[Path], **options) -> GoldCorpus:
        if path is None:
            raise ValueError(Errors.E913)
        corpus_options = {name: options.pop(name) for name, _, _ in CORPUS_OPTIONS if name in options}
        return GoldCorpus(
            lambda nlp: read(path, nlp if takes_nlp else nlp.vocab, **options), str(path), **corpus_options
        )

    keyword = inspect.Parameter.KEYWORD_ONLY
    format_options = list(inspect.signature(read).parameters.values())[2:]
    parameters = [
        inspect.Parameter("path", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Optional[Path]),
        *format_options,
        *(inspect.Parameter(name, keyword, default=default, annotation=kind) for name, kind, default in CORPUS_OPTIONS),
    ]
    signature = inspect.Signature(parameters, return_annotation=GoldCorpus)
    create_reader.__signature__ = signature  # type: ignore[attr-defined]
    create_reader.__annotations__ = {**{p.name: p.annotation for p in parameters}, "return": GoldCorpus}
    create_reader.__name__ = create_reader.__qualname__ = f"create_{read.__name__[len('read_'):]}_reader"
    create_reader.__doc__ = f"A spaCy corpus of the files {read.__name__} reads (see its docstring)."
    return create_reader


def _register(name: str) -> Callable[..., GoldCorpus]:
    read, reader_name, takes_nlp = FORMATS[name]
    return registry.readers(reader_name, func=make_reader(read, takes_nlp))


# module-level names for the entry points in setup.cfg
create_iob_reader = _register("iob")
create_token_jsonl_reader = _register("token-jsonl")
create_brat_reader = _register("brat")
create_spans_jsonl_reader = _register("spans-jsonl")

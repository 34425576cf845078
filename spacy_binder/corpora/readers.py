"""The corpus readers in spaCy's `registry.readers`, for a config's
`[corpora.train]` / `[corpora.dev]` blocks: each reads its files directly
and behaves like `spacy.Corpus.v1` (`gold_preproc`, `max_length`, `limit`,
`augmenter`). Options are those of the `read_*` functions.
"""
from pathlib import Path
from typing import Callable, Iterable, List, Optional

from spacy.errors import Errors
from spacy.language import Language
from spacy.training import Example
from spacy.util import registry

from .brat import read_brat
from .core import GoldCorpus
from .iob import DOCSTART, read_iob
from .spans_jsonl import read_spans_jsonl
from .token_jsonl import read_token_jsonl

ExampleReader = Callable[[Language], Iterable[Example]]


def _check_path(path: Optional[Path]) -> Path:
    if path is None:
        raise ValueError(Errors.E913)
    return Path(path)


@registry.readers("spacy-binder.IOBCorpus.v1")
def create_iob_reader(
    path: Optional[Path],
    spans_key: str = "sc",
    token_column: int = 0,
    tag_columns: List[int] = [-1],  # noqa: B006 (a config default, never mutated)
    n_columns: Optional[int] = None,
    delimiter: Optional[str] = None,
    scheme: str = "iob2",
    comment_prefix: Optional[str] = None,
    docstart: str = DOCSTART,
    one_doc_per_sentence: bool = False,
    sentence_starts: bool = True,
    pattern: str = "*",
    gold_preproc: bool = False,
    max_length: int = 0,
    limit: int = 0,
    augmenter: Optional[Callable] = None,
) -> ExampleReader:
    """Layered IOB / BIO / BIOES column files (see `iob.read_iob`)."""
    path = _check_path(path)
    options = dict(
        spans_key=spans_key, token_column=token_column, tag_columns=tag_columns, n_columns=n_columns,
        delimiter=delimiter, scheme=scheme, comment_prefix=comment_prefix, docstart=docstart,
        one_doc_per_sentence=one_doc_per_sentence, sentence_starts=sentence_starts, pattern=pattern,
    )
    return GoldCorpus(
        lambda nlp: read_iob(path, nlp.vocab, **options), str(path),
        gold_preproc=gold_preproc, max_length=max_length, limit=limit, augmenter=augmenter,
    )


@registry.readers("spacy-binder.TokenJsonlCorpus.v1")
def create_token_jsonl_reader(
    path: Optional[Path],
    spans_key: str = "sc",
    tokens_field: str = "tokens",
    mentions_field: str = "entity_mentions",
    start_field: str = "start",
    end_field: str = "end",
    label_field: str = "type",
    end_inclusive: bool = False,
    sentence_starts: bool = True,
    pattern: str = "*.jsonl",
    gold_preproc: bool = False,
    max_length: int = 0,
    limit: int = 0,
    augmenter: Optional[Callable] = None,
) -> ExampleReader:
    """Token-level JSON lines with nested mentions (see `token_jsonl.read_token_jsonl`)."""
    path = _check_path(path)
    options = dict(
        spans_key=spans_key, tokens_field=tokens_field, mentions_field=mentions_field,
        start_field=start_field, end_field=end_field, label_field=label_field,
        end_inclusive=end_inclusive, sentence_starts=sentence_starts, pattern=pattern,
    )
    return GoldCorpus(
        lambda nlp: read_token_jsonl(path, nlp.vocab, **options), str(path),
        gold_preproc=gold_preproc, max_length=max_length, limit=limit, augmenter=augmenter,
    )


@registry.readers("spacy-binder.BratCorpus.v1")
def create_brat_reader(
    path: Optional[Path],
    spans_key: str = "sc",
    misaligned: str = "split",
    pattern: str = "*.ann",
    gold_preproc: bool = False,
    max_length: int = 0,
    limit: int = 0,
    augmenter: Optional[Callable] = None,
) -> ExampleReader:
    """brat standoff .txt/.ann pairs (see `brat.read_brat`)."""
    path = _check_path(path)
    return GoldCorpus(
        lambda nlp: read_brat(path, nlp, spans_key=spans_key, misaligned=misaligned, pattern=pattern), str(path),
        gold_preproc=gold_preproc, max_length=max_length, limit=limit, augmenter=augmenter,
    )


@registry.readers("spacy-binder.SpansJsonlCorpus.v1")
def create_spans_jsonl_reader(
    path: Optional[Path],
    spans_key: str = "sc",
    text_field: str = "text",
    spans_field: str = "spans",
    start_field: str = "start",
    end_field: str = "end",
    label_field: str = "label",
    answer_field: str = "answer",
    misaligned: str = "split",
    pattern: str = "*.jsonl",
    gold_preproc: bool = False,
    max_length: int = 0,
    limit: int = 0,
    augmenter: Optional[Callable] = None,
) -> ExampleReader:
    """Character-offset JSON lines, Prodigy / spaCy style (see `spans_jsonl.read_spans_jsonl`)."""
    path = _check_path(path)
    options = dict(
        spans_key=spans_key, text_field=text_field, spans_field=spans_field, start_field=start_field,
        end_field=end_field, label_field=label_field, answer_field=answer_field,
        misaligned=misaligned, pattern=pattern,
    )
    return GoldCorpus(
        lambda nlp: read_spans_jsonl(path, nlp, **options), str(path),
        gold_preproc=gold_preproc, max_length=max_length, limit=limit, augmenter=augmenter,
    )

"""Corpus readers for the formats nested and flat NER data come in: layered
IOB columns, token-level JSONL, brat standoff and character-offset JSONL.

Each `read_*` function returns (Docs, ReadStats); the registered readers
(`spacy-binder.IOBCorpus.v1` and the others in `readers.py`) feed them to
`spacy train` from a config. Gold rules: see `core`.
"""
from .brat import read_brat
from .core import FormatError, ReadStats
from .iob import read_iob
from .readers import FORMATS  # registers the readers
from .spans_jsonl import read_spans_jsonl
from .token_jsonl import read_token_jsonl

__all__ = ["FORMATS", "FormatError", "ReadStats", "read_brat", "read_iob", "read_spans_jsonl", "read_token_jsonl"]

"""Annotating corpora of any size: `annotate` runs a saved or packaged
pipeline over JSONL or Parquet texts on Ray Data and writes one record per
input document (`python -m spacy_binder annotate`). Ray is imported only when
`annotate` runs, so the rest of the package does not need it."""
from .output import PartFolder
from .records import doc_record, parse_input_row
from .runner import AnnotationStats, annotate

__all__ = ["AnnotationStats", "PartFolder", "annotate", "doc_record", "parse_input_row"]

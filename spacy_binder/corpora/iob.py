"""Layered IOB / BIO / BIOES column files: CoNLL-2003 (`token POS chunk NER`),
GermEval 2014 (`idx token outer inner`, `#` comments), NCBI-disease
(`token<TAB>tag`) and the like.

One token per line, whitespace-only lines between sentences, any number of
tag columns, each its own nesting level (all decoded mentions go to
`doc.spans`). A line whose first (or token) field is `-DOCSTART-` starts a new
document wherever it appears: a file with such lines gives one Doc per
document or, by option, one per sentence; a file with none gives one Doc per
sentence. Each Doc's sentence starts are the file's, unless switched off.

Columns are split at runs of ASCII spaces and tabs by default (a no-break
space or other Unicode space stays inside its token), or at `delimiter`. With
`comment_prefix`, a line starting with it is a comment only if it is not a
token line of the file's shape (its column count, a token, valid tags): in
tweet corpora such as WNUT-17, `#metoo<TAB>B-X` is a token.
"""
import re
from collections import Counter
from pathlib import Path
from typing import List, Optional, Sequence, Tuple, Union

from spacy.tokens import Doc
from spacy.vocab import Vocab

from .core import FormatError, ReadStats, SpanTuple, corpus_files, doc_from_words, set_gold

SCHEMES = ("iob1", "iob2", "bioes")
# the prefixes each scheme accepts; BILOU's L and U are BIOES's E and S
PREFIXES = {"iob1": "BI", "iob2": "BI", "bioes": "BIESLU"}
DOCSTART = "-DOCSTART-"
# the default column separator: ASCII spaces and tabs, not Unicode spaces
COLUMN_SEPARATOR = re.compile(r"[ \t]+")
# (words, one tag list per tag column) of one sentence
Sentence = Tuple[List[str], List[List[str]]]


def split_tag(tag: str, scheme: str = "iob2") -> Tuple[str, str]:
    """Split a tag into (prefix, label): "O" -> ("O", ""), "B-X" -> ("B", "X").
    BILOU's L and U come back as E and S.

    tag (str): The tag.
    scheme (str): "iob1", "iob2" or "bioes" (which also reads BILOU).
    RETURNS (Tuple[str, str]): The prefix and the label. Raises ValueError
        for a tag the scheme does not have.
    """
    if tag == "O":
        return "O", ""
    prefix, sep, label = tag.partition("-")
    if len(prefix) != 1 or prefix not in PREFIXES[scheme] or not sep or not label:
        expected = ", ".join(f"{p}-<type>" for p in PREFIXES[scheme])
        raise ValueError(f"unknown tag {tag!r} (expected O, {expected})")
    return {"L": "E", "U": "S"}.get(prefix, prefix), label


def tags_to_spans(tags: Sequence[str], scheme: str = "iob2") -> Tuple[List[SpanTuple], Counter]:
    """Decode one sentence of one tag column into mentions.

    `B-X` (and BIOES `S-X`) always starts a mention; `I-X` (and `E-X`)
    continues an open mention of type X and otherwise starts one: that is
    the IOB1 rule, and in IOB2 and BIOES input a repair ("i_starts_mention").
    In BIOES, `E-X` and `S-X` close the mention; one that ends without them
    is kept and counted ("bioes_unclosed").

    tags (Sequence[str]): One tag per token.
    scheme (str): "iob1", "iob2" or "bioes".
    RETURNS (Tuple[List[SpanTuple], Counter]): (start, end, label) mentions
        with exclusive ends, and the repairs per reason.
    """
    if scheme not in SCHEMES:
        raise ValueError(f"scheme must be one of {SCHEMES}, got {scheme!r}")
    spans: List[SpanTuple] = []
    repairs: Counter = Counter()
    start, label, closed = -1, "", True
    for i, tag in enumerate(list(tags) + ["O"]):
        prefix, tag_label = split_tag(tag, scheme)
        continues = prefix in "IE" and tag_label == label and not closed
        if not continues:
            if label:
                spans.append((start, i, label))
                if scheme == "bioes" and not closed:
                    repairs["bioes_unclosed"] += 1
            start, label = i, tag_label
            if prefix in "IE" and scheme != "iob1":
                repairs["i_starts_mention"] += 1
        closed = prefix in "ES"
    return spans, repairs


def read_iob(
    path: Union[str, Path],
    vocab: Vocab,
    *,
    spans_key: str = "sc",
    token_column: int = 0,
    tag_columns: Sequence[int] = (-1,),
    n_columns: Optional[int] = None,
    delimiter: Optional[str] = None,
    scheme: str = "iob2",
    comment_prefix: Optional[str] = None,
    docstart: str = DOCSTART,
    one_doc_per_sentence: bool = False,
    sentence_starts: bool = True,
    pattern: str = "*",
) -> Tuple[List[Doc], ReadStats]:
    """Read IOB column files into gold Docs (see the module docstring).

    path (Union[str, Path]): A file, or a folder of files matching `pattern`.
    vocab (Vocab): The vocab for the Docs.
    spans_key (str): The `doc.spans` key for all mentions.
    token_column (int): The column of the token (negative: from the end).
    tag_columns (Sequence[int]): The tag columns, outermost level first.
    n_columns (Optional[int]): Columns every token line must have; None: as
        many as the first token line of the file.
    delimiter (Optional[str]): The column separator; None: runs of ASCII
        spaces and tabs (set "\t" when a token holds a space).
    scheme (str): "iob1", "iob2" or "bioes" (BILOU read as BIOES).
    comment_prefix (Optional[str]): Lines starting with it are skipped and
        counted, unless they read as token lines (see the module docstring).
    docstart (str): The first field of the lines that start a document.
    one_doc_per_sentence (bool): One Doc per sentence even where documents
        are marked.
    sentence_starts (bool): Set the Docs' sentence starts from the file's
        sentences; without them binder_ner finds sentences with spaCy's
        rule-based Sentencizer.
    pattern (str): File names to read in a folder; the default reads every
        file under it (a README too: set e.g. "*.tsv" when the folder holds
        other files).
    RETURNS (Tuple[List[Doc], ReadStats]): The Docs and the counts. Raises
        FormatError for a line with the wrong number of columns, an empty
        token or a tag the scheme does not have.
    """
    if scheme not in SCHEMES:
        raise ValueError(f"scheme must be one of {SCHEMES}, got {scheme!r}")
    stats = ReadStats()
    docs: List[Doc] = []
    for file_path in corpus_files(path, pattern):
        try:
            documents, marked = _read_file(
                file_path, token_column, list(tag_columns), n_columns, delimiter,
                scheme, comment_prefix, docstart, stats,
            )
        except FormatError as err:
            if not Path(path).is_dir():
                raise
            hint = f" (read as it matches pattern {pattern!r} under {path}; set pattern to the corpus files' names)"
            raise FormatError(err.path, err.line_no, err.message + hint) from None
        stats.files += 1
        for document in documents:
            stats.documents += 1 if marked else len(document)
            stats.sentences += len(document)
            groups = [[s] for s in document] if one_doc_per_sentence or not marked else [document]
            docs.extend(_sentences_to_doc(vocab, group, scheme, spans_key, sentence_starts, stats) for group in groups)
    return docs, stats


def _read_file(
    path: Path,
    token_column: int,
    tag_columns: List[int],
    n_columns: Optional[int],
    delimiter: Optional[str],
    scheme: str,
    comment_prefix: Optional[str],
    docstart: str,
    stats: ReadStats,
) -> Tuple[List[List[Sentence]], bool]:
    """The documents of one file (each a list of sentences; empty ones left
    out) and whether the file marks documents with `docstart` lines."""
    documents: List[List[Sentence]] = [[]]
    words: List[str] = []
    tags: List[List[str]] = [[] for _ in tag_columns]
    marked = False
    # the fewest columns that hold every column asked for (negative: from the end)
    min_columns = max(c + 1 if c >= 0 else -c for c in [token_column, *tag_columns])
    # where the expected column count comes from, for the error
    n_columns_from = f"n_columns = {n_columns}"
    tabbed = False  # whether the line the count comes from has a tab

    def is_token_line(fields: List[str]) -> bool:
        """Whether the fields are a token line of the file's shape."""
        if len(fields) < min_columns or (n_columns is not None and len(fields) != n_columns):
            return False
        try:
            for tag_column in tag_columns:
                split_tag(fields[tag_column], scheme)
        except ValueError:
            return False
        return bool(fields[token_column].strip())

    def end_sentence() -> None:
        if words:
            documents[-1].append((list(words), [list(column) for column in tags]))
            words.clear()
            for column in tags:
                column.clear()

    with path.open(encoding="utf-8-sig") as file_:  # a leading BOM is not part of the first token
        for line_no, line in enumerate(file_, start=1):
            line = line.rstrip("\r\n")
            if not line.strip():
                end_sentence()
                continue
            fields = line.split(delimiter) if delimiter else COLUMN_SEPARATOR.split(line.strip(" \t"))
            if comment_prefix and line.startswith(comment_prefix) and not is_token_line(fields):
                stats.skipped["comment_line"] += 1
                continue
            if fields[0] == docstart or (len(fields) >= min_columns and fields[token_column] == docstart):
                end_sentence()
                documents.append([])
                marked = True
                continue
            if n_columns is None:
                n_columns, n_columns_from, tabbed = len(fields), f"line {line_no} has {len(fields)}", "\t" in line
            if len(fields) < min_columns:
                columns = f"token_column {token_column}, tag_columns {list(tag_columns)}"
                raise FormatError(
                    path, line_no, f"expected at least {min_columns} columns ({columns}), got {len(fields)}: {line!r}"
                )
            if len(fields) != n_columns:
                hint = ""
                if delimiter is None and (tabbed or "\t" in line):
                    hint = '; if a token holds a space, set delimiter = "\\t" (convert: --delimiter tab)'
                raise FormatError(
                    path, line_no, f"expected {n_columns} columns ({n_columns_from}), got {len(fields)}: {line!r}{hint}"
                )
            token = fields[token_column]
            if not token.strip():
                raise FormatError(path, line_no, f"empty token in {line!r}")
            words.append(token)
            for column, tag_column in zip(tags, tag_columns):
                try:
                    split_tag(fields[tag_column], scheme)
                except ValueError as err:
                    raise FormatError(path, line_no, str(err)) from None
                column.append(fields[tag_column])
    end_sentence()
    return [document for document in documents if document], marked


def _sentences_to_doc(
    vocab: Vocab, sentences: List[Sentence], scheme: str, spans_key: str, sentence_starts: bool, stats: ReadStats
) -> Doc:
    """One gold Doc of consecutive sentences, with sentence starts set if asked."""
    words: List[str] = []
    starts: List[bool] = []
    spans: List[SpanTuple] = []
    for sent_words, columns in sentences:
        offset = len(words)
        for column in columns:
            column_spans, repairs = tags_to_spans(column, scheme)
            stats.repaired.update(repairs)
            spans.extend((start + offset, end + offset, label) for start, end, label in column_spans)
        starts.extend([True] + [False] * (len(sent_words) - 1))
        words.extend(sent_words)
    doc = doc_from_words(vocab, words, starts if sentence_starts else None)
    return set_gold(doc, spans, spans_key, stats)

"""brat standoff: `name.txt` with `name.ann` beside it, one Doc per pair.

Text-bound `T` lines (`T1<TAB>Label 0 5;6 10<TAB>text`) are the mentions;
overlapping ones are kept (nested, in `doc.spans`). A discontinuous mention
whose fragments are separated by whitespace only becomes one span (repaired,
"discontinuous_joined"); any other is dropped ("discontinuous"). A mention
whose text field differs from the text at its offsets (whitespace aside) is
dropped ("text_mismatch"). R, E, A, M, N, `*` and `#` lines are skipped and
counted per kind. The text is tokenized with `nlp.make_doc`; whitespace at a
mention's edges and boundaries inside tokens are handled as in
`core.doc_from_char_spans`.
"""
from pathlib import Path
from typing import List, Optional, Tuple, Union

from spacy.language import Language
from spacy.tokens import Doc

from .core import FormatError, ReadStats, SpanTuple, corpus_files, doc_from_char_spans

SKIPPED_KINDS = "REAMN*#"


def read_brat(
    path: Union[str, Path],
    nlp: Language,
    *,
    spans_key: str = "sc",
    misaligned: str = "split",
    pattern: str = "*.ann",
) -> Tuple[List[Doc], ReadStats]:
    """Read brat standoff files into gold Docs (see the module docstring).

    path (Union[str, Path]): An .ann or .txt file (its pair is found beside
        it), or a folder of .ann files matching `pattern`, each with its .txt.
    nlp (Language): Supplies the tokenizer and vocab.
    spans_key (str): The `doc.spans` key for all mentions.
    misaligned (str): A mention boundary inside a token: "split" the token,
        "expand" the mention to whole tokens, or "drop" it.
    pattern (str): File names of the annotation files in a folder.
    RETURNS (Tuple[List[Doc], ReadStats]): The Docs and the counts. Raises
        FormatError for a line of another kind or a malformed `T` line
        (offsets outside the text included), FileNotFoundError for an .ann
        file without its .txt.
    """
    path = Path(path)
    if path.suffix == ".txt" and path.is_file():
        path = path.with_suffix(".ann")
    stats = ReadStats()
    docs: List[Doc] = []
    for ann_path in corpus_files(path, pattern):
        txt_path = ann_path.with_suffix(".txt")
        if not txt_path.is_file():
            raise FileNotFoundError(f"{ann_path} has no text file {txt_path.name} beside it")
        # newline="": offsets count "\r\n" as two characters
        with txt_path.open(encoding="utf8", newline="") as file_:
            text = file_.read()
        spans = _read_ann(ann_path, text, stats)
        docs.append(doc_from_char_spans(nlp, text, spans, spans_key, stats, misaligned))
        stats.files += 1  # .ann files, each with its .txt
        stats.documents += 1
    return docs, stats


def _read_ann(path: Path, text: str, stats: ReadStats) -> List[SpanTuple]:
    """The (start_char, end_char, label) mentions of an .ann file."""
    spans: List[SpanTuple] = []
    with path.open(encoding="utf8") as file_:
        for line_no, line in enumerate(file_, start=1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            kind = line[0]
            if kind in SKIPPED_KINDS:
                stats.skipped[f"brat_{kind}_line"] += 1
            elif kind == "T":
                span = _text_bound(path, line_no, line, text, stats)
                if span is not None:
                    spans.append(span)
            else:
                raise FormatError(path, line_no, f"expected a T, R, E, A, M, N, * or # line, got {line!r}")
    return spans


def _text_bound(path: Path, line_no: int, line: str, text: str, stats: ReadStats) -> Optional[SpanTuple]:
    """The mention of a `T` line, or None if it is dropped (counted)."""
    fields = line.split("\t")
    label, _, offsets = fields[1].partition(" ") if len(fields) > 1 else ("", "", "")
    try:
        fragments = sorted(tuple(map(int, fragment.split())) for fragment in offsets.split(";"))
    except ValueError:
        fragments = []
    if len(fields) not in (2, 3) or not label or not fragments or any(len(f) != 2 for f in fragments):
        expected = "'T<id><TAB><label> <start> <end>[;<start> <end>]...<TAB><text>'"
        raise FormatError(path, line_no, f"expected {expected}, got {line!r}")
    for start, end in fragments:
        if not 0 <= start < end <= len(text):
            raise FormatError(path, line_no, f"offsets ({start}, {end}) outside the text (length {len(text)})")
    covered = " ".join(text[start:end] for start, end in fragments)
    if len(fields) == 3 and fields[2].split() != covered.split():
        stats.dropped["text_mismatch"] += 1
        return None
    gaps = [text[end:start] for (_, end), (start, _) in zip(fragments, fragments[1:])]
    if any(gap.strip() for gap in gaps):
        stats.dropped["discontinuous"] += 1
        return None
    if gaps:
        stats.repaired["discontinuous_joined"] += 1
    return fragments[0][0], max(end for _, end in fragments), label

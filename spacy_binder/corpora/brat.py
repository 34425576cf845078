"""brat standoff: `name.txt` with `name.ann` beside it, one Doc per pair. A
`.txt` without its `.ann` is a document with no mentions: it gives a Doc
without mentions and is counted (`ReadStats.unannotated`, in the warning); an
`.ann` without its `.txt` is an error.

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

from .core import FormatError, ReadStats, SpanTuple, corpus_files, doc_from_char_spans, matching_files

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
        it), or a folder of .ann files matching `pattern`, each with its
        .txt, and of the .txt files without an .ann (the .txt files that
        `pattern` with the suffix .txt matches).
    nlp (Language): Supplies the tokenizer and vocab.
    spans_key (str): The `doc.spans` key for all mentions.
    misaligned (str): A mention boundary inside a token: "split" the token,
        "expand" the mention to whole tokens, or "drop" it.
    pattern (str): File names of the annotation files in a folder.
    RETURNS (Tuple[List[Doc], ReadStats]): The Docs, in the order of the
        .txt paths, and the counts. Raises FormatError for a line of another
        kind or a malformed `T` line (offsets outside the text included),
        FileNotFoundError for an .ann file without its .txt, ValueError for
        a folder with no file matching `pattern`.
    """
    path = Path(path)
    ann_suffix = Path(pattern).suffix or ".ann"
    if path.suffix == ".txt" and path.is_file():
        ann_path = path.with_suffix(ann_suffix)
        pairs = [(path, ann_path if ann_path.is_file() else None)]
    else:
        pairs = [(ann_path.with_suffix(".txt"), ann_path) for ann_path in corpus_files(path, pattern)]
        if path.is_dir():
            annotated = {txt_path for txt_path, _ in pairs}
            texts = matching_files(path, str(Path(pattern).with_suffix(".txt"))) if Path(pattern).suffix else []
            alone = [(txt_path, None) for txt_path in texts if txt_path not in annotated]
            pairs = sorted(pairs + alone, key=lambda pair: pair[0])
    stats = ReadStats()
    docs: List[Doc] = []
    for txt_path, ann_path in pairs:
        if not txt_path.is_file():
            raise FileNotFoundError(f"brat annotation file {ann_path} has no text file {txt_path.name} beside it")
        # brat's own server reads the .txt as UTF-8 keeping a byte-order mark:
        # its offsets count a BOM as the text's first character, and so do
        # these (the BOM stays in the Doc's text). newline="": they count
        # "\r\n" as two characters.
        with txt_path.open(encoding="utf8", newline="") as file_:
            text = file_.read()
        if ann_path is None:
            stats.unannotated.append(str(txt_path))
            spans: List[SpanTuple] = []
        else:
            spans = _read_ann(ann_path, text, stats)
        docs.append(doc_from_char_spans(nlp, text, spans, spans_key, stats, misaligned))
        stats.files += 1  # .ann files, each with its .txt, and .txt files alone
        stats.documents += 1
    return docs, stats


def _read_ann(path: Path, text: str, stats: ReadStats) -> List[SpanTuple]:
    """The (start_char, end_char, label) mentions of an .ann file."""
    spans: List[SpanTuple] = []
    with path.open(encoding="utf-8-sig") as file_:  # a leading BOM is not part of the first line's kind
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

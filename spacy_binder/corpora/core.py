"""What every corpus reader shares: read statistics, errors, gold Docs, files,
character offsets aligned with tokens, and the spaCy corpus callable.

Gold conventions of every reader: all mentions of a Doc go to
`doc.spans[spans_key]`, ordered by (start, end, label), overlaps allowed;
`doc.ents` holds a flat view chosen by `spacy.util.filter_spans`: longest
mentions first, at equal length the earlier start, at equal extent the first
label in alphabetical order. A mention given twice (same tokens and label) is
kept once and counted as dropped ("duplicate").
"""
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, List, Optional, Sequence, Set, Tuple, Union

from spacy.language import Language
from spacy.tokens import Doc, Span
from spacy.training import Corpus, Example
from spacy.util import filter_spans, logger
from spacy.vocab import Vocab

# (start, end, label): token offsets (end exclusive) or character offsets
SpanTuple = Tuple[int, int, str]
# how a character span whose boundary falls inside a token is handled
MISALIGNED_RULES = ("split", "expand", "drop")
# skipped input that holds no annotation: logged, not warned about
QUIET_SKIPS = ("comment_line", "empty_record")
# how ReadStats.unannotated is named in its lines and warning
UNANNOTATED = "texts without annotations, read with no mentions"


class FormatError(ValueError):
    """A malformed line in a corpus file; the message names file and line."""

    def __init__(self, path: Union[str, Path], line_no: int, message: str) -> None:
        super().__init__(f"{path}, line {line_no}: {message}")
        self.path, self.line_no, self.message = path, line_no, message


@dataclass
class ReadStats:
    """What a reader read, kept, repaired, dropped and skipped.

    files (int): Files read.
    documents (int): Source documents (articles, records, brat files).
    sentences (int): Sentences, where the format marks them.
    docs (int): Docs produced.
    tokens (int): Tokens in the Docs produced.
    mentions (Counter): Mentions kept, per label.
    not_in_ents (int): Kept mentions left out of `doc.ents` (they overlap a
        longer one), still in `doc.spans`.
    repaired (Counter): Mentions kept after a repair, per reason.
    dropped (Counter): Mentions dropped, per reason.
    skipped (Counter): Input other than mentions that was not used (comment
        lines, brat relation lines, rejected records), per kind.
    unannotated (List[str]): Texts read without an annotation file (a brat
        .txt with no .ann beside it), each a Doc with no mentions.
    """

    files: int = 0
    documents: int = 0
    sentences: int = 0
    docs: int = 0
    tokens: int = 0
    mentions: Counter = field(default_factory=Counter)
    not_in_ents: int = 0
    repaired: Counter = field(default_factory=Counter)
    dropped: Counter = field(default_factory=Counter)
    skipped: Counter = field(default_factory=Counter)
    unannotated: List[str] = field(default_factory=list)

    def lines(self) -> List[str]:
        """The counts as lines of text: totals, then each Counter per key, then
        the unannotated texts, if any."""
        out = [
            f"files: {self.files}", f"documents: {self.documents}", f"sentences: {self.sentences}",
            f"docs: {self.docs}", f"tokens: {self.tokens}", f"mentions: {sum(self.mentions.values())}",
        ]
        out.extend(f"  {label}: {n}" for label, n in sorted(self.mentions.items()))
        out.append(f"mentions only in doc.spans (overlapping a longer one): {self.not_in_ents}")
        for name in ("repaired", "dropped", "skipped"):
            counts: Counter = getattr(self, name)
            out.append(f"{name}: {sum(counts.values())}")
            out.extend(f"  {reason}: {n}" for reason, n in sorted(counts.items()))
        if self.unannotated:
            out.append(f"{UNANNOTATED}: {len(self.unannotated)}")
        return out

    def report(self, source: Union[str, Path]) -> None:
        """Log the counts, and warn when a mention was repaired or dropped, an
        annotation skipped (comment lines and empty records are only logged)
        or a text read without its annotation file."""
        logger.info("Read %s: %s", source, "; ".join(line.strip() for line in self.lines()))
        skipped = {kind: n for kind, n in self.skipped.items() if kind not in QUIET_SKIPS}
        changed = {
            name: dict(sorted(counts.items()))
            for name, counts in (("repaired", self.repaired), ("dropped", self.dropped), ("skipped", skipped))
            if counts
        }
        details = "; ".join(f"{name}: {counts}" for name, counts in changed.items())
        if self.unannotated:
            names = ", ".join(self.unannotated[:3]) + (", ..." if len(self.unannotated) > 3 else "")
            details += f"{'; ' if details else ''}{UNANNOTATED}: {len(self.unannotated)} ({names})"
        if details:
            warnings.warn(f"[spacy-binder] reading {source}: {details}", stacklevel=2)


def corpus_files(path: Union[str, Path], pattern: str) -> List[Path]:
    """The files to read: `path` itself if it is a file, else the files under
    it whose names match `pattern` (recursively, hidden ones left out), sorted.

    path (Union[str, Path]): A file or a folder.
    pattern (str): A glob pattern for file names, e.g. "*.ann".
    RETURNS (List[Path]): The files. Raises ValueError if there are none.
    """
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise ValueError(f"corpus path {path} does not exist")
    found = matching_files(path, pattern)
    if not found:
        raise ValueError(f"no files matching {pattern!r} under {path}")
    return found


def matching_files(folder: Path, pattern: str) -> List[Path]:
    """The files under `folder` whose names match `pattern`, recursively,
    hidden ones left out, sorted (none: an empty list)."""
    return sorted(
        p for p in folder.rglob(pattern)
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


def set_gold(doc: Doc, spans: Sequence[SpanTuple], spans_key: str, stats: ReadStats) -> Doc:
    """Write token-offset mentions to `doc.spans[spans_key]` and `doc.ents`
    (see the module docstring), and count them in `stats`.

    doc (Doc): The Doc, modified in place.
    spans (Sequence[SpanTuple]): (start, end, label) token offsets, end exclusive.
    spans_key (str): The `doc.spans` key for all mentions.
    stats (ReadStats): Updated with the Doc, its mentions and duplicates.
    RETURNS (Doc): The Doc.
    """
    unique = sorted(set(spans))
    if len(unique) < len(spans):
        stats.dropped["duplicate"] += len(spans) - len(unique)
    group = [Span(doc, start, end, label=label) for start, end, label in unique]
    doc.spans[spans_key] = group
    doc.ents = sorted(filter_spans(group), key=lambda span: span.start)
    stats.docs += 1
    stats.tokens += len(doc)
    stats.mentions.update(label for _, _, label in unique)
    stats.not_in_ents += len(group) - len(doc.ents)
    return doc


def doc_from_words(
    vocab: Vocab, words: List[str], sent_starts: Optional[List[bool]] = None
) -> Doc:
    """A Doc of pre-tokenized words, a space after every word but the last."""
    spaces = [True] * (len(words) - 1) + [False]
    return Doc(vocab, words=words, spaces=spaces, sent_starts=sent_starts)


def split_tokens(doc: Doc, cuts: Set[int]) -> Doc:
    """`doc` with its tokens split at every character offset in `cuts` that
    falls inside a token (the same doc if none does)."""
    words: List[str] = []
    spaces: List[bool] = []
    for token in doc:
        inner = sorted(c - token.idx for c in cuts if token.idx < c < token.idx + len(token))
        words.extend(token.text[i:j] for i, j in zip([0] + inner, inner + [len(token)]))
        spaces.extend([False] * len(inner) + [bool(token.whitespace_)])
    if len(words) == len(doc):
        return doc
    return Doc(doc.vocab, words=words, spaces=spaces)


def doc_from_char_spans(
    nlp: Language,
    text: str,
    char_spans: Sequence[SpanTuple],
    spans_key: str,
    stats: ReadStats,
    misaligned: str = "split",
) -> Doc:
    """Tokenize `text` with `nlp.make_doc` and add character-offset mentions.

    A mention's leading and trailing whitespace is trimmed (repaired,
    "whitespace_trimmed"); a mention with no other character is dropped
    ("empty"). A mention boundary inside a token is handled by `misaligned`:
    "split" cuts the token there (repaired, "token_split"; the reference
    tokens then differ from `nlp.make_doc`'s, as with GENIA's converter),
    "expand" widens the mention to whole tokens (repaired, "expanded"),
    "drop" drops it ("misaligned").

    nlp (Language): Supplies the tokenizer and vocab.
    text (str): The document text.
    char_spans (Sequence[SpanTuple]): (start_char, end_char, label), end exclusive,
        within the text.
    spans_key (str): The `doc.spans` key for all mentions.
    stats (ReadStats): Updated in place.
    misaligned (str): "split", "expand" or "drop".
    RETURNS (Doc): The gold Doc.
    """
    if misaligned not in MISALIGNED_RULES:
        raise ValueError(f"misaligned must be one of {MISALIGNED_RULES}, got {misaligned!r}")
    trimmed: List[SpanTuple] = []
    for start, end, label in char_spans:
        core = text[start:end]
        lead, rest = len(core) - len(core.lstrip()), core.strip()
        if not rest:
            stats.dropped["empty"] += 1
            continue
        if len(rest) != len(core):
            stats.repaired["whitespace_trimmed"] += 1
        trimmed.append((start + lead, start + lead + len(rest), label))
    doc = nlp.make_doc(text)
    starts = {token.idx for token in doc}
    ends = {token.idx + len(token) for token in doc}
    inside = [(s, e, label) for s, e, label in trimmed if s not in starts or e not in ends]
    if inside and misaligned == "split":
        stats.repaired["token_split"] += len(inside)
        doc = split_tokens(doc, {o for s, e, _ in inside for o in (s, e)})
    elif inside and misaligned == "expand":
        stats.repaired["expanded"] += len(inside)
    elif inside:
        stats.dropped["misaligned"] += len(inside)
        trimmed = [m for m in trimmed if m not in inside]
    mode = "expand" if misaligned == "expand" else "strict"
    token_spans = []
    for start, end, label in trimmed:
        span = doc.char_span(start, end, alignment_mode=mode)
        token_spans.append((span.start, span.end, label))
    return set_gold(doc, token_spans, spans_key, stats)


class GoldCorpus(Corpus):
    """A spaCy corpus (`(nlp) -> Iterator[Example]`) over Docs that a reading
    function builds from files, with `spacy.Corpus.v1`'s options: the example
    making (`gold_preproc`, `max_length`) and `augmenter` are spaCy's own;
    `limit` keeps the first `limit` non-empty Docs.

    read_docs (Callable[[Language], Tuple[List[Doc], ReadStats]]): Reads the
        gold Docs with the nlp object's vocab (and tokenizer, for texts).
    source (str): Names the input in the read report.
    """

    def __init__(
        self,
        read_docs: Callable[[Language], Tuple[List[Doc], ReadStats]],
        source: str,
        *,
        gold_preproc: bool = False,
        max_length: int = 0,
        limit: int = 0,
        augmenter: Optional[Callable] = None,
    ) -> None:
        super().__init__(source, gold_preproc=gold_preproc, max_length=max_length, limit=limit, augmenter=augmenter)
        self.read_docs = read_docs
        self.source = source

    def __call__(self, nlp: Language) -> Iterator[Example]:
        """Yield the examples of the files, read again on every call.

        nlp (Language): The current nlp object.
        YIELDS (Example): The examples.
        """
        docs, stats = self.read_docs(nlp)
        stats.report(self.source)
        docs = [doc for doc in docs if len(doc)]
        if self.limit >= 1:
            docs = docs[: self.limit]
        make = self.make_examples_gold_preproc if self.gold_preproc else self.make_examples
        for example in make(nlp, docs):
            yield from self.augmenter(nlp, example)


"""Distant supervision: label a corpus with the matches of a term list.

The term file has one `TYPE<TAB>term` per line (blank lines and lines
starting with `#` are skipped). Every doc of the input DocBin is matched, on
its own tokens and case-insensitively (spaCy's `PhraseMatcher(attr="LOWER")`);
the longest non-overlapping matches (`spacy.util.filter_spans`) replace the
doc's gold in `doc.ents` and `doc.spans[spans_key]`. Sentence boundaries and
tokens are kept. With `--exact-case-abbreviations true`, terms without lower-case
letters (abbreviations such as "WAS", "AT") match only as written
(`attr="ORTH"`), so that they do not label the words "was" and "at".

When the input has gold, the distant labels are scored against it (exact
span and type; micro P/R/F and per type): run on a test split, that is the
score of the dictionary matcher as an NER system.

A term is turned into token patterns in three ways, so that it matches
however the corpus was tokenized: split at whitespace (the form
make_dictionary.py writes), with spaCy's English tokenizer, and with every
punctuation character as a token of its own (as in NCBI-disease and GENIA).
All three spell the same characters, so they never match different text.
"""
import re
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Set, Tuple, Union

import srsly
import typer
from spacy.language import Language
from spacy.scorer import PRFScore
from spacy.tokens import Doc, DocBin, Span
from wasabi import msg

import project_scripts  # noqa: F401  (the user project's scripts, importable)
from fetch_assets import parse_bool
from spacy_binder.spans import get_gold_spans

MAX_REPORTED_ERRORS = 20
SpanKey = Tuple[int, int, str]


class TermFileError(ValueError):
    """A term file that cannot be used; the message names file and lines."""


@dataclass
class TermList:
    """The terms of a term file, in file order.

    terms (List[Tuple[str, str]]): (type, term) pairs, one per distinct term
        (compared case-insensitively, whitespace runs as one space).
    duplicates (int): lines repeating a term with the same type (dropped).
    conflicts (Dict[str, List[str]]): normalized term -> all the types it was
        listed with, for the terms listed with more than one type; the first
        type listed is kept.
    """

    terms: List[Tuple[str, str]]
    duplicates: int = 0
    conflicts: Dict[str, List[str]] = field(default_factory=dict)

    def counts(self) -> Dict[str, int]:
        """Number of terms per type."""
        return dict(sorted(Counter(label for label, _ in self.terms).items()))


def normalize_term(term: str) -> str:
    """The key two spellings of a term share: lower case, whitespace runs as
    one space, no outer whitespace."""
    return " ".join(term.lower().split())


def parse_term_lines(lines: Iterable[str], source: str) -> TermList:
    """Parse `TYPE<TAB>term` lines; `source` names the file in errors.

    Raises TermFileError listing every malformed line (file, line number and
    what is wrong), or when there is no term at all.
    """
    errors: List[str] = []
    terms: List[Tuple[str, str]] = []
    first_type: Dict[str, str] = {}
    all_types: Dict[str, List[str]] = defaultdict(list)
    duplicates = 0
    for line_no, raw in enumerate(lines, start=1):
        line = raw.rstrip("\r\n")
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        n_tabs = line.count("\t")
        if n_tabs == 0:
            errors.append(f"{source}, line {line_no}: expected TYPE<TAB>term, found no tab in {line!r}")
            continue
        if n_tabs > 1:
            errors.append(
                f"{source}, line {line_no}: expected one tab between TYPE and term, found {n_tabs} in {line!r}"
            )
            continue
        label, term = (part.strip() for part in line.split("\t"))
        if not label:
            errors.append(f"{source}, line {line_no}: the TYPE before the tab is empty in {line!r}")
            continue
        if any(char.isspace() for char in label):
            errors.append(f"{source}, line {line_no}: the TYPE {label!r} contains whitespace")
            continue
        key = normalize_term(term)
        if not key:
            errors.append(f"{source}, line {line_no}: the term after the tab is empty (type {label!r})")
            continue
        if key in first_type:
            if label == first_type[key]:
                duplicates += 1
            elif label not in all_types[key]:
                all_types[key].append(label)
            continue
        first_type[key] = label
        all_types[key].append(label)
        terms.append((label, " ".join(term.split())))
    if errors:
        shown = errors[:MAX_REPORTED_ERRORS]
        more = len(errors) - len(shown)
        tail = [f"... and {more} more malformed lines"] if more else []
        raise TermFileError(
            f"{len(errors)} malformed line(s) in the term file {source} (each line must be "
            "TYPE<TAB>term; blank lines and lines starting with # are skipped):\n"
            + "\n".join(shown + tail)
        )
    if not terms:
        raise TermFileError(f"The term file {source} has no terms: expected lines of TYPE<TAB>term.")
    conflicts = {key: types for key, types in all_types.items() if len(types) > 1}
    return TermList(terms=terms, duplicates=duplicates, conflicts=conflicts)


def read_term_file(path: Union[str, Path]) -> TermList:
    """Read and check a `TYPE<TAB>term` file (UTF-8, a BOM is allowed)."""
    path = Path(path)
    if not path.is_file():
        raise TermFileError(f"The term file {path} does not exist.")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise TermFileError(f"The term file {path} is not UTF-8 text ({err}).") from None
    return parse_term_lines(text.splitlines(), str(path))


def exit_on_term_file_error(err: TermFileError) -> None:
    """Print the error unwrapped (file and line stay on one line) and exit 1."""
    msg.fail("Bad term file")
    print(str(err))
    sys.exit(1)


def warn_term_list(terms: TermList) -> None:
    """Print a warning for the terms listed with conflicting types."""
    if terms.conflicts:
        examples = "; ".join(f"{key!r}: {', '.join(types)}" for key, types in list(terms.conflicts.items())[:5])
        msg.warn(
            f"{len(terms.conflicts)} term(s) are listed with conflicting types; the first type "
            f"listed is used for each (e.g. {examples})"
        )
    if terms.duplicates:
        msg.info(f"{terms.duplicates} duplicate line(s) (same term and type) skipped")


_PUNCT_TOKENS = re.compile(r"\w+|[^\w\s]")


def term_tokenizations(term: str, nlp: Language) -> List[List[str]]:
    """The distinct token sequences a term is matched as (see the module
    docstring): whitespace, spaCy's tokenizer, punctuation split."""
    variants = [term.split(), [t.text for t in nlp.make_doc(term) if not t.is_space], _PUNCT_TOKENS.findall(term)]
    unique: List[List[str]] = []
    for tokens in variants:
        if tokens and tokens not in unique:
            unique.append(tokens)
    return unique


def is_abbreviation(term: str) -> bool:
    """A term with letters, none of them lower case ("WAS", "AT", "G6PD")."""
    return any(char.isalpha() for char in term) and not any(char.islower() for char in term)


class DictionaryMatcher:
    """Longest non-overlapping, case-insensitive matches of a term list.

    exact_case_abbreviations (bool): match the terms written without lower
        case letters (abbreviations such as "WAS" or "AT") only as written,
        so that they do not match common words ("was", "at").
    """

    def __init__(self, terms: TermList, nlp: Optional[Language] = None, *, exact_case_abbreviations: bool = False):
        import spacy
        from spacy.matcher import PhraseMatcher

        self.nlp = nlp if nlp is not None else spacy.blank("en")
        self.labels = sorted({label for label, _ in terms.terms})
        self.matcher = PhraseMatcher(self.nlp.vocab, attr="LOWER")
        self.exact_matcher = PhraseMatcher(self.nlp.vocab, attr="ORTH")
        patterns: Dict[Tuple[bool, str], List[Doc]] = defaultdict(list)
        for label, term in terms.terms:
            exact = exact_case_abbreviations and is_abbreviation(term)
            for tokens in term_tokenizations(term, self.nlp):
                patterns[exact, label].append(Doc(self.nlp.vocab, words=tokens))
        for (exact, label), docs in patterns.items():
            (self.exact_matcher if exact else self.matcher).add(label, docs)
        self.crossing_sentences = 0

    def __call__(self, doc: Doc) -> List[Span]:
        """The matches in `doc` (whose vocab must be this matcher's), longest
        first where they overlap, in text order; a match that crosses a
        sentence boundary is dropped (and counted)."""
        from spacy.util import filter_spans

        spans = list(self.matcher(doc, as_spans=True))
        if len(self.exact_matcher):
            spans += self.exact_matcher(doc, as_spans=True)
        if doc.has_annotation("SENT_START"):
            # before choosing the longest: a dropped match hides nothing
            kept = [s for s in spans if not any(token.is_sent_start for token in s[1:])]
            self.crossing_sentences += len(spans) - len(kept)
            spans = kept
        spans = filter_spans(spans)
        return sorted(spans, key=lambda span: (span.start, span.end))


def has_gold(doc: Doc, spans_key: str) -> bool:
    """Whether a doc carries gold annotation (the span group, or IOB tags)."""
    return spans_key in doc.spans or doc.has_annotation("ENT_IOB")


def gold_keys(doc: Doc, spans_key: str) -> Set[SpanKey]:
    """The gold mentions of a doc as (start, end, label) keys."""
    return {(s.start, s.end, s.label_) for s in get_gold_spans(doc, spans_key)}


def _prf(score: PRFScore) -> Dict[str, object]:
    return {
        "p": round(100 * score.precision, 2),
        "r": round(100 * score.recall, 2),
        "f": round(100 * score.fscore, 2),
        "tp": score.tp,
        "n_predicted": score.tp + score.fp,
        "n_gold": score.tp + score.fn,
    }


def score_spans(predicted: Sequence[Set[SpanKey]], gold: Sequence[Set[SpanKey]]) -> Dict[str, object]:
    """Exact-match P/R/F (percent) of predicted against gold mentions, one
    set of (start, end, label) per doc: micro over all types, and per type,
    counted by spaCy's PRFScore (as Scorer.score_spans does), with the counts.

    RETURNS (Dict[str, object]): p, r, f, tp, n_predicted, n_gold, per_type.
    """
    total = PRFScore()
    per_type: Dict[str, PRFScore] = defaultdict(PRFScore)
    for pred_keys, gold_keys_ in zip(predicted, gold):
        total.score_set(set(pred_keys), set(gold_keys_))
        for label in {key[2] for key in pred_keys | gold_keys_}:
            per_type[label].score_set(
                {key for key in pred_keys if key[2] == label}, {key for key in gold_keys_ if key[2] == label}
            )
    return {**_prf(total), "per_type": {label: _prf(score) for label, score in sorted(per_type.items())}}


@dataclass
class LabelingResult:
    """What `label_docs` did: the relabeled docs, mention counts per type,
    and the scores against the input's gold (None without gold)."""

    docs: List[Doc]
    n_labeled_docs: int
    mentions: Dict[str, int]
    scores: Optional[Dict[str, object]]
    crossing_sentences: int


def label_docs(docs: Iterable[Doc], matcher: DictionaryMatcher, spans_key: str = "sc") -> LabelingResult:
    """Replace the gold of each doc by the dictionary matches, in place: the
    matches go to doc.ents (tokens outside them become O) and
    doc.spans[spans_key]; other span groups are removed, so that no gold
    stays behind. Tokens and sentence boundaries are unchanged."""
    docs = list(docs)
    with_gold = any(has_gold(doc, spans_key) for doc in docs)
    predicted: List[Set[SpanKey]] = []
    gold: List[Set[SpanKey]] = []
    mentions: Counter = Counter()
    n_labeled = 0
    matcher.crossing_sentences = 0
    for doc in docs:
        if with_gold:
            gold.append(gold_keys(doc, spans_key))
        spans = matcher(doc)
        doc.spans.clear()
        doc.set_ents(spans, default="outside")
        doc.spans[spans_key] = spans
        predicted.append({(s.start, s.end, s.label_) for s in spans})
        mentions.update(s.label_ for s in spans)
        n_labeled += bool(spans)
    return LabelingResult(
        docs=docs,
        n_labeled_docs=n_labeled,
        mentions=dict(sorted(mentions.items())),
        scores=score_spans(predicted, gold) if with_gold else None,
        crossing_sentences=matcher.crossing_sentences,
    )


def label_docbin(
    terms: TermList,
    input_path: Path,
    output_path: Optional[Path],
    spans_key: str = "sc",
    *,
    exact_case_abbreviations: bool = False,
) -> LabelingResult:
    """Read a DocBin, label it with the terms, write it (if `output_path`)."""
    import spacy

    nlp = spacy.blank("en")
    docs = list(DocBin().from_disk(input_path).get_docs(nlp.vocab))
    matcher = DictionaryMatcher(terms, nlp, exact_case_abbreviations=exact_case_abbreviations)
    result = label_docs(docs, matcher, spans_key)
    if output_path is not None:
        output_path.parent.mkdir(parents=True, exist_ok=True)
        DocBin(docs=result.docs, store_user_data=False).to_disk(output_path)
    return result


def print_result(result: LabelingResult, input_path: Path) -> None:
    """Counts per type and, with gold, the P/R/F table."""
    n_docs = len(result.docs)
    msg.info(f"{result.n_labeled_docs} of {n_docs} docs got at least one distant label")
    total = sum(result.mentions.values())
    print(f"distant mentions: {total}")
    for label, count in result.mentions.items():
        print(f"  {label}: {count}")
    if result.crossing_sentences:
        msg.warn(f"{result.crossing_sentences} match(es) crossing a sentence boundary were dropped")
    if result.scores is None:
        msg.info(f"{input_path} has no gold annotation: no scores")
        return
    scores = result.scores
    rows = [(label, s["p"], s["r"], s["f"], s["n_gold"]) for label, s in scores["per_type"].items()]  # type: ignore[union-attr]
    rows.append(("total (micro)", scores["p"], scores["r"], scores["f"], scores["n_gold"]))
    msg.table(rows, header=("Type", "P", "R", "F", "Gold"), aligns=("l", "r", "r", "r", "r"),
              title=f"Distant labels against the gold of {input_path}")  # fmt: skip


def main(
    dictionary: Path = typer.Argument(..., help="Term file: TYPE<TAB>term per line", dir_okay=False),
    input_path: Path = typer.Argument(..., help="Input .spacy (its gold, if any, is only used for scoring)", exists=True, dir_okay=False),
    output_path: Path = typer.Argument(..., help="Output .spacy with the distant labels", dir_okay=False),
    spans_key: str = typer.Option("sc", "--spans-key", help="doc.spans key for the labels (and of the input's gold)"),
    scores_output: Optional[Path] = typer.Option(None, "--scores-output", help="Write counts and P/R/F against the input's gold as JSON"),
    exact_case: str = typer.Option("false", "--exact-case-abbreviations", help="true: terms without lower-case letters (WAS, AT) match only as written"),
) -> None:
    """Label a corpus with the longest non-overlapping dictionary matches."""
    exact_case_abbreviations = parse_bool(exact_case)
    try:
        terms = read_term_file(dictionary)
    except TermFileError as err:
        exit_on_term_file_error(err)
    counts = terms.counts()
    msg.info(f"{len(terms.terms)} terms from {dictionary}: {counts}")
    warn_term_list(terms)
    result = label_docbin(terms, input_path, output_path, spans_key, exact_case_abbreviations=exact_case_abbreviations)
    print_result(result, input_path)
    msg.good(f"Wrote {len(result.docs)} docs to {output_path}")
    if scores_output is not None:
        scores_output.parent.mkdir(parents=True, exist_ok=True)
        srsly.write_json(
            scores_output,
            {
                "dictionary": str(dictionary),
                "input": str(input_path),
                "n_terms": len(terms.terms),
                "exact_case_abbreviations": exact_case_abbreviations,
                "terms_per_type": counts,
                "conflicting_terms": len(terms.conflicts),
                "n_docs": len(result.docs),
                "n_labeled_docs": result.n_labeled_docs,
                "mentions": result.mentions,
                "scores": result.scores,
            },
        )
        msg.good(f"Saved {scores_output}")


if __name__ == "__main__":
    typer.run(main)

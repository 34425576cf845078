"""Make a term list (`TYPE<TAB>term` per line) for distant supervision.

By default it is built from the gold mentions of a converted split, to
simulate a curated dictionary of the domain: one line per distinct term
(compared case-insensitively; the most frequent spelling is written), sorted
by type and term. A term seen with several types gets the most frequent one
(ties: the first type in alphabetical order). Terms are written as their
tokens joined by single spaces, so distant_labels.py matches them on the
corpus's own tokens.

With `--user-file PATH` (a non-empty path), no term list is built: the
user's file is checked (distant_labels.py's rules) and written to the output
in the same sorted form. This lets a spaCy project command take either a
user's dictionary or the corpus.
"""
from collections import Counter, defaultdict
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple

import typer
from spacy.tokens import Doc, DocBin
from wasabi import msg

from distant_labels import (
    TermFileError,
    TermList,
    exit_on_term_file_error,
    gold_keys,
    normalize_term,
    read_term_file,
    warn_term_list,
)


def collect_terms(docs: Iterable[Doc], spans_key: str = "sc", min_count: int = 1) -> Tuple[TermList, int]:
    """The gold mentions of `docs` as a term list.

    docs (Iterable[Doc]): Docs with gold in doc.spans[spans_key] or doc.ents.
    spans_key (str): The span group of the gold.
    min_count (int): Keep terms seen at least this often (any spelling).
    RETURNS (Tuple[TermList, int]): The terms, sorted by type and term, and
        the number of terms seen with more than one type.
    """
    spellings: Dict[str, Counter] = defaultdict(Counter)
    types: Dict[str, Counter] = defaultdict(Counter)
    for doc in docs:
        for start, end, label in gold_keys(doc, spans_key):
            term = " ".join(" ".join(token.text.split()) for token in doc[start:end] if token.text.strip())
            key = normalize_term(term)
            if not key:
                continue
            spellings[key][term] += 1
            types[key][label] += 1
    terms: List[Tuple[str, str]] = []
    ambiguous = 0
    for key, per_type in types.items():
        if sum(per_type.values()) < min_count:
            continue
        ambiguous += len(per_type) > 1
        label = min(per_type, key=lambda t: (-per_type[t], t))
        spelling = min(spellings[key], key=lambda s: (-spellings[key][s], s))
        terms.append((label, spelling))
    terms.sort(key=lambda item: (item[0], item[1].lower(), item[1]))
    return TermList(terms=terms), ambiguous


def sorted_terms(terms: TermList) -> TermList:
    """The same terms sorted by type and term."""
    ordered = sorted(terms.terms, key=lambda item: (item[0], item[1].lower(), item[1]))
    return TermList(terms=ordered, duplicates=terms.duplicates, conflicts=terms.conflicts)


def write_term_file(terms: TermList, path: Path, header: str) -> None:
    """Write `# header` and one TYPE<TAB>term line per term."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"# {line}" for line in header.splitlines()] + [f"{label}\t{term}" for label, term in terms.terms]
    path.write_text("\n".join(lines) + "\n", encoding="utf8")


def print_counts(terms: TermList) -> None:
    print(f"terms: {len(terms.terms)}")
    for label, count in terms.counts().items():
        print(f"  {label}: {count}")


def main(
    corpus_path: Path = typer.Argument(..., help="Converted split (.spacy) with gold mentions", dir_okay=False),
    output_path: Path = typer.Argument(..., help="Output term file (TYPE<TAB>term)", dir_okay=False),
    spans_key: str = typer.Option("sc", "--spans-key", help="doc.spans key of the gold (else doc.ents)"),
    min_count: int = typer.Option(1, "--min-count", min=1, help="Keep terms seen at least this many times"),
    user_file: Optional[str] = typer.Option(None, "--user-file", help="Use this term file instead of the corpus (empty: build from the corpus)"),
) -> None:
    """Build a term list from a corpus's gold mentions (or check a user's)."""
    if user_file:
        try:
            terms = read_term_file(user_file)
        except TermFileError as err:
            exit_on_term_file_error(err)
        warn_term_list(terms)
        terms = sorted_terms(terms)
        write_term_file(terms, output_path, f"term list from {user_file}\nTYPE<TAB>term, one per line")
        msg.good(f"Checked {user_file}; wrote {len(terms.terms)} terms to {output_path}")
        print_counts(terms)
        return
    if not corpus_path.is_file():
        msg.fail(f"{corpus_path} does not exist", "Run the convert step first", exits=1)
    import spacy

    docs = DocBin().from_disk(corpus_path).get_docs(spacy.blank("en").vocab)
    terms, ambiguous = collect_terms(docs, spans_key, min_count)
    if not terms.terms:
        msg.fail(f"No gold mention in {corpus_path} was seen {min_count} time(s) or more", "Lower --min-count", exits=1)
    header = (
        f"term list from the gold mentions of {corpus_path} (min count {min_count})\n"
        "TYPE<TAB>term, one per line"
    )
    write_term_file(terms, output_path, header)
    msg.good(f"Wrote {len(terms.terms)} terms to {output_path}")
    if ambiguous:
        msg.warn(f"{ambiguous} term(s) were seen with more than one type; each got its most frequent type")
    print_counts(terms)


if __name__ == "__main__":
    typer.run(main)

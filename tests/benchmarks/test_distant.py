"""Distant supervision: the term file, dictionary matching and its scores,
the comparison script, and the `distant` project workflow on a slice of
NCBI-disease."""
import subprocess
import sys
from pathlib import Path

import pytest
import spacy
import srsly
from spacy.tokens import Doc, DocBin, Span

from projects import copy_project, make_mirror, needs_data, run_project
from util import load_script, script_path

_compare, _labels, _dictionary = load_script("distant_compare.py"), load_script("distant_labels.py"), load_script("make_dictionary.py")
rows_to_markdown = _compare.rows_to_markdown
DictionaryMatcher, TermFileError, TermList = _labels.DictionaryMatcher, _labels.TermFileError, _labels.TermList
label_docs, parse_term_lines, read_term_file = _labels.label_docs, _labels.parse_term_lines, _labels.read_term_file
score_spans, warn_term_list = _labels.score_spans, _labels.warn_term_list
collect_terms, write_term_file = _dictionary.collect_terms, _dictionary.write_term_file



# -- the term file ------------------------------------------------------------


@pytest.mark.parametrize(
    "line,problem",
    [
        ("Disease breast cancer", "found no tab"),
        ("Disease\tbreast\tcancer", "found 2"),
        ("\tbreast cancer", "TYPE before the tab is empty"),
        ("Rare Disease\tbreast cancer", "contains whitespace"),
        ("Disease\t   ", "term after the tab is empty"),
    ],
)
def test_malformed_line_names_file_line_and_problem(line: str, problem: str) -> None:
    lines = ["# a comment", "", "Disease\tcancer", line]
    with pytest.raises(TermFileError) as err:
        parse_term_lines(lines, "terms.tsv")
    assert "terms.tsv, line 4: " in str(err.value) and problem in str(err.value)


def test_every_malformed_line_is_reported_and_empty_files_fail(tmp_path: Path) -> None:
    with pytest.raises(TermFileError) as err:
        parse_term_lines(["no tab here", "Disease\tok", "\tx", "also no tab"], "t.tsv")
    message = str(err.value)
    assert message.startswith("3 malformed line(s)")
    assert "t.tsv, line 1:" in message and "t.tsv, line 3:" in message and "t.tsv, line 4:" in message
    with pytest.raises(TermFileError, match="has no terms"):
        parse_term_lines(["# only a comment", "   "], "empty.tsv")
    with pytest.raises(TermFileError, match="does not exist"):
        read_term_file(tmp_path / "missing.tsv")
    # UTF-8 with a BOM and Windows line ends are fine
    path = tmp_path / "bom.tsv"
    path.write_bytes("\ufeffDisease\tBehçet disease\r\nDisease\tcancer\r\n".encode("utf8"))
    assert read_term_file(path).terms == [("Disease", "Behçet disease"), ("Disease", "cancer")]


def test_conflicting_types_are_counted_and_warned(capsys) -> None:
    terms = parse_term_lines(
        ["Disease\tcancer", "Gene\tCancer", "Disease\tCANCER", "Disease\t breast   cancer ", "Disease\tbreast cancer"],
        "t.tsv",
    )
    # the first type listed wins; the same term and type again is a duplicate
    assert terms.terms == [("Disease", "cancer"), ("Disease", "breast cancer")]
    assert terms.conflicts == {"cancer": ["Disease", "Gene"]} and terms.duplicates == 2
    warn_term_list(terms)
    out = capsys.readouterr().out
    assert "1 term(s) are listed with conflicting types" in out and "'cancer': Disease, Gene" in out


def test_cli_rejects_a_malformed_term_file(tmp_path: Path) -> None:
    terms = tmp_path / "terms.tsv"
    terms.write_text("Disease\tcancer\nDisease cancer of the breast\n", encoding="utf8")
    nlp = spacy.blank("en")
    DocBin(docs=[Doc(nlp.vocab, words=["cancer"])]).to_disk(tmp_path / "in.spacy")
    result = subprocess.run(
        [sys.executable, str(script_path("distant_labels.py")), str(terms), str(tmp_path / "in.spacy"),
         str(tmp_path / "out.spacy")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 1 and f"{terms}, line 2: expected TYPE<TAB>term, found no tab" in output
    assert not (tmp_path / "out.spacy").exists()


# -- matching and scores --------------------------------------------------------


def _terms(*pairs) -> TermList:
    return TermList(terms=list(pairs))


def _doc(nlp, words, gold=(), sent_starts=None) -> Doc:
    doc = Doc(nlp.vocab, words=words, sent_starts=sent_starts)
    spans = [Span(doc, s, e, label=label) for s, e, label in gold]
    doc.ents = spans
    doc.spans["sc"] = spans
    return doc


def test_longest_non_overlapping_case_insensitive_matches() -> None:
    nlp = spacy.blank("en")
    matcher = DictionaryMatcher(_terms(("Disease", "cancer"), ("Disease", "breast cancer")), nlp)
    doc = Doc(nlp.vocab, words=["Breast", "Cancer", "and", "CANCER", "of", "the", "breast", "."])
    assert [(s.start, s.end, s.label_) for s in matcher(doc)] == [(0, 2, "Disease"), (3, 4, "Disease")]
    # a term written as plain text matches a corpus that splits punctuation
    matcher = DictionaryMatcher(_terms(("Disease", "Wiskott-Aldrich syndrome"), ("Disease", "ataxia (AT)")), nlp)
    doc = Doc(nlp.vocab, words="the wiskott - aldrich syndrome and ataxia ( AT )".split())
    assert [(s.start, s.end) for s in matcher(doc)] == [(1, 5), (6, 10)]


def test_exact_case_abbreviations() -> None:
    nlp = spacy.blank("en")
    terms = _terms(("Disease", "WAS"), ("Disease", "Huntington disease"))
    doc = Doc(nlp.vocab, words="WAS was linked to huntington DISEASE".split())
    assert [(s.start, s.end) for s in DictionaryMatcher(terms, nlp)(doc)] == [(0, 1), (1, 2), (4, 6)]
    exact = DictionaryMatcher(terms, nlp, exact_case_abbreviations=True)
    assert [(s.start, s.end) for s in exact(doc)] == [(0, 1), (4, 6)]


def test_labels_replace_the_gold_and_keep_tokens_and_sentences() -> None:
    nlp = spacy.blank("en")
    words = ["Breast", "cancer", "is", "common", ".", "Colon", "cancer", "too", "."]
    doc = _doc(nlp, words, gold=[(0, 2, "Disease"), (5, 7, "Disease")], sent_starts=[True] + [False] * 4 + [True] + [False] * 3)
    doc.spans["other"] = [Span(doc, 2, 3, "X")]
    matcher = DictionaryMatcher(_terms(("Disease", "cancer"), ("Disease", "breast cancer"), ("Disease", "common . colon")), nlp)
    result = label_docs([doc], matcher, "sc")
    assert [t.text for t in doc] == words
    assert [t.is_sent_start for t in doc] == [True] + [False] * 4 + [True] + [False] * 3
    expected = [(0, 2, "Disease"), (6, 7, "Disease")]
    assert [(s.start, s.end, s.label_) for s in doc.ents] == expected
    assert [(s.start, s.end, s.label_) for s in doc.spans["sc"]] == expected
    assert list(doc.spans) == ["sc"] and doc[2].ent_iob_ == "O"
    # "common . colon" crosses the sentence boundary: dropped and counted
    assert result.crossing_sentences == 1
    assert result.mentions == {"Disease": 2} and result.n_labeled_docs == 1
    # against the gold: 1 of 2 right, 1 of 2 found
    assert (result.scores["p"], result.scores["r"], result.scores["f"]) == (50.0, 50.0, 50.0)
    # the relabeled doc round-trips through a DocBin
    (back,) = DocBin().from_bytes(DocBin(docs=[doc]).to_bytes()).get_docs(nlp.vocab)
    assert [(s.start, s.end) for s in back.spans["sc"]] == [(0, 2), (6, 7)] and back.has_annotation("SENT_START")


def test_distant_precision_and_recall_against_gold() -> None:
    nlp = spacy.blank("en")
    terms = _terms(("Disease", "cancer"), ("Disease", "breast cancer"), ("Gene", "BRCA1"))
    docs = [
        # gold: "BRCA1" (Gene), "breast cancer"; matched: both, exactly
        _doc(nlp, "BRCA1 causes breast cancer".split(), [(0, 1, "Gene"), (2, 4, "Disease")]),
        # gold: "ovarian cancer" (the dictionary only knows "cancer": boundary
        # error), "ataxia" (unknown term); matched: "cancer" (wrong span)
        _doc(nlp, "ovarian cancer and ataxia".split(), [(0, 2, "Disease"), (3, 4, "Disease")]),
        # no gold; matched: "cancer" (a false positive)
        _doc(nlp, "cancer genes".split()),
    ]
    result = label_docs(docs, DictionaryMatcher(terms, nlp), "sc")
    scores = result.scores
    assert (scores["tp"], scores["n_predicted"], scores["n_gold"]) == (2, 4, 4)
    assert (scores["p"], scores["r"], scores["f"]) == (50.0, 50.0, 50.0)
    assert scores["per_type"]["Gene"] == {"p": 100.0, "r": 100.0, "f": 100.0, "tp": 1, "n_predicted": 1, "n_gold": 1}
    disease = scores["per_type"]["Disease"]
    assert (disease["p"], disease["r"], disease["f"]) == (33.33, 33.33, 33.33)
    assert score_spans([set()], [set()])["f"] == 0.0
    # without gold annotation in the input: no scores
    raw = [Doc(nlp.vocab, words="breast cancer".split())]
    assert label_docs(raw, DictionaryMatcher(terms, nlp), "sc").scores is None


def test_dictionary_from_gold_mentions(tmp_path: Path) -> None:
    nlp = spacy.blank("en")
    docs = [
        _doc(nlp, "Breast cancer and BRCA1".split(), [(0, 2, "Disease"), (3, 4, "Gene")]),
        _doc(nlp, "breast cancer , breast cancer".split(), [(0, 2, "Disease"), (3, 5, "Disease")]),
        _doc(nlp, "Wiskott - Aldrich syndrome".split(), [(0, 4, "Disease")]),
        _doc(nlp, "BRCA1 BRCA1 BRCA1".split(), [(0, 1, "Disease"), (1, 2, "Gene"), (2, 3, "Gene")]),
    ]
    terms, ambiguous = collect_terms(docs, "sc", min_count=1)
    # one line per term, whatever its case: the commonest spelling and type
    assert terms.terms == [
        ("Disease", "breast cancer"),
        ("Disease", "Wiskott - Aldrich syndrome"),
        ("Gene", "BRCA1"),
    ]
    assert ambiguous == 1
    terms2, _ = collect_terms(docs, "sc", min_count=2)
    assert terms2.terms == [("Disease", "breast cancer"), ("Gene", "BRCA1")]
    path = tmp_path / "dict.tsv"
    write_term_file(terms, path, "test\nsecond line")
    assert path.read_text(encoding="utf8").startswith("# test\n# second line\nDisease\tbreast cancer\n")
    assert read_term_file(path).terms == terms.terms
    # the list matches the corpus it came from on its own tokens
    relabeled = label_docs(docs[:3], DictionaryMatcher(read_term_file(path), nlp), "sc")
    assert relabeled.scores["r"] == 100.0


# -- the comparison script ------------------------------------------------------


def test_markdown_table() -> None:
    rows = [
        {"system": "dictionary", "labels": "distant", "variant": "matcher", "output": "dictionary matches", "p": 80.0, "r": 50.0, "f": 61.54},
        {"system": "binder_ner", "labels": "gold", "variant": "default", "output": "doc.ents", "p": 1.0, "r": 2.0, "f": 3.0, "dev_gold_f": 4.567, "train_seconds": 12.3},
    ]  # fmt: skip
    lines = rows_to_markdown(rows, "T").splitlines()
    assert lines[0] == "### T"
    assert lines[-2] == "| dictionary | distant labels | matcher | dictionary matches | 80.00 | 50.00 | **61.54** |  |  |"
    assert lines[-1] == "| binder_ner | gold labels | default | doc.ents | 1.00 | 2.00 | **3.00** | 4.57 | 12 |"


def test_distant_workflow_dry_run(tmp_path: Path) -> None:
    copy_project(tmp_path)
    result = run_project(["run", "distant", str(tmp_path / "benchmarks"), "--dry"], tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "distant_compare.py" in result.stdout and "--user-file ''" in result.stdout


# -- end to end ------------------------------------------------------------------


@pytest.mark.slow
@needs_data
def test_distant_workflow_end_to_end(tmp_path: Path) -> None:
    """`spacy project run distant` in benchmarks/ on a slice of NCBI-disease
    (converted by its first step, `corpora`, in the user project) with the tiny config: every
    system and label source gets a row with sane scores."""
    copy_project(tmp_path, tiny=True)
    project_dir = tmp_path / "benchmarks"
    mirror = make_mirror(tmp_path / "mirror")
    args = [
        "run", "distant", str(project_dir), "--vars.verify_checksums", "false",
        "--vars.distant_min_count", "1",
        "--vars.distant_epochs", "2",
        "--vars.distant_learn_rate", "0.003",
        "--vars.distant_eval_frequency", "10",
    ]  # fmt: skip
    result = run_project(args, mirror)
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]
    rows = srsly.read_json(project_dir / "metrics" / "distant.json")
    keys = [(row["system"], row["labels"], row["variant"]) for row in rows]
    assert keys == [
        ("dictionary", "distant", "matcher"),
        ("spacy_ner", "distant", "default"),
        ("binder_ner", "distant", "default"),
        ("binder_ner", "gold", "default"),
    ]
    for row in rows:
        assert all(0.0 <= row[k] <= 100.0 for k in ("p", "r", "f")), row
        assert row["dataset"] == "ncbi_disease"
    # test terms are partly unseen in train
    assert rows[0]["r"] < 100.0 and rows[0]["n_terms"] > 0
    assert rows[1]["epochs"] == rows[3]["epochs"] == 2
    # binder_ner rows are also scored on the gold dev split
    assert all(0.0 <= row["dev_gold_f"] <= 100.0 for row in rows if row["system"] == "binder_ner")
    assert "dev_gold_f" not in rows[1]
    assert "| binder_ner | gold labels | default |" in (project_dir / "metrics" / "distant.md").read_text()
    label_scores = srsly.read_json(project_dir / "metrics" / "distant_labels_train.json")
    assert label_scores["scores"]["r"] > 50.0 and label_scores["n_docs"] == 80
    # the training data has no gold left: only dictionary matches
    nlp = spacy.blank("en")
    lines = (project_dir / "corpus" / "ncbi_disease" / "distant" / "dictionary.tsv").read_text().splitlines()
    terms = {line.split("\t")[1].replace(" ", "").lower() for line in lines if not line.startswith("#")}
    for doc in DocBin().from_disk(project_dir / "corpus" / "ncbi_disease" / "distant" / "dev.spacy").get_docs(nlp.vocab):
        assert all("".join(t.text for t in span).lower() in terms for span in doc.ents)

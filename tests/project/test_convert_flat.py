"""Flat-corpus converters (project/scripts): NCBI-disease and CoNLL-2003.

The corpus counts are the ones in shared/data/PROVENANCE.md (sections 1, 3).
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import spacy
import typer
from spacy.tokens import Doc, DocBin
from typer.testing import CliRunner

from projects import REPO as ROOT
from spacy_binder.corpora import FormatError
from spacy_binder.corpora.iob import tags_to_spans
from util import load_script, script_path

convert_conll_file = load_script("convert_conll03.py").convert_conll_file
convert_ncbi_file = load_script("convert_ncbi.py").convert_ncbi_file

DATA = Path(os.environ.get("BINDER_DATA_MIRROR") or ROOT.parent / "shared" / "data")

NCBI = {  # split: (file, sentences, tokens, entities)
    "train": ("train.tsv", 5424, 135701, 5134),
    "dev": ("devel.tsv", 923, 23969, 787),
    "test": ("test.tsv", 940, 24497, 960),
}
CONLL = {  # split: (file, docs, sentences, tokens, {type: entities})
    "train": ("eng.train", 946, 14041, 203621, {"PER": 6600, "ORG": 6321, "LOC": 7140, "MISC": 3438}),
    "dev": ("eng.testa", 216, 3250, 51362, {"PER": 1842, "ORG": 1341, "LOC": 1837, "MISC": 922}),
    "test": ("eng.testb", 231, 3453, 46435, {"PER": 1617, "ORG": 1661, "LOC": 1668, "MISC": 702}),
}
CONLL_TOTALS = {"train": 23499, "dev": 5942, "test": 5648}

# IOB1 with the copy's quirks: no leading -DOCSTART-, an empty article, extra
# blank lines, a -DOCSTART- straight after a token line, no final newline.
TINY_CONLL = """U.N. NNP I-NP I-ORG
official NN I-NP O
Ekeus NNP I-NP I-PER
heads VBZ I-VP O
. . O O

Germany NNP I-NP I-LOC
France NNP I-NP B-LOC
Italy NNP I-NP I-LOC
Reuters NNP I-NP I-ORG
John NNP I-NP I-PER
Smith NNP I-NP I-PER
Smith NNP I-NP B-PER

-DOCSTART- -X- O O

-DOCSTART- -X- O O


Only RB I-ADVP O
news NN I-NP I-MISC
-DOCSTART- -X- -X- O"""
TINY_SENTS = [
    (["U.N.", "official", "Ekeus", "heads", "."], [(0, 1, "ORG"), (2, 3, "PER")]),
    (
        ["Germany", "France", "Italy", "Reuters", "John", "Smith", "Smith"],
        [(0, 1, "LOC"), (1, 3, "LOC"), (3, 4, "ORG"), (4, 6, "PER"), (6, 7, "PER")],
    ),
    (["Only", "news"], [(1, 2, "MISC")]),
]
# IOB2 with two repairs: I-Disease after O, I-Other after B-Disease.
TINY_NCBI = "A\tO\nB\tI-Disease\nC\tI-Disease\nD\tB-Disease\nE\tI-Disease\nF\tO\n\n\nG\tB-Disease\nH\tI-Other\nI\tI-Other"


def data_file(*parts: str) -> Path:
    path = DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"corpus file {path} not found (set BINDER_DATA_MIRROR)")
    return path


def signature(doc: Doc, key: str = "sc"):
    return (
        [t.text for t in doc],
        doc.text,
        [t.is_sent_start for t in doc] if doc.has_annotation("SENT_START") else None,
        [(e.start, e.end, e.label_) for e in doc.ents],
        [(s.start, s.end, s.label_) for s in doc.spans[key]],
    )


def ent_tuples(doc: Doc):
    return [(e.start, e.end, e.label_) for e in doc.ents]


@pytest.fixture(scope="module")
def vocab():
    return spacy.blank("en").vocab


@pytest.fixture(scope="module", params=list(NCBI))
def ncbi(request, vocab):
    split = request.param
    return split, convert_ncbi_file(data_file("ncbi_disease", NCBI[split][0]), vocab)


@pytest.fixture(scope="module", params=list(CONLL))
def conll(request, vocab):
    split = request.param
    path = data_file("conll2003", CONLL[split][0])
    articles = convert_conll_file(path, vocab)
    sentences = convert_conll_file(path, vocab, one_doc_per_sentence=True)
    return split, articles, sentences


@pytest.fixture(scope="module")
def cli_runs(tmp_path_factory):
    """Run the CLIs concurrently (interpreter start-up dominates)."""
    tmp = tmp_path_factory.mktemp("cli")
    commands = {
        "ncbi": ["convert_ncbi.py", str(data_file("ncbi_disease", "devel.tsv")), str(tmp / "ncbi.spacy")],
        "conll": ["convert_conll03.py", str(data_file("conll2003", "eng.testb")), str(tmp / "out" / "conll.spacy"),
                  "--sentences", "--spans-key", "gold"],
    }
    procs = {
        name: subprocess.Popen([sys.executable, str(script_path(cmd[0])), *cmd[1:]], cwd=str(ROOT),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for name, cmd in commands.items()
    }
    results = {name: (proc.communicate(timeout=300)[0], proc.returncode) for name, proc in procs.items()}
    return tmp, results


def test_ncbi_counts_match_provenance(ncbi):
    split, (docs, stats) = ncbi
    _, n_sents, n_tokens, n_ents = NCBI[split]
    assert stats["sentences"] == len(docs) == n_sents
    assert stats["tokens"] == sum(len(doc) for doc in docs) == n_tokens
    assert stats["entities"] == {"Disease": n_ents}
    assert sum(len(doc.ents) for doc in docs) == n_ents
    assert stats["repairs"] == 0


def test_ncbi_spans_equal_ents(ncbi):
    for doc in ncbi[1][0]:
        assert [(s.start, s.end, s.label_) for s in doc.spans["sc"]] == ent_tuples(doc)
        assert doc.text == " ".join(t.text for t in doc)


def test_conll_counts_match_provenance(conll):
    split, (docs, stats), (sent_docs, sent_stats) = conll
    _, n_docs, n_sents, n_tokens, per_type = CONLL[split]
    for st in (stats, sent_stats):
        assert (st["docs"], st["sentences"], st["tokens"]) == (n_docs, n_sents, n_tokens)
        assert dict(st["entities"]) == per_type
        assert sum(st["entities"].values()) == CONLL_TOTALS[split]
    assert len(docs) == n_docs and len(sent_docs) == n_sents
    for group in (docs, sent_docs):
        assert sum(len(doc) for doc in group) == n_tokens
        assert sum(len(doc.ents) for doc in group) == CONLL_TOTALS[split]


def test_conll_articles_have_sentences(conll):
    _, (docs, _), (sent_docs, _) = conll
    assert all(doc.has_annotation("SENT_START") for doc in docs)
    assert sum(len(list(doc.sents)) for doc in docs) == len(sent_docs)
    assert all(len(list(doc.sents)) == 1 for doc in sent_docs)
    sentences = [sent for doc in docs for sent in doc.sents]
    assert [s.text for s in sentences] == [doc.text for doc in sent_docs]
    for doc in docs + sent_docs:
        assert [(s.start, s.end, s.label_) for s in doc.spans["sc"]] == ent_tuples(doc)


def test_conll_first_sentence(vocab):
    docs, _ = convert_conll_file(data_file("conll2003", "eng.testb"), vocab, one_doc_per_sentence=True)
    assert [t.text for t in docs[0]][:3] == ["SOCCER", "-", "JAPAN"]
    assert ent_tuples(docs[0])[0][2] == "LOC"


def test_tags_to_spans_rules():
    assert tags_to_spans(["I-A", "I-A", "B-A", "I-B", "O", "I-A", "B-A"]) == (
        [(0, 2, "A"), (2, 3, "A"), (3, 4, "B"), (5, 6, "A"), (6, 7, "A")], {"i_starts_mention": 3})
    assert tags_to_spans(["B-A", "I-A", "O", "B-A"]) == ([(0, 2, "A"), (3, 4, "A")], {})
    assert tags_to_spans([]) == ([], {})


@pytest.mark.parametrize("per_sentence", [False, True])
def test_conll_tiny_iob1(tmp_path, vocab, per_sentence):
    path = tmp_path / "tiny.conll"
    path.write_text(TINY_CONLL, encoding="utf8")
    docs, stats = convert_conll_file(path, vocab, spans_key="gold", one_doc_per_sentence=per_sentence)
    assert (stats["docs"], stats["sentences"], stats["tokens"]) == (2, 3, 14)
    assert dict(stats["entities"]) == {"ORG": 2, "PER": 3, "LOC": 2, "MISC": 1}
    if per_sentence:
        assert [([t.text for t in d], ent_tuples(d)) for d in docs] == TINY_SENTS
    else:
        words = TINY_SENTS[0][0] + TINY_SENTS[1][0]
        spans = TINY_SENTS[0][1] + [(s + 5, e + 5, label) for s, e, label in TINY_SENTS[1][1]]
        assert [([t.text for t in d], ent_tuples(d)) for d in docs] == [(words, spans), TINY_SENTS[2]]
        assert [t.i for t in docs[0] if t.is_sent_start] == [0, 5]
    for doc in docs:
        assert [(s.start, s.end, s.label_) for s in doc.spans["gold"]] == ent_tuples(doc)


def test_ncbi_tiny_repairs(tmp_path, vocab):
    path = tmp_path / "tiny.tsv"
    path.write_text(TINY_NCBI, encoding="utf8")
    docs, stats = convert_ncbi_file(path, vocab, spans_key="gold")
    assert [ent_tuples(d) for d in docs] == [[(1, 3, "Disease"), (3, 5, "Disease")],
                                              [(0, 1, "Disease"), (1, 3, "Other")]]
    assert [[(s.start, s.end, s.label_) for s in d.spans["gold"]] for d in docs] == [ent_tuples(d) for d in docs]
    assert (stats["sentences"], stats["tokens"], stats["repairs"]) == (2, 9, 2)


@pytest.mark.parametrize("text,line", [
    ("a\tO\nb\tO\textra\n", 2), ("a\tO\n\nb\tX-Disease\n", 3), ("a O\n", 1), ("a\tB-\n", 1), ("\tO\n", 1),
])
def test_ncbi_malformed(tmp_path, vocab, text, line):
    path = tmp_path / "bad.tsv"
    path.write_text(text, encoding="utf8")
    with pytest.raises(FormatError, match=rf"bad\.tsv, line {line}:"):
        convert_ncbi_file(path, vocab)


@pytest.mark.parametrize("text,line", [
    ("EU NNP I-NP I-ORG\nrejects VBZ I-VP\n", 2), ("EU NNP I-NP ORG\n", 1),
    ("-DOCSTART- -X- O O\n\nEU NNP I-NP I-ORG extra\n", 3),
])
def test_conll_malformed(tmp_path, vocab, text, line):
    path = tmp_path / "bad.conll"
    path.write_text(text, encoding="utf8")
    with pytest.raises(FormatError, match=rf"bad\.conll, line {line}:"):
        convert_conll_file(path, vocab)


def test_cli_round_trip(cli_runs, vocab):
    tmp, results = cli_runs
    for name in ("ncbi", "conll"):
        assert results[name][1] == 0, results[name][0]
    assert "sentences: 923" in results["ncbi"][0] and "Disease: 787" in results["ncbi"][0]
    assert "docs: 231" in results["conll"][0] and "sentences: 3453" in results["conll"][0]
    assert "PER: 1617" in results["conll"][0]
    ncbi_docs = convert_ncbi_file(data_file("ncbi_disease", "devel.tsv"), vocab)[0]
    conll_path = data_file("conll2003", "eng.testb")
    conll_docs = convert_conll_file(conll_path, vocab, spans_key="gold", one_doc_per_sentence=True)[0]
    for filename, expected, key in (("ncbi.spacy", ncbi_docs, "sc"), ("out/conll.spacy", conll_docs, "gold")):
        loaded = list(DocBin().from_disk(tmp / filename).get_docs(vocab))
        assert [signature(d, key) for d in loaded] == [signature(d, key) for d in expected]


def test_docbin_keeps_article_sentences(vocab):
    docs = convert_conll_file(data_file("conll2003", "eng.testa"), vocab)[0]
    loaded = list(DocBin().from_bytes(DocBin(docs=docs).to_bytes()).get_docs(vocab))
    assert [signature(d) for d in loaded] == [signature(d) for d in docs]


def test_cli_malformed_fails(tmp_path):
    import convert_ncbi

    (tmp_path / "bad.tsv").write_text("a\tO\nb\tO\textra\n", encoding="utf8")
    app = typer.Typer()
    app.command()(convert_ncbi.main)
    result = CliRunner().invoke(app, [str(tmp_path / "bad.tsv"), str(tmp_path / "bad.spacy")])
    assert result.exit_code == 1
    assert "bad.tsv, line 2:" in result.output
    assert not (tmp_path / "bad.spacy").exists()

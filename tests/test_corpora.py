"""Corpus readers (spacy_binder.corpora): each format from small files written
here, the registered readers, `spacy train` straight from the files, and the
convert command. Expected spans are worked out by hand from the inputs."""
import json
import os
import warnings
from pathlib import Path

import pytest
import spacy
from spacy.tokens import DocBin
from spacy.util import registry
from thinc.api import Config
from typer.testing import CliRunner

from spacy_binder.cli import app
from spacy_binder.corpora import FormatError, read_brat, read_iob, read_spans_jsonl, read_token_jsonl

from util import run_python

CONFIGS = Path(__file__).parent.parent / "configs"
DATA = Path(os.environ.get("BINDER_DATA_MIRROR") or Path(__file__).resolve().parent.parent.parent / "shared" / "data")

# CoNLL-2003 columns, IOB1: a whitespace-only line between the two sentences
# of the first article, -DOCSTART- in the middle, an I-PER I-PER B-PER I-PER run.
CONLL = """EU NNP B-NP I-ORG
rejects VBZ B-VP O
German JJ B-NP I-MISC
call NN I-NP O
  \t
Peter NNP B-NP I-PER
Blackburn NNP I-NP I-PER
-DOCSTART- -X- -X- O

BRUSSELS NNP B-NP I-LOC
Anna NNP B-NP I-PER
Berg NNP I-NP I-PER
Jonas NNP B-NP B-PER
Lie NNP I-NP I-PER
"""
# GermEval 2014: idx, token, outer and inner tags, '#' comment lines, tabs
GERMEVAL = (
    "# http://de.wikipedia.org/wiki/Troia [2009-10-17]\n"
    "1\tDie\tO\tO\n2\tAusstellung\tO\tO\n3\t„\tO\tO\n4\tTroia\tB-OTH\tB-LOC\n5\t-\tI-OTH\tO\n"
    "6\tTraum\tI-OTH\tO\n7\tund\tI-OTH\tO\n8\tWirklichkeit\tI-OTH\tO\n9\t“\tO\tO\n10\tin\tO\tO\n"
    "11\tStuttgart\tB-LOC\tO\n12\t.\tO\tO\n"
    " \t \n"
    "# http://de.wikipedia.org/wiki/FU [2009-10-18]\n"
    "1\tDie\tO\tO\n2\tFreie\tB-ORG\tO\n3\tUniversität\tI-ORG\tO\n4\tBerlin\tI-ORG\tB-LOC\n5\twächst\tO\tO\n"
)
# BIOES / BILOU in Cyrillic: a B-PER I-PER left open, an E-LOC that opens, a U-LOC
BIOES = (
    "Анна\tB-PER\nКаренина\tE-PER\nживёт\tO\nв\tO\nМоскве\tS-LOC\n.\tO\n\n"
    "Лев\tB-PER\nТолстой\tI-PER\nписал\tO\nо\tO\nМоскве\tE-LOC\n\n"
    "Тула\tU-LOC\n"
)

TOKEN_JSONL = "\n".join([
    json.dumps({"tokens": ["Interleukin", "2", "gene", "expression"], "entity_mentions": [
        {"start": 0, "end": 3, "type": "DNA"}, {"start": 0, "end": 2, "type": "protein"}]}),
    "",
    json.dumps({"tokens": ["IL-2", "in", "T", "cells"], "entity_mentions": [
        {"start": 2, "end": 4, "type": "cell_type"}, {"start": 2, "end": 4, "type": "cell_type"}]}),
    json.dumps({"tokens": [], "entity_mentions": []}),
]) + "\n"

BRAT_TEXT = "Anna Berg joined the University of Oslo in 2020.\n"
BRAT_ANN = "\n".join([
    "T1\tPER 0 9\tAnna Berg",
    "T2\tORG 21 39\tUniversity of Oslo",
    "T3\tLOC 35 39\tOslo",
    "T4\tORG 17 20;21 39\tthe University of Oslo",  # fragments apart by a space: joined
    "T5\tLOC 21 31;35 39\tUniversity Oslo",  # " of " between the fragments: dropped
    "T6\tPER 10 16\tBerg",  # the text at 10-16 is "joined": dropped
    "T7\tDATE 43 45\t20",  # inside the token "2020": split
    "T8\tGPE 34 39\t Oslo",  # a leading space: trimmed
    "R1\tEmployer Arg1:T1 Arg2:T2",
    "A1\tNegated T6",
    "#1\tAnnotatorNotes T1\tthe founder",
    "",
])

SPANS_JSONL = "\n".join(json.dumps(record, ensure_ascii=False) for record in [
    {"text": "Anna Berg lives in Oslo.", "answer": "accept", "spans": [
        {"start": 0, "end": 9, "label": "PER"}, {"start": 0, "end": 4, "label": "GIVEN"},
        {"start": 19, "end": 23, "label": "LOC"}]},
    {"text": "Rejected record.", "spans": [], "answer": "reject"},
    {"text": "Ignored record.", "spans": [{"start": 0, "end": 7, "label": "X"}], "answer": "ignore"},
    {"text": "New York", "spans": [[0, 8, "LOC"], [0, 3, "X"]]},  # spaCy's [start, end, label]
    {"text": "Visit Oslo ", "spans": [{"start": 5, "end": 11, "label": "LOC"}]},  # " Oslo ": trimmed
    {"text": "  ", "spans": []},
    {"text": "the CEOs", "spans": [{"start": 4, "end": 7, "label": "ROLE"}]},  # inside "CEOs": split
    {"text": "x  y", "spans": [{"start": 1, "end": 3, "label": "E"}]},  # whitespace only: dropped
]) + "\n"


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf8")
    return path


def spans_of(doc, key="sc"):
    return [(s.start, s.end, s.label_) for s in doc.spans[key]]


def ents_of(doc):
    return [(e.start, e.end, e.label_) for e in doc.ents]


def words_of(doc):
    return [t.text for t in doc]


def sent_starts(doc):
    return [t.i for t in doc if t.is_sent_start] if doc.has_annotation("SENT_START") else None


def counts(stats):
    return dict(stats.repaired), dict(stats.dropped), dict(stats.skipped)


# --- layered IOB -------------------------------------------------------------


def test_iob1_documents_and_sentences(tmp_path):
    path = write(tmp_path, "tiny.conll", CONLL)
    docs, stats = read_iob(path, spacy.blank("en").vocab, tag_columns=[3], scheme="iob1", spans_key="gold")
    assert [words_of(d) for d in docs] == [
        ["EU", "rejects", "German", "call", "Peter", "Blackburn"], ["BRUSSELS", "Anna", "Berg", "Jonas", "Lie"]]
    assert [spans_of(d, "gold") for d in docs] == [
        [(0, 1, "ORG"), (2, 3, "MISC"), (4, 6, "PER")], [(0, 1, "LOC"), (1, 3, "PER"), (3, 5, "PER")]]
    assert [ents_of(d) for d in docs] == [spans_of(d, "gold") for d in docs]
    assert [sent_starts(d) for d in docs] == [[0, 4], [0]]
    assert (stats.files, stats.documents, stats.sentences, stats.docs, stats.tokens) == (1, 2, 3, 2, 11)
    assert stats.mentions == {"ORG": 1, "MISC": 1, "PER": 3, "LOC": 1}
    assert counts(stats) == ({}, {}, {})


def test_iob_one_doc_per_sentence_and_iob2_repairs(tmp_path):
    path = write(tmp_path, "tiny.conll", CONLL)
    with pytest.warns(UserWarning, match="i_starts_mention"):
        docs, stats = read_iob(path, spacy.blank("en").vocab, tag_columns=[3], one_doc_per_sentence=True)
        stats.report(path)
    assert [spans_of(d) for d in docs] == [
        [(0, 1, "ORG"), (2, 3, "MISC")], [(0, 2, "PER")], [(0, 1, "LOC"), (1, 3, "PER"), (3, 5, "PER")]]
    assert [sent_starts(d) for d in docs] == [[0], [0], [0]]
    assert (stats.documents, stats.sentences, stats.docs) == (2, 3, 3)
    # read as IOB2, each I-X that opens a mention is a repair: I-ORG, I-MISC,
    # I-PER (first of its sentence), I-LOC and I-PER after I-LOC
    assert counts(stats) == ({"i_starts_mention": 5}, {}, {})


def test_iob_without_docstart_every_sentence_is_a_doc(tmp_path):
    path = write(tmp_path, "ncbi.tsv", "A\tO\nB\tB-Disease\n\n \n\nC\tI-Disease\nD\tI-Disease")
    docs, stats = read_iob(path, spacy.blank("en").vocab, delimiter="\t", sentence_starts=False)
    assert [(words_of(d), spans_of(d), sent_starts(d)) for d in docs] == [
        (["A", "B"], [(1, 2, "Disease")], None), (["C", "D"], [(0, 2, "Disease")], None)]
    assert (stats.documents, stats.sentences, stats.docs) == (2, 2, 2)
    assert counts(stats) == ({"i_starts_mention": 1}, {}, {})


def test_germeval_two_tag_columns_german(tmp_path):
    path = write(tmp_path, "germeval.tsv", GERMEVAL)
    docs, stats = read_iob(
        path, spacy.blank("de").vocab, token_column=1, tag_columns=[2, 3], delimiter="\t", comment_prefix="#",
    )
    assert words_of(docs[0])[3:8] == ["Troia", "-", "Traum", "und", "Wirklichkeit"]
    assert [spans_of(d) for d in docs] == [
        [(3, 4, "LOC"), (3, 8, "OTH"), (10, 11, "LOC")], [(1, 4, "ORG"), (3, 4, "LOC")]]
    assert [ents_of(d) for d in docs] == [[(3, 8, "OTH"), (10, 11, "LOC")], [(1, 4, "ORG")]]
    assert docs[1].text == "Die Freie Universität Berlin wächst"
    assert (stats.docs, stats.tokens, stats.not_in_ents) == (2, 17, 2)
    assert counts(stats) == ({}, {}, {"comment_line": 2})


def test_bioes_and_bilou_cyrillic(tmp_path):
    path = write(tmp_path, "ru.tsv", BIOES)
    docs, stats = read_iob(path, spacy.blank("ru").vocab, scheme="bioes")
    assert [spans_of(d) for d in docs] == [[(0, 2, "PER"), (4, 5, "LOC")], [(0, 2, "PER"), (4, 5, "LOC")],
                                           [(0, 1, "LOC")]]
    assert docs[0][1].text == "Каренина"
    assert counts(stats) == ({"bioes_unclosed": 1, "i_starts_mention": 1}, {}, {})


def test_iob_folder_reads_files_sorted(tmp_path):
    write(tmp_path, "b/second.tsv", "\ufeffOslo B-LOC\n")  # a byte-order mark
    write(tmp_path, "a.tsv", "Anna B-PER\n")
    write(tmp_path, ".hidden.tsv", "x B-X\n")
    docs, stats = read_iob(tmp_path, spacy.blank("en").vocab, pattern="*.tsv")
    assert [(words_of(d), spans_of(d)) for d in docs] == [(["Anna"], [(0, 1, "PER")]), (["Oslo"], [(0, 1, "LOC")])]
    assert stats.files == 2


@pytest.mark.parametrize("text,options,line,what", [
    ("a O\nb O extra\n", {}, 2, r"expected 2 columns \(line 1 has 2\), got 3: 'b O extra'$"),
    ("a O\n\nb X-PER\n", {}, 3, "unknown tag 'X-PER'"),
    ("a B-\n", {}, 1, "unknown tag 'B-'"),
    ("a E-PER\n", {}, 1, "unknown tag 'E-PER'"),  # not an IOB2 prefix
    ("1\ta\tO\tO\n2\t\tO\tO\n", {"delimiter": "\t", "token_column": 1, "tag_columns": [2, 3]}, 2, "empty token"),
    ("1\ta\tO\tO\n2\tb\tO\tI-\n", {"delimiter": "\t", "token_column": 1, "tag_columns": [2, 3]}, 2, "unknown tag"),
    ("a O O\n", {"n_columns": 2}, 1, r"expected 2 columns \(n_columns = 2\), got 3"),
    ("a\n", {"tag_columns": [1]}, 1, r"expected at least 2 columns \(token_column 0, tag_columns \[1\]\), got 1"),
    # "New York" holds a space: line 1 sets 3 columns, line 2 is blamed, the tab delimiter suggested
    ("New York\tB-LOC\nis\tO\n", {}, 2,
     r"""expected 3 columns \(line 1 has 3\), got 2: 'is\\tO'; if a token holds a space, set delimiter = "\\t" """
     r"\(convert: --delimiter tab\)$"),
])
def test_iob_malformed(tmp_path, text, options, line, what):
    path = write(tmp_path, "bad.tsv", text)
    with pytest.raises(FormatError, match=rf"bad\.tsv, line {line}: {what}"):
        read_iob(path, spacy.blank("en").vocab, **options)


# GermEval's real comment lines: '#', a tab, the source and date
GERMEVAL_TAB_COMMENTS = GERMEVAL.replace("# http", "#\thttp")
# tweets (WNUT-17 style): '#metoo' and '#' are tokens, the other '#' lines comments
TWEETS = (
    "# tweet 1 [2017-01-01]\n#metoo\tB-hashtag\nrally\tO\n#\tO\n\n"
    "#\thttp://t.co/x [2017-01-02]\nLondon\tB-location\n"
)


def test_germeval_tab_comment_lines_skipped(tmp_path):
    path = write(tmp_path, "germeval.tsv", GERMEVAL_TAB_COMMENTS)
    docs, stats = read_iob(
        path, spacy.blank("de").vocab, token_column=1, tag_columns=[2, 3], delimiter="\t", comment_prefix="#",
    )
    # as the space-separated comments of GERMEVAL: 2 fields where 4 are expected
    assert [spans_of(d) for d in docs] == [
        [(3, 4, "LOC"), (3, 8, "OTH"), (10, 11, "LOC")], [(1, 4, "ORG"), (3, 4, "LOC")]]
    assert (stats.docs, stats.tokens) == (2, 17)
    assert counts(stats) == ({}, {}, {"comment_line": 2})


@pytest.mark.parametrize("delimiter", [None, "\t"])
def test_iob_comment_prefix_keeps_token_lines(tmp_path, delimiter):
    path = write(tmp_path, "tweets.conll", TWEETS)
    docs, stats = read_iob(path, spacy.blank("en").vocab, delimiter=delimiter, comment_prefix="#")
    # line 1: its last field is no tag; lines 2 and 4: token and tag, 2 columns
    # like the file's token lines; line 6: a URL with a space is no tag
    assert [(words_of(d), spans_of(d)) for d in docs] == [
        (["#metoo", "rally", "#"], [(0, 1, "hashtag")]), (["London"], [(0, 1, "location")])]
    assert counts(stats) == ({}, {}, {"comment_line": 2})


def test_iob_columns_split_at_ascii_spaces_only(tmp_path):
    # a no-break space inside the token, a space and a tab between the columns
    path = write(tmp_path, "nbsp.tsv", "New\u00a0York\tB-LOC\nis \tO\n\u3000Oslo\u3000 B-LOC\n")
    docs, _ = read_iob(path, spacy.blank("en").vocab)
    assert [(words_of(d), spans_of(d)) for d in docs] == [
        (["New\u00a0York", "is", "\u3000Oslo\u3000"], [(0, 1, "LOC"), (2, 3, "LOC")])]


def test_iob_folder_error_names_the_pattern(tmp_path):
    write(tmp_path, "train.tsv", "Anna\tB-PER\n")
    write(tmp_path, "README", "The corpus files.\n")  # read too: pattern "*" matches it
    with pytest.raises(FormatError, match=r"README, line 1: unknown tag 'files\.'.* matches pattern '\*'"):
        read_iob(tmp_path, spacy.blank("en").vocab)
    docs, stats = read_iob(tmp_path, spacy.blank("en").vocab, pattern="*.tsv")
    assert [words_of(d) for d in docs] == [["Anna"]] and stats.files == 1


# --- token-level JSONL --------------------------------------------------------


def test_token_jsonl_nested(tmp_path):
    path = write(tmp_path, "genia.jsonl", TOKEN_JSONL)
    docs, stats = read_token_jsonl(path, spacy.blank("en").vocab)
    assert [spans_of(d) for d in docs] == [[(0, 2, "protein"), (0, 3, "DNA")], [(2, 4, "cell_type")]]
    assert [ents_of(d) for d in docs] == [[(0, 3, "DNA")], [(2, 4, "cell_type")]]
    assert docs[0].text == "Interleukin 2 gene expression" and sent_starts(docs[0]) == [0]
    assert (stats.documents, stats.docs, stats.tokens, stats.not_in_ents) == (2, 2, 8, 1)
    assert counts(stats) == ({}, {"duplicate": 1}, {"empty_record": 1})


def test_token_jsonl_other_field_names_chinese(tmp_path):
    record = {"words": ["北京", "大学", "在", "北京"],
              "entities": [{"s": 0, "e": 1, "label": "ORG"}, {"s": 0, "e": 0, "label": "LOC"},
                           {"s": 3, "e": 3, "label": "LOC"}]}
    path = write(tmp_path, "zh.json", json.dumps(record, ensure_ascii=False) + "\n")
    docs, stats = read_token_jsonl(
        path, spacy.blank("zh").vocab, tokens_field="words", mentions_field="entities", start_field="s",
        end_field="e", label_field="label", end_inclusive=True, sentence_starts=False, spans_key="nested",
    )
    assert [spans_of(d, "nested") for d in docs] == [[(0, 1, "LOC"), (0, 2, "ORG"), (3, 4, "LOC")]]
    assert ents_of(docs[0]) == [(0, 2, "ORG"), (3, 4, "LOC")]
    assert sent_starts(docs[0]) is None and stats.sentences == 0


def test_genia_reference_jsonlines_counts():
    """The pre-processed GENIA dev set gives the counts of PROVENANCE.md."""
    path = DATA / "genia" / "cnn_nested_ner_preprocessed" / "dev.jsonlines"
    if not path.exists():
        pytest.skip(f"{path} not found (set BINDER_DATA_MIRROR)")
    docs, stats = read_token_jsonl(path, spacy.blank("en").vocab, label_field="entity_type")
    assert (stats.docs, stats.tokens) == (1765, 45495)
    assert stats.mentions == {"DNA": 1161, "RNA": 139, "protein": 2466, "cell_line": 372, "cell_type": 576}
    assert counts(stats) == ({}, {}, {})


@pytest.mark.parametrize("line,what", [
    ('{"tokens": ["a"], "entity_mentions": []', "expected a JSON object"),
    ('["a"]', "expected a JSON object, got list"),
    ('{"tokens": ["a"], "entities": []}', "record has no 'entity_mentions' field"),
    ('{"tokens": ["a", ""], "entity_mentions": []}', "'tokens' must be non-blank strings"),
    ('{"tokens": ["a"], "entity_mentions": [{"start": 0, "end": 2, "type": "X"}]}', r"offsets \(0, 2\)"),
    ('{"tokens": ["a"], "entity_mentions": [{"start": 0, "end": 0, "type": "X"}]}', r"offsets \(0, 0\)"),
    ('{"tokens": ["a"], "entity_mentions": [{"start": 0, "end": 1, "label": "X"}]}', "mention has no 'type'"),
    ('{"tokens": ["a"], "entity_mentions": [{"start": "0", "end": 1, "type": "X"}]}', "'start' must be int"),
    ('{"tokens": ["a"], "entity_mentions": [{"start": 0, "end": 1, "type": " "}]}', "non-blank label"),
])
def test_token_jsonl_malformed(tmp_path, line, what):
    path = write(tmp_path, "bad.jsonl", '{"tokens": ["ok"], "entity_mentions": []}\n\n' + line + "\n")
    with pytest.raises(FormatError, match=rf"bad\.jsonl, line 3: .*{what}"):
        read_token_jsonl(path, spacy.blank("en").vocab)


@pytest.mark.parametrize("mention,what", [
    ({"start": 0, "end": 2}, r"\(0, 2\) must satisfy 0 <= start <= end < 2 \(tokens, end inclusive\)"),
    ({"start": 1, "end": 0}, r"\(1, 0\) must satisfy 0 <= start <= end < 2 \(tokens, end inclusive\)"),
    ({"start": -1, "end": 0}, r"\(-1, 0\) must satisfy"),
])
def test_token_jsonl_end_inclusive_reports_the_offsets_as_written(tmp_path, mention, what):
    line = json.dumps({"tokens": ["a", "b"], "entity_mentions": [{**mention, "type": "X"}]})
    path = write(tmp_path, "bad.jsonl", line + "\n")
    with pytest.raises(FormatError, match=rf"bad\.jsonl, line 1: mention offsets {what}"):
        read_token_jsonl(path, spacy.blank("en").vocab, end_inclusive=True)
    # the last token, inclusive: (1, 1) is the token "b"
    path = write(tmp_path, "ok.jsonl", json.dumps({"tokens": ["a", "b"], "entity_mentions": [[1, 1, "X"]]}) + "\n")
    assert spans_of(read_token_jsonl(path, spacy.blank("en").vocab, end_inclusive=True)[0][0]) == [(1, 2, "X")]


# --- brat standoff -------------------------------------------------------------


def test_brat_nested_discontinuous_and_repairs(tmp_path):
    write(tmp_path, "doc1.txt", BRAT_TEXT)
    write(tmp_path, "doc1.ann", BRAT_ANN)
    docs, stats = read_brat(tmp_path, spacy.blank("en"))
    (doc,) = docs
    # "2020" is cut at T7's end; "." and the newline are tokens of their own
    assert words_of(doc) == ["Anna", "Berg", "joined", "the", "University", "of", "Oslo", "in", "20", "20", ".", "\n"]
    assert doc.text == BRAT_TEXT
    assert spans_of(doc) == [(0, 2, "PER"), (3, 7, "ORG"), (4, 7, "ORG"), (6, 7, "GPE"), (6, 7, "LOC"), (8, 9, "DATE")]
    assert ents_of(doc) == [(0, 2, "PER"), (3, 7, "ORG"), (8, 9, "DATE")]
    assert (stats.files, stats.documents, stats.not_in_ents) == (1, 1, 3)
    assert counts(stats) == (
        {"discontinuous_joined": 1, "token_split": 1, "whitespace_trimmed": 1},
        {"discontinuous": 1, "text_mismatch": 1},
        {"brat_R_line": 1, "brat_A_line": 1, "brat_#_line": 1},
    )
    # the .txt names the same pair
    assert spans_of(read_brat(tmp_path / "doc1.txt", spacy.blank("en"))[0][0]) == spans_of(doc)


GREEK = "Ο Γιάννης ζει στην Αθήνα."


@pytest.mark.parametrize("misaligned,words,spans,expected_counts", [
    ("drop", ["Ο", "Γιάννης", "ζει", "στην", "Αθήνα", "."], [(1, 2, "PER"), (4, 5, "LOC")],
     ({}, {"misaligned": 1}, {})),
    ("expand", ["Ο", "Γιάννης", "ζει", "στην", "Αθήνα", "."], [(1, 2, "PER"), (4, 5, "LOC")],
     ({"expanded": 1}, {"duplicate": 1}, {})),
    ("split", ["Ο", "Γιάννης", "ζει", "στην", "Αθ", "ήνα", "."],
     [(1, 2, "PER"), (4, 5, "LOC"), (4, 6, "LOC")],
     ({"token_split": 1}, {}, {})),
])
def test_brat_greek_misaligned_rules(tmp_path, misaligned, words, spans, expected_counts):
    john, athens = GREEK.index("Γιάννης"), GREEK.index("Αθήνα")
    write(tmp_path, "el.txt", GREEK)
    write(tmp_path, "el.ann", f"T1\tPER {john} {john + len('Γιάννης')}\tΓιάννης\n"
                              f"T2\tLOC {athens} {athens + len('Αθήνα')}\tΑθήνα\n"
                              f"T3\tLOC {athens} {athens + 2}\tΑθ\n")
    (doc,), stats = read_brat(tmp_path / "el.ann", spacy.blank("el"), misaligned=misaligned)
    assert (words_of(doc), spans_of(doc)) == (words, spans)
    assert counts(stats) == expected_counts


@pytest.mark.parametrize("ann,line,what", [
    ("T1\tPER 0 4\tAnna\nT2\tPER 0\tAnna\n", 2, "expected 'T<id>"),
    ("T1\tPER a b\tAnna\n", 1, "expected 'T<id>"),
    ("T1\tPER 0 4;5\tAnna\n", 1, "expected 'T<id>"),
    ("\nT1\tPER 0 99\tAnna\n", 2, r"offsets \(0, 99\) outside the text"),
    ("X1\tsomething\n", 1, "expected a T, R, E, A, M, N, \\* or # line"),
])
def test_brat_malformed(tmp_path, ann, line, what):
    write(tmp_path, "bad.txt", "Anna Berg")
    write(tmp_path, "bad.ann", ann)
    with pytest.raises(FormatError, match=rf"bad\.ann, line {line}: {what}"):
        read_brat(tmp_path, spacy.blank("en"))


def test_brat_missing_text_file(tmp_path):
    write(tmp_path, "a.txt", "Anna")
    write(tmp_path, "a.ann", "T1\tPER 0 4\tAnna\n")
    write(tmp_path, "lonely.ann", "T1\tPER 0 4\tAnna\n")
    with pytest.raises(FileNotFoundError, match=r"lonely\.ann has no text file lonely\.txt beside it"):
        read_brat(tmp_path, spacy.blank("en"))
    result = CliRunner().invoke(app, ["convert", str(tmp_path), str(tmp_path / "b.spacy"), "--format", "brat"])
    assert result.exit_code == 1 and "lonely.ann has no text file lonely.txt" in result.output


def test_brat_text_without_ann_is_a_doc_without_mentions(tmp_path):
    write(tmp_path, "doc1.txt", BRAT_TEXT)
    write(tmp_path, "doc1.ann", BRAT_ANN)
    alone = write(tmp_path, "doc0.txt", "Nothing to annotate.")
    docs, stats = read_brat(tmp_path, spacy.blank("en"))
    # sorted by the .txt paths: doc0 first, with no mentions; doc1 as when read alone
    assert [words_of(d) for d in docs][0] == ["Nothing", "to", "annotate", "."]
    assert (spans_of(docs[0]), ents_of(docs[0])) == ([], [])
    assert spans_of(docs[1]) == spans_of(read_brat(tmp_path / "doc1.ann", spacy.blank("en"))[0][0])
    assert (stats.files, stats.documents, stats.docs, stats.unannotated) == (2, 2, 2, [str(alone)])
    assert sum(stats.mentions.values()) == 6  # doc1's
    assert "texts without annotations, read with no mentions: 1" in stats.lines()
    with pytest.warns(UserWarning, match=r"texts without annotations, read with no mentions: 1 \(.*doc0\.txt\)"):
        stats.report(tmp_path)
    # the .txt alone, named as the path
    (doc,), stats = read_brat(alone, spacy.blank("en"))
    assert (words_of(doc), spans_of(doc), stats.unannotated) == (["Nothing", "to", "annotate", "."], [], [str(alone)])
    result = CliRunner().invoke(app, ["convert", str(tmp_path), str(tmp_path / "b.spacy"), "--format", "brat"])
    assert result.exit_code == 0, result.output
    assert "docs: 2\n" in result.output and "texts without annotations, read with no mentions: 1\n" in result.output


def test_brat_byte_order_marks(tmp_path):
    # a BOM before the .ann's first line is not part of it
    write(tmp_path, "ann_bom.txt", "Anna Berg")
    write(tmp_path, "ann_bom.ann", "\ufeffT1\tPER 0 4\tAnna\n")
    (doc,), stats = read_brat(tmp_path / "ann_bom.ann", spacy.blank("en"))
    assert (words_of(doc), spans_of(doc), counts(stats)) == (["Anna", "Berg"], [(0, 1, "PER")], ({}, {}, {}))
    # a BOM in the .txt is its character 0, as brat counts it: "Anna" is 1-5;
    # the tokenizer keeps it on "Anna", so the mention's start splits it off
    write(tmp_path, "txt_bom.txt", "\ufeffAnna Berg")
    write(tmp_path, "txt_bom.ann", "T1\tPER 1 5\tAnna\n")
    (doc,), stats = read_brat(tmp_path / "txt_bom.ann", spacy.blank("en"))
    assert doc.text == "\ufeffAnna Berg"
    assert (words_of(doc), spans_of(doc)) == (["\ufeff", "Anna", "Berg"], [(1, 2, "PER")])
    assert counts(stats) == ({"token_split": 1}, {}, {})


# --- character-offset JSONL ------------------------------------------------------


def test_spans_jsonl_prodigy_and_spacy_styles(tmp_path):
    path = write(tmp_path, "annotations.jsonl", SPANS_JSONL)
    docs, stats = read_spans_jsonl(path, spacy.blank("en"))
    assert [(words_of(d), spans_of(d)) for d in docs] == [
        (["Anna", "Berg", "lives", "in", "Oslo", "."], [(0, 1, "GIVEN"), (0, 2, "PER"), (4, 5, "LOC")]),
        (["New", "York"], [(0, 1, "X"), (0, 2, "LOC")]),
        (["Visit", "Oslo"], [(1, 2, "LOC")]),
        (["the", "CEO", "s"], [(1, 2, "ROLE")]),
        (["x", " ", "y"], []),
    ]
    assert [ents_of(d) for d in docs] == [[(0, 2, "PER"), (4, 5, "LOC")], [(0, 2, "LOC")], [(1, 2, "LOC")],
                                          [(1, 2, "ROLE")], []]
    assert docs[2].text == "Visit Oslo " and docs[3].text == "the CEOs"
    assert (stats.documents, stats.docs) == (5, 5)
    assert stats.mentions == {"PER": 1, "GIVEN": 1, "LOC": 3, "X": 1, "ROLE": 1}
    assert counts(stats) == (
        {"whitespace_trimmed": 1, "token_split": 1},
        {"empty": 1},
        {"answer_reject": 1, "answer_ignore": 1, "empty_record": 1},
    )


def test_spans_jsonl_chinese_characters(tmp_path):
    record = {"text": "北京大学在北京", "spans": [
        {"start": 0, "end": 4, "label": "ORG"}, {"start": 0, "end": 2, "label": "LOC"},
        {"start": 5, "end": 7, "label": "LOC"}]}
    path = write(tmp_path, "zh.jsonl", json.dumps(record, ensure_ascii=False) + "\n")
    (doc,), stats = read_spans_jsonl(path, spacy.blank("zh"))
    assert len(doc) == 7  # spaCy's default Chinese segmenter: one token per character
    assert spans_of(doc) == [(0, 2, "LOC"), (0, 4, "ORG"), (5, 7, "LOC")]
    assert ents_of(doc) == [(0, 4, "ORG"), (5, 7, "LOC")]
    assert counts(stats) == ({}, {}, {})


@pytest.mark.parametrize("line,what", [
    ("not json", "expected a JSON object"),
    ('{"spans": []}', "record has no 'text' field"),
    ('{"text": "abc", "spans": [{"start": 1, "end": 9, "label": "X"}]}', r"offsets \(1, 9\)"),
    ('{"text": "abc", "spans": [{"start": 2, "end": 1, "label": "X"}]}', r"offsets \(2, 1\)"),
    ('{"text": "abc", "spans": ["X"]}', r"a mention must be an object or \[start, end, label\]"),
    ('{"text": "abc", "spans": [{"start": 0, "end": 1}]}', "mention has no 'label' field"),
    ('{"text": "abc", "spans": [{"start": true, "end": 1, "label": "X"}]}', "'start' must be int"),
])
def test_spans_jsonl_malformed(tmp_path, line, what):
    path = write(tmp_path, "bad.jsonl", '{"text": "fine", "spans": []}\n' + line + "\n")
    with pytest.raises(FormatError, match=rf"bad\.jsonl, line 2: .*{what}"):
        read_spans_jsonl(path, spacy.blank("en"))


# --- registered readers ------------------------------------------------------


def reader_files(folder: Path) -> dict:
    """format -> (reader block of a config, the labels in its files)."""
    return {
        "iob": ({"@readers": "spacy-binder.IOBCorpus.v1", "path": str(write(folder, "ge.tsv", GERMEVAL)),
                 "token_column": 1, "tag_columns": [2, 3], "delimiter": "\t", "comment_prefix": "#"},
                {"LOC", "OTH", "ORG"}),
        "token-jsonl": ({"@readers": "spacy-binder.TokenJsonlCorpus.v1",
                         "path": str(write(folder, "tok.jsonl", TOKEN_JSONL))}, {"DNA", "protein", "cell_type"}),
        "brat": ({"@readers": "spacy-binder.BratCorpus.v1",
                  "path": str(write(folder, "brat/doc1.ann", BRAT_ANN).parent)},
                 {"PER", "ORG", "LOC", "GPE", "DATE"}),
        "spans-jsonl": ({"@readers": "spacy-binder.SpansJsonlCorpus.v1",
                         "path": str(write(folder, "spans.jsonl", SPANS_JSONL))},
                        {"PER", "GIVEN", "LOC", "X", "ROLE"}),
    }


def test_registered_readers_give_examples(tmp_path):
    write(tmp_path, "brat/doc1.txt", BRAT_TEXT)
    nlp = spacy.blank("en")
    for fmt, (block, labels) in reader_files(tmp_path).items():
        corpus = registry.resolve(Config({"corpora": {"train": block}}))["corpora"]["train"]
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            examples = list(corpus(nlp))
        # the GermEval file needs no repair: its comment lines are logged, not warned about
        assert len(caught) == (fmt != "iob"), (fmt, [str(w.message) for w in caught])
        assert {s.label_ for eg in examples for s in eg.reference.spans["sc"]} == labels, fmt
        assert all(eg.predicted.text == eg.reference.text and not eg.predicted.spans for eg in examples), fmt
        limited = registry.resolve(Config({"corpora": {"train": {**block, "limit": 1}}}))["corpora"]["train"]
        assert [eg.reference.text for eg in limited(nlp)] == [examples[0].reference.text], fmt


def test_reader_gold_preproc_max_length_and_augmenter(tmp_path):
    path = write(tmp_path, "tiny.conll", CONLL)
    block = {"@readers": "spacy-binder.IOBCorpus.v1", "path": str(path), "tag_columns": [3], "scheme": "iob1"}
    nlp = spacy.blank("en")
    split = registry.resolve(Config({"c": {**block, "max_length": 6}}))["c"]
    # the 6-token article is cut into its sentences (4 and 2 tokens), the
    # 5-token one is kept whole
    assert [len(eg.reference) for eg in split(nlp)] == [4, 2, 5]
    gold = registry.resolve(Config({"c": {**block, "gold_preproc": True}}))["c"]
    examples = list(gold(nlp))
    assert [words_of(eg.predicted) for eg in examples] == [words_of(eg.reference) for eg in examples]
    assert [len(eg.reference) for eg in examples] == [4, 2, 5]  # one example per sentence
    lower_case = {"@augmenters": "spacy.lower_case.v1", "level": 1.0}
    examples = list(registry.resolve(Config({"c": {**block, "augmenter": lower_case}}))["c"](nlp))
    assert [eg.reference.text for eg in examples] == [
        "eu rejects german call peter blackburn", "brussels anna berg jonas lie"]
    assert [spans_of(eg.reference) for eg in examples] == [
        [(0, 1, "ORG"), (2, 3, "MISC"), (4, 6, "PER")], [(0, 1, "LOC"), (1, 3, "PER"), (3, 5, "PER")]]


# --- spacy train from the files -------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["iob", "token-jsonl", "brat", "spans-jsonl"])
def test_spacy_train_reads_the_files(tmp_path, fmt):
    """`spacy train` with [corpora.train] and [corpora.dev] reading the files
    directly: the trained pipeline knows exactly the labels in them."""
    write(tmp_path, "brat/doc1.txt", BRAT_TEXT)
    block, labels = reader_files(tmp_path)[fmt]
    config = Config().from_disk(CONFIGS / "binder_tiny.cfg", interpolate=False)
    config["corpora"]["train"] = block
    config["corpora"]["dev"] = block
    if fmt == "iob":
        config["nlp"]["lang"] = "de"  # GermEval
    config.to_disk(tmp_path / "config.cfg")
    output = tmp_path / "out"
    result = run_python(
        "-m", "spacy", "train", str(tmp_path / "config.cfg"), "--output", str(output),
        "--training.max_steps", "4", "--training.eval_frequency", "2", timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    nlp = spacy.load(output / "model-last")
    assert set(nlp.get_pipe("binder_ner").labels) == labels
    assert nlp.lang == ("de" if fmt == "iob" else "en")


# --- convert command -------------------------------------------------------------


def signature(doc, key="sc"):
    return (words_of(doc), doc.text, sent_starts(doc), ents_of(doc), spans_of(doc, key))


INPUTS = {"germeval": ("ge.tsv", GERMEVAL), "conll": ("c.conll", CONLL), "brat": ("b/doc1.ann", BRAT_ANN),
          "spans": ("s.jsonl", SPANS_JSONL), "tokens": ("t.jsonl", TOKEN_JSONL)}


@pytest.mark.parametrize("fmt,data,args,read", [
    ("iob", "germeval", ["--lang", "de", "--token-column", "1", "--tag-columns", "2,3", "--delimiter", "tab",
                         "--comment-prefix", "#"],
     lambda path: read_iob(path, spacy.blank("de").vocab, token_column=1, tag_columns=[2, 3], delimiter="\t",
                           comment_prefix="#", spans_key="gold")),
    ("iob", "conll", ["--tag-columns", "3", "--one-doc-per-sentence"],
     lambda path: read_iob(path, spacy.blank("en").vocab, tag_columns=[3], one_doc_per_sentence=True,
                           spans_key="gold")),
    ("brat", "brat", ["--misaligned", "drop"],
     lambda path: read_brat(path, spacy.blank("en"), misaligned="drop", spans_key="gold")),
    ("spans-jsonl", "spans", [], lambda path: read_spans_jsonl(path, spacy.blank("en"), spans_key="gold")),
    ("token-jsonl", "tokens", ["--label-field", "type", "--no-sentence-starts"],
     lambda path: read_token_jsonl(path, spacy.blank("en").vocab, sentence_starts=False, spans_key="gold")),
])
def test_convert_command_writes_the_readers_docs(tmp_path, fmt, data, args, read):
    write(tmp_path, "b/doc1.txt", BRAT_TEXT)
    path = write(tmp_path, *INPUTS[data])
    result = CliRunner().invoke(app, ["convert", str(path), str(tmp_path / "out" / "c.spacy"), "--format", fmt,
                                      "--spans-key", "gold", *args])
    assert result.exit_code == 0, result.output
    expected, stats = read(path)
    lang = "de" if data == "germeval" else "en"
    written = list(DocBin().from_disk(tmp_path / "out" / "c.spacy").get_docs(spacy.blank(lang).vocab))
    assert [signature(d, "gold") for d in written] == [signature(d, "gold") for d in expected]
    assert f"docs: {len(expected)}" in result.output
    for label, n in stats.mentions.items():
        assert f"  {label}: {n}\n" in result.output
    for reasons in counts(stats):
        for reason, n in reasons.items():
            assert f"  {reason}: {n}\n" in result.output


def test_convert_command_prints_brat_reasons(tmp_path):
    write(tmp_path, "doc1.txt", BRAT_TEXT)
    path = write(tmp_path, "doc1.ann", BRAT_ANN)
    result = CliRunner().invoke(app, ["convert", str(path), str(tmp_path / "c.spacy"), "--format", "brat"])
    assert result.exit_code == 0, result.output
    for line in ("mentions: 6", "  DATE: 1", "repaired: 3", "  discontinuous_joined: 1", "dropped: 2",
                 "  text_mismatch: 1", "skipped: 3", "  brat_R_line: 1"):
        assert line + "\n" in result.output


@pytest.mark.parametrize("args,message", [
    (["--format", "iob"], "bad.tsv, line 2: expected 2 columns"),
    (["--format", "iob", "--misaligned", "drop"], "--misaligned: not an option of --format iob"),
    (["--format", "conll"], "Unknown format 'conll'"),
    (["--format", "iob", "--tag-columns", "2;3"],
     "'2;3': expected comma-separated column numbers, e.g. 2,3"),
])
def test_convert_command_fails_clearly(tmp_path, args, message):
    path = write(tmp_path, "bad.tsv", "a O\nb O O\n")
    result = CliRunner().invoke(app, ["convert", str(path), str(tmp_path / "bad.spacy"), *args])
    assert result.exit_code == 1
    assert message in result.output
    assert not (tmp_path / "bad.spacy").exists()

"""benchmarks/scripts/add_type.py: the new type's examples keep its gold
only, and the plain variant reads them without the partial-annotation marks."""
import spacy
from spacy.tokens import Doc, Span

from util import load_script

add_type = load_script("add_type.py")


def test_only_type_keeps_the_new_types_gold_in_both_outputs():
    vocab = spacy.blank("en").vocab
    doc = Doc(vocab, words="Anna Berg left the Bank of Oslo".split())
    doc.spans["sc"] = [Span(doc, 0, 2, "PER"), Span(doc, 3, 7, "ORG"), Span(doc, 6, 7, "LOC")]
    doc.ents = [Span(doc, 0, 2, "PER"), Span(doc, 3, 7, "ORG")]
    [kept] = add_type.only_type([doc], "ORG", "sc")
    assert [(s.start, s.end, s.label_) for s in kept.spans["sc"]] == [(3, 7, "ORG")]
    assert [(e.start, e.end, e.label_) for e in kept.ents] == [(3, 7, "ORG")]


def test_variants_differ_only_in_the_train_reader(tmp_path):
    shipped = spacy.util.load_config(add_type.fine_tune_config("rehearsal", tmp_path / "r.cfg"), interpolate=False)
    plain = spacy.util.load_config(add_type.fine_tune_config("plain", tmp_path / "p.cfg"), interpolate=False)
    assert shipped["corpora"]["train"]["@readers"] == "spacy-binder.NewTypesCorpus.v1"
    assert plain["corpora"]["train"]["@readers"] == "spacy.Corpus.v1"
    assert plain["corpora"]["train"]["path"] == shipped["corpora"]["train"]["path"] == "${paths.train}"
    assert {k: v for k, v in plain.items() if k != "corpora"} == {k: v for k, v in shipped.items() if k != "corpora"}


def test_markdown_has_a_line_per_variant_and_a_column_per_type():
    row = {"type": "ORG", "p": 50.0, "r": 25.0, "f": 33.33, "others": {"f": 80.0}}
    rows = [
        {**row, "variant": "zero-shot", "per_type_f": {"ORG": 33.33, "PER": 80.0}},
        {**row, "variant": "rehearsal", "per_type_f": {"ORG": 60.0, "PER": 79.5, "LOC": 1.0}},
        {**row, "variant": "rehearsal", "old_types_labelled": True, "per_type_f": {"ORG": 1.0}},
    ]
    lines = add_type.add_type_markdown(rows).splitlines()
    assert lines[0] == "| Variant | ORG P / R / F | old types F | LOC F | ORG F | PER F |"
    assert lines[2] == "| zero-shot | 50.00 / 25.00 / 33.33 | 80.00 | 0.00 | 33.33 | 80.00 |"
    assert lines[3].startswith("| rehearsal |") and lines[3].endswith("| 1.00 | 60.00 | 79.50 |")
    assert lines[4].startswith("| rehearsal, old types labelled |")

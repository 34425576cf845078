"""GENIA 3.02 nested converter (project/scripts/convert_genia.py).

The corpus counts are the ones in shared/data/PROVENANCE.md (section 4).
"""
import io
import json
import os
import subprocess
import sys
import tarfile
from collections import Counter
from pathlib import Path

import pytest
import spacy
from spacy.tokens import DocBin

from projects import REPO as ROOT
from util import load_script, script_path

_convert_genia = load_script("convert_genia.py")
collapse_sem, convert_genia, is_compound_5type = _convert_genia.collapse_sem, _convert_genia.convert_genia, _convert_genia.is_compound_5type

GENIA = Path(os.environ.get("BINDER_DATA_MIRROR") or ROOT.parent / "shared" / "data") / "genia"
TGZ = GENIA / "GENIAcorpus3.02.tgz"
SPLITS = ("train", "dev", "test")

# PROVENANCE table (raw XML, simple 5-type sem): articles, sentences, per type, nested
TABLE = {
    "train": (1602, 15049, {"DNA": 7710, "RNA": 699, "protein": 28889, "cell_line": 3070, "cell_type": 5866}, 4420),
    "dev": (199, 1765, {"DNA": 1161, "RNA": 139, "protein": 2473, "cell_line": 372, "cell_type": 577}, 455),
    "test": (199, 1732, {"DNA": 1133, "RNA": 106, "protein": 2902, "cell_line": 404, "cell_type": 578}, 612),
}
TABLE_TOTALS = {"train": 46234, "dev": 4722, "test": 5123}
COMPOUNDS = {"train": 844, "dev": 107, "test": 66}  # PROVENANCE: 1,017 in total
# Measured: the table minus same-span same-label duplicates (21/8/4)
KEPT = {
    "train": {"DNA": 7708, "RNA": 699, "protein": 28874, "cell_line": 3069, "cell_type": 5863},
    "dev": {"DNA": 1161, "RNA": 139, "protein": 2466, "cell_line": 372, "cell_type": 576},
    "test": {"DNA": 1132, "RNA": 106, "protein": 2900, "cell_line": 403, "cell_type": 578},
}
DOCS_WITH_NESTING = {"train": 3201, "dev": 342, "test": 425}  # measured


@pytest.fixture(scope="module")
def genia():
    if not TGZ.exists():
        pytest.skip(f"{TGZ} not found (set BINDER_DATA_MIRROR)")
    return convert_genia(TGZ, GENIA / "splits", spacy.blank("en"))


@pytest.mark.parametrize("split", SPLITS)
def test_articles_and_sentences(genia, split):
    docs, stats = genia[split]
    assert (stats["articles"], stats["sentences"]) == TABLE[split][:2]
    assert len(docs) == stats["sentences"]
    assert stats["tokens"] == sum(len(doc) for doc in docs)


@pytest.mark.parametrize("split", SPLITS)
def test_entities_are_the_table_minus_duplicates(genia, split):
    docs, stats = genia[split]
    assert dict(stats["entities"]) == KEPT[split]
    assert all(KEPT[split][label] <= n for label, n in TABLE[split][2].items())
    assert sum(TABLE[split][2].values()) == TABLE_TOTALS[split]
    assert sum(stats["entities"].values()) + stats["dropped"]["duplicate"] == TABLE_TOTALS[split]
    assert stats["dropped"]["misaligned"] == 0
    assert sum(len(doc.spans["sc"]) for doc in docs) == sum(KEPT[split].values())


@pytest.mark.parametrize("split", SPLITS)
def test_compounds_and_accounting(genia, split):
    _, stats = genia[split]
    assert stats["dropped"]["compound"] == COMPOUNDS[split]
    assert sum(stats["entities"].values()) + sum(stats["dropped"].values()) == stats["cons"]


def test_every_cons_element_is_seen(genia):
    with tarfile.open(TGZ, "r:gz") as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith("GENIAcorpus3.02.xml"))
        n_cons = tar.extractfile(member).read().count(b"<cons ")
    assert sum(genia[split][1]["cons"] for split in SPLITS) == n_cons == 97876


@pytest.mark.parametrize("split", SPLITS)
def test_nested_spans_overlap(genia, split):
    docs, stats = genia[split]
    assert stats["nested_xml"] == TABLE[split][3]
    nested = with_nesting = 0
    for doc in docs:
        spans = [(s.start, s.end) for s in doc.spans["sc"]]
        strictly_inside = [any(o != s and o[0] <= s[0] and s[1] <= o[1] for o in spans) for s in spans]
        with_nesting += any(strictly_inside)
        # as in stats["nested"], same-extent spans (other label) are inside each other
        nested += sum(
            any(j != i and o[0] <= s[0] and s[1] <= o[1] for j, o in enumerate(spans))
            for i, s in enumerate(spans)
        )
    assert with_nesting == DOCS_WITH_NESTING[split]
    assert nested == stats["nested"]


@pytest.mark.parametrize("split", SPLITS)
def test_ents_are_the_outermost_spans(genia, split):
    docs, stats = genia[split]
    assert stats["ents_overlap"] == 0
    for doc in docs:
        ents = [(e.start, e.end, e.label_) for e in doc.ents]
        spans = [(s.start, s.end, s.label_) for s in doc.spans["sc"]]
        assert set(ents) <= set(spans)
        assert all(a[1] <= b[0] for a, b in zip(ents, ents[1:]))
        for start, end, _ in spans:  # each mention lies inside one flat entity
            assert any(s <= start and end <= e for s, e, _ in ents)


@pytest.mark.parametrize("split", ["dev", "test"])
def test_matches_reference_jsonlines(genia, split):
    """CNN_Nested_NER's dev/test: same sentences (ignoring spaces) and, per
    sentence, the same multiset of (type, text) mentions."""
    docs, stats = genia[split]
    path = GENIA / "cnn_nested_ner_preprocessed" / f"{split}.jsonlines"
    with path.open(encoding="utf8") as file_:
        rows = [json.loads(line) for line in file_ if line.strip()]
    ref_total = sum(len(row["entity_mentions"]) for row in rows)
    assert abs(sum(stats["entities"].values()) - ref_total) <= 0.01 * ref_total
    assert len(rows) == len(docs)
    for doc, row in zip(docs, rows):
        assert doc.text.replace(" ", "") == "".join(row["tokens"]).replace(" ", "")
        ours = Counter((s.label_, s.text.replace(" ", "")) for s in doc.spans["sc"])
        ref = Counter((m["entity_type"], m["text"].replace(" ", "")) for m in row["entity_mentions"])
        assert ours == ref, row["sent_id"]


def test_docbin_round_trip(genia):
    docs = genia["dev"][0]
    loaded = list(DocBin().from_bytes(DocBin(docs=docs).to_bytes()).get_docs(spacy.blank("en").vocab))
    assert [(d.text, [(s.start, s.end, s.label_) for s in d.spans["sc"]]) for d in loaded] == [
        (d.text, [(s.start, s.end, s.label_) for s in d.spans["sc"]]) for d in docs
    ]


def test_genia_config_trains_on_every_mention(genia, tmp_path):
    """The converter splits tokens at mention boundaries that spaCy's
    tokenizer keeps inside a token, so re-tokenized training docs lose some
    mentions; the GENIA config's train reader (gold_preproc) loses none."""
    from spacy.training import Corpus
    from spacy.util import load_config, registry

    nlp = spacy.blank("en")
    DocBin(docs=genia["dev"][0]).to_disk(tmp_path / "dev.spacy")
    config = load_config(ROOT / "configs" / "binder_genia.cfg", overrides={"paths.train": str(tmp_path / "dev.spacy")})
    reader = registry.resolve(config["corpora"])["train"]

    def misaligned(corpus):
        lost = 0
        for eg in corpus(nlp):
            gold = list(eg.reference.spans["sc"])
            lost += len(gold) - len(eg.get_aligned_spans_y2x(gold, allow_overlap=True))
        return lost

    assert misaligned(Corpus(tmp_path / "dev.spacy")) > 0
    assert misaligned(reader) == 0


def test_collapse_sem():
    assert [collapse_sem(s) for s in ("G#DNA_N/A", "G#RNA_molecule", "G#protein_complex")] == ["DNA", "RNA", "protein"]
    assert [collapse_sem(s) for s in ("G#cell_line", "G#cell_type", "G#other_name", "G#cell_lines")] == [
        "cell_line", "cell_type", None, None]
    assert is_compound_5type("(BUT_NOT G#protein_molecule (OR G#protein_molecule G#protein_molecule))")
    assert not is_compound_5type("(AND G#other_name G#other_name)")
    assert not is_compound_5type("G#protein_molecule")


TINY_XML = """<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE set SYSTEM "gpml.dtd">
<set>
<article><articleinfo><bibliomisc>MEDLINE:1</bibliomisc></articleinfo>
<title><sentence><cons lex="a" sem="G#other_name"><cons lex="b" sem="G#DNA_domain_or_region"><cons lex="c" \
sem="G#protein_molecule">IL-2</cons> gene</cons> expression</cons> in <cons lex="d" sem="G#cell_type"><cons \
lex="d" sem="G#cell_type">T cells</cons></cons> and <cons lex="e" sem="G#cell_line">Jurkat</cons>/<cons \
lex="f" sem="G#protein_molecule">p50</cons>.</sentence></title>
<abstract><sentence><cons lex="(AND B_cell T_cell)" sem="(AND G#cell_type G#cell_type)"><cons lex="B*">B</cons> \
and <cons lex="T*">T</cons> <cons lex="*cell">cells</cons></cons> need <cons lex="g" sem="G#DNA_molecule"><cons \
lex="g" sem="G#protein_molecule">NF-kappa B</cons></cons> and <cons lex="h" sem="G#protein_molecule">protein \
kinase C</cons>.</sentence></abstract></article>
<article><articleinfo><bibliomisc>MEDLINE:2</bibliomisc></articleinfo>
<title><sentence><cons lex="i" sem="G#RNA_molecule">mRNA</cons> was <cons lex="j" sem="(AND G#lipid G#lipid)">\
x</cons> found.</sentence></title><abstract></abstract></article>
<article><articleinfo><bibliomisc>MEDLINE:1</bibliomisc></articleinfo>
<title><sentence>No entities here .</sentence></title><abstract></abstract></article>
</set>
"""


def write_tiny(folder: Path, xml: str = TINY_XML) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    data = xml.encode("utf8")
    with tarfile.open(folder / "GENIAcorpus3.02.tgz", "w:gz") as tar:
        info = tarfile.TarInfo("GENIA_term_3.02/GENIAcorpus3.02.xml")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    (folder / "splits").mkdir(exist_ok=True)
    for split, ids in {"train": "MEDLINE:1\n", "dev": "MEDLINE:2\n", "test": ""}.items():
        (folder / "splits" / f"{split}.txt").write_text(ids, encoding="utf8")
    return folder


def test_tiny_corpus_cli(tmp_path):
    data = write_tiny(tmp_path / "genia")
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, str(script_path("convert_genia.py")), str(data), str(out),
                           "--spans-key", "gold"], capture_output=True, text=True, cwd=str(ROOT))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "compound: 1" in proc.stdout
    vocab = spacy.blank("en").vocab
    train = list(DocBin().from_disk(out / "train.spacy").get_docs(vocab))
    dev = list(DocBin().from_disk(out / "dev.spacy").get_docs(vocab))
    assert len(train) == 3 and len(dev) == 1
    assert len(list(DocBin().from_disk(out / "test.spacy").get_docs(vocab))) == 0
    spans = [[(s.text, s.label_) for s in doc.spans["gold"]] for doc in train + dev]
    assert spans == [
        [("IL-2 gene", "DNA"), ("IL-2", "protein"), ("T cells", "cell_type"), ("Jurkat", "cell_line"),
         ("p50", "protein")],
        [("NF-kappa B", "DNA"), ("NF-kappa B", "protein"), ("protein kinase C", "protein")],
        [],
        [("mRNA", "RNA")],
    ]
    ents = [[(e.text, e.label_) for e in doc.ents] for doc in train]
    assert ents[0] == [("IL-2 gene", "DNA"), ("T cells", "cell_type"), ("Jurkat", "cell_line"), ("p50", "protein")]
    assert ents[1] == [("NF-kappa B", "DNA"), ("protein kinase C", "protein")]  # outer cons wins a tie
    assert train[1][-1].text == "."  # "C." was split at the mention end


def test_tiny_corpus_stats(tmp_path):
    data = write_tiny(tmp_path / "genia")
    result = convert_genia(data / "GENIAcorpus3.02.tgz", data / "splits", spacy.blank("en"))
    stats = result["train"][1]
    assert (stats["articles"], stats["sentences"], stats["cons"]) == (2, 3, 14)
    assert dict(stats["dropped"]) == {"other_type": 1, "compound": 1, "fragment": 3, "misaligned": 0, "duplicate": 1}
    assert dict(stats["entities"]) == {"DNA": 2, "protein": 4, "cell_type": 1, "cell_line": 1}
    assert (stats["nested"], stats["nested_xml"], stats["token_cuts"]) == (3, 3, 1)
    assert result["dev"][1]["dropped"]["other_type"] == 1 and result["test"][1]["sentences"] == 0


def test_unlisted_or_doubly_listed_article(tmp_path):
    data = write_tiny(tmp_path / "genia")
    (data / "splits" / "dev.txt").write_text("", encoding="utf8")
    with pytest.raises(ValueError, match="MEDLINE:2"):
        convert_genia(data / "GENIAcorpus3.02.tgz", data / "splits", spacy.blank("en"))
    (data / "splits" / "test.txt").write_text("MEDLINE:1\n", encoding="utf8")
    with pytest.raises(ValueError, match="MEDLINE:1 is listed in train and test"):
        convert_genia(data / "GENIAcorpus3.02.tgz", data / "splits", spacy.blank("en"))

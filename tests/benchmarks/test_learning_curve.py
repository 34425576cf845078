"""benchmarks/scripts/learning_curve.py and zero_shot.py: a tiny learning
curve and a tiny leave-one-type-out run on a hand-made corpus with the tiny
config (CNN text encoder; a tiny random BERT as the description encoder where
descriptions must be read), and the plot."""
import subprocess
import sys
from pathlib import Path

import pytest
import spacy
import srsly
from spacy import util
from spacy.tokens import Doc, DocBin, Span
from spacy.training import Corpus

from projects import REPO, copy_project, run_project
from util import load_script, script_path, tiny_config_with_description_encoder

learning_curve = load_script("learning_curve.py")
zero_shot = load_script("zero_shot.py")
benchmark = load_script("benchmark.py")

BINDER_TINY = REPO / "configs" / "binder_tiny.cfg"
DESCRIPTIONS = {
    "PER": "A person, named by a first and a last name.",
    "LOC": "A place: a city or a country.",
    "ORG": "An organisation such as a bank or a university.",
}
# (sentences of (words, [(start, end, label)])): one Doc each; the second
# Doc holds two sentences, and ORG first appears in the fourth Doc
TRAIN = [
    [("Anna Berg visited Oslo", [(0, 2, "PER"), (3, 4, "LOC")])],
    [("Oslo is cold", [(0, 1, "LOC")]), ("Mark Olsen left", [(0, 2, "PER")])],
    [("Mark Olsen saw Rome", [(0, 2, "PER"), (3, 4, "LOC")])],
    [("the Bank of Rome hired Anna Berg", [(1, 4, "ORG"), (3, 4, "LOC"), (5, 7, "PER")])],
    [("Anna Berg left the Bank of Oslo", [(0, 2, "PER"), (3, 6, "ORG"), (5, 6, "LOC")])],
]
HELD_OUT = [
    [("Mark Olsen joined the Bank of Rome", [(0, 2, "PER"), (3, 6, "ORG"), (5, 6, "LOC")])],
    [("Anna Berg moved to Rome", [(0, 2, "PER"), (4, 5, "LOC")])],
]


def make_doc(vocab, sentences) -> Doc:
    """One Doc of the sentences, sentence starts set, gold in doc.spans["sc"]
    (nested) and the longest non-overlapping mentions in doc.ents."""
    words, starts, gold = [], [], []
    for text, spans in sentences:
        offset = len(words)
        words += text.split()
        starts += [True] + [False] * (len(text.split()) - 1)
        gold += [(offset + s, offset + e, label) for s, e, label in spans]
    doc = Doc(vocab, words=words, sent_starts=starts)
    doc.spans["sc"] = [Span(doc, s, e, label) for s, e, label in gold]
    doc.ents = spacy.util.filter_spans(doc.spans["sc"])
    return doc


@pytest.fixture()
def corpus(tmp_path: Path) -> Path:
    vocab = spacy.blank("en").vocab
    folder = tmp_path / "corpus"
    folder.mkdir()
    for split, docs in (("train", TRAIN), ("dev", HELD_OUT), ("test", HELD_OUT)):
        DocBin(docs=[make_doc(vocab, sentences) for sentences in docs]).to_disk(folder / f"{split}.spacy")
    srsly.write_json(tmp_path / "descriptions.json", DESCRIPTIONS)
    return folder


@pytest.fixture()
def tiny_description_config(tmp_path: Path, tiny_bert_path: str) -> Path:
    """The tiny config with a description encoder (tiny random BERT) instead
    of the label embedding."""
    return tiny_config_with_description_encoder(tiny_bert_path, tmp_path / "binder_tiny_descriptions.cfg")


def run_script(name: str, *args, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(script_path(name)), *map(str, args)], capture_output=True, text=True, timeout=timeout)


TINY_BUDGET = ["--steps", "4", "--eval-frequency", "2", "--learn-rate", "0.003", "--batch-size", "200"]


def test_first_docs_for_sentences_rounds_up_to_whole_docs(corpus: Path) -> None:
    docs = learning_curve.read_docs(corpus / "train.spacy")
    assert [learning_curve.sentence_count(doc) for doc in docs] == [1, 2, 1, 1, 1]
    assert learning_curve.first_docs_for_sentences(docs, 1) == (1, 1)
    assert learning_curve.first_docs_for_sentences(docs, 2) == (2, 3)
    assert learning_curve.first_docs_for_sentences(docs, 4) == (3, 4)
    assert learning_curve.first_docs_for_sentences(docs, 99) == (5, 6)  # all there is
    assert learning_curve.gold_labels(docs[:3], "sc") == ["LOC", "PER"]


def test_step_budget_and_descriptions_files(tmp_path: Path) -> None:
    base = util.load_config(BINDER_TINY, interpolate=False)
    learning_curve.apply_step_budget(base, 300, 2e-4, "linear", 500, 50, train_limit=7)
    training = base["training"]
    assert (training["max_steps"], training["max_epochs"], training["patience"], training["eval_frequency"]) == (300, 0, 0, 50)
    assert training["optimizer"]["learn_rate"]["total_steps"] == 300 and base["corpora"]["train"]["limit"] == 7
    learning_curve.apply_step_budget(base, 300, 2e-4, "flat", 500, 50)
    assert base["training"]["optimizer"]["learn_rate"] == 2e-4
    with pytest.raises(ValueError, match="Unknown schedule"):
        learning_curve.apply_step_budget(base, 300, 2e-4, "cosine", 500, 50)
    names = learning_curve.write_descriptions(tmp_path / "n.json", ["LOC", "PER"], DESCRIPTIONS, "names")
    assert srsly.read_json(tmp_path / "n.json") == names == {"LOC": "LOC", "PER": "PER"}
    given = learning_curve.write_descriptions(tmp_path / "d.json", ["LOC"], DESCRIPTIONS, "descriptions")
    assert given == {"LOC": DESCRIPTIONS["LOC"]}
    with pytest.raises(ValueError, match="No description given for DATE"):
        learning_curve.write_descriptions(tmp_path / "x.json", ["DATE"], DESCRIPTIONS, "descriptions")
    assert learning_curve.parse_sizes("200, 50,100") == [50, 100, 200]
    with pytest.raises(ValueError, match="distinct positive"):
        learning_curve.parse_sizes("50,0")


def test_merge_keeps_variants_and_step_budgets_apart() -> None:
    def row(variant, steps, f):
        return {"system": "binder_ner", "dataset": "x", "seed": 0, "descriptions": variant, "max_steps": steps, "f": f}

    old = [row("descriptions", 500, 1.0), row("names", 500, 2.0), row("names", 300, 3.0)]
    merged = benchmark.merge_rows(old, [row("names", 500, 9.0)], by_seed=True, extra_keys=learning_curve.POINT_KEYS)
    assert [(r["descriptions"], r["max_steps"], r["f"]) for r in merged] == [
        ("descriptions", 500, 1.0), ("names", 300, 3.0), ("names", 500, 9.0)
    ]  # fmt: skip


@pytest.mark.slow
def test_learning_curve_run(corpus: Path, tmp_path: Path, tiny_description_config: Path) -> None:
    """Two sizes, one seed, binder_ner with descriptions and with names, and
    spaCy ner: rows with the sizes really trained on, and the names
    variant's pipeline holds the labels as its descriptions."""
    output, table = tmp_path / "curve.json", tmp_path / "curve.md"
    result = run_script(
        "learning_curve.py", "run", "toy", corpus, tiny_description_config, "--sizes", "2,4", "--seeds", "0",
        "--descriptions", tmp_path / "descriptions.json", "--work-dir", tmp_path / "work",
        "--output", output, "--table", table, *TINY_BUDGET,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rows = srsly.read_json(output)
    assert [(r["system"], r.get("descriptions"), r["train_sentences"]) for r in rows] == [
        ("binder_ner", "descriptions", 3), ("binder_ner", "names", 3), ("spacy_ner", None, 3),
        ("binder_ner", "descriptions", 4), ("binder_ner", "names", 4), ("spacy_ner", None, 4),
    ]  # fmt: skip
    nlp = spacy.blank("en")
    for row in rows:
        assert row["dataset"] == "toy" and row["seed"] == 0 and 0.0 <= row["f"] <= 100.0
        assert row["max_steps"] == 4 and row["sentences_asked"] in (2, 4)
        run_dir = tmp_path / "work" / "toy" / f"sentences_{row['sentences_asked']}" / "seed_0"
        run_dir /= f"binder_ner_{row['descriptions']}" if row.get("descriptions") else row["system"]
        config = util.load_config(run_dir / "config.cfg")
        assert config["corpora"]["train"]["limit"] == row["train_docs"] == row["train_limit"]
        assert config["training"]["max_steps"] == 4 and config["training"]["max_epochs"] == 0
        # spaCy's reader, as training configured it, yields exactly those docs
        reader = Corpus(corpus / "train.spacy", limit=config["corpora"]["train"]["limit"])
        trained_on = [eg.reference for eg in reader(nlp)]
        assert len(trained_on) == row["train_docs"] == {3: 2, 4: 3}[row["train_sentences"]]
        assert sum(len(list(doc.sents)) for doc in trained_on) == row["train_sentences"]
        assert row["train_labels"] == ["LOC", "PER"]
        if row["system"] == "binder_ner":
            binder = spacy.load(run_dir / "pipeline" / "model-best").get_pipe("binder_ner")
            expected = {"LOC": "LOC", "PER": "PER"} if row["descriptions"] == "names" else {k: DESCRIPTIONS[k] for k in ("LOC", "PER")}
            assert binder.descriptions == expected and set(binder.labels) == {"LOC", "PER"}
    text = table.read_text()
    assert "| Train sentences | binder_ner (descriptions) F | binder_ner (names) F | spacy_ner F |" in text
    assert text.count("n=1)") == 6


@pytest.mark.slow
def test_descriptions_tag_names_the_rows_and_the_run_folder(corpus: Path, tmp_path: Path, tiny_description_config: Path) -> None:
    """A second descriptions file's curve: its rows and pipeline are told
    apart from the descriptions variant's by the tag, and hold its text."""
    guidelines = tmp_path / "guidelines.json"
    srsly.write_json(guidelines, {label: f"{text} (guideline text)" for label, text in DESCRIPTIONS.items()})
    output = tmp_path / "curve.json"
    result = run_script(
        "learning_curve.py", "run", "toy", corpus, tiny_description_config, "--sizes", "2", "--seeds", "0",
        "--systems", "binder_ner", "--variants", "descriptions", "--descriptions", guidelines,
        "--descriptions-tag", "guidelines", "--work-dir", tmp_path / "work", "--output", output,
        "--table", tmp_path / "curve.md", *TINY_BUDGET,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert [(r["system"], r["descriptions"]) for r in srsly.read_json(output)] == [("binder_ner", "guidelines")]
    run_dir = tmp_path / "work" / "toy" / "sentences_2" / "seed_0" / "binder_ner_guidelines"
    binder = spacy.load(run_dir / "pipeline" / "model-best").get_pipe("binder_ner")
    assert binder.descriptions == {k: f"{DESCRIPTIONS[k]} (guideline text)" for k in ("LOC", "PER")}
    assert "binder_ner (guidelines) F" in (tmp_path / "curve.md").read_text()


@pytest.mark.parametrize("tag", ["names", "", "two words", "../up"])
def test_descriptions_tag_must_be_a_word_other_than_names(tag: str) -> None:
    with pytest.raises(ValueError, match="--descriptions-tag"):
        learning_curve.check_descriptions_tag(tag)
    learning_curve.check_descriptions_tag("guidelines-v2")


def test_learning_curve_refuses_configs_it_cannot_measure(corpus: Path, tmp_path: Path) -> None:
    result = run_script(
        "learning_curve.py", "run", "toy", corpus, BINDER_TINY, "--sizes", "2", "--variants", "names",
        "--output", tmp_path / "curve.json", *TINY_BUDGET, timeout=120,
    )  # fmt: skip
    assert result.returncode != 0 and "does not read descriptions" in result.stdout + result.stderr
    assert not (tmp_path / "curve.json").exists()
    # a train type without a description fails before the first point, not at the size that has it
    srsly.write_json(tmp_path / "two.json", {k: DESCRIPTIONS[k] for k in ("PER", "LOC")})
    result = run_script(
        "learning_curve.py", "run", "toy", corpus, BINDER_TINY, "--sizes", "2", "--variants", "descriptions",
        "--descriptions", tmp_path / "two.json", "--output", tmp_path / "curve.json", *TINY_BUDGET, timeout=120,
    )  # fmt: skip
    assert result.returncode != 0 and "No description for ORG" in result.stdout + result.stderr
    assert not (tmp_path / "curve.json").exists()


def test_plot_and_table(tmp_path: Path) -> None:
    rows = []
    for seed, shift in ((0, 0.0), (1, 2.0)):
        for system, variant in (("binder_ner", "descriptions"), ("binder_ner", "names"), ("spacy_ner", None)):
            for size, f in ((50, 40.0), (100, 55.0)):
                row = {"system": system, "dataset": "toy", "encoder": "m", "max_steps": 500, "learn_rate": 1e-4,
                       "schedule": "linear", "batch_size": 1000, "eval_frequency": 100, "seed": seed,
                       "train_sentences": size, "f": f + shift}  # fmt: skip
                rows.append({**row, "descriptions": variant} if variant else row)
    srsly.write_json(tmp_path / "rows.json", rows)
    srsly.write_json(tmp_path / "more.json", [{**rows[0], "dataset": "other"}])  # a second file: a second panel
    result = run_script(
        "learning_curve.py", "plot", tmp_path / "rows.json", tmp_path / "more.json", "--output", tmp_path / "plot" / "curve.png",
        "--table", tmp_path / "curve.md", timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert (tmp_path / "plot" / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "curve.md").read_text().count("test F, mean (sd)") == 2
    lines = learning_curve.curve_markdown(rows).splitlines()
    assert lines[0] == "toy, m, 500 steps of 1000 padded tokens, lr 0.0001 → 0 linear, dev every 100 steps: test F, mean (sd) over n seeds"
    # seeds 0 and 1: F 40 and 42, mean 41, sd 1.41
    assert lines[4] == "| 50 | 41.00 (1.41, n=2) | 41.00 (1.41, n=2) | 41.00 (1.41, n=2) |"


@pytest.mark.slow
def test_zero_shot_run(corpus: Path, tmp_path: Path, tiny_description_config: Path) -> None:
    """ORG held out: removed from the train and dev gold, not a trained
    label, added by its description and by its name, scored on test."""
    output, table = tmp_path / "zero_shot.json", tmp_path / "zero_shot.md"
    result = run_script(
        "zero_shot.py", "run", "toy", corpus, tiny_description_config, "--descriptions", tmp_path / "descriptions.json",
        "--types", "ORG", "--nested", "--work-dir", tmp_path / "work", "--output", output, "--table", table, *TINY_BUDGET,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rows = srsly.read_json(output)
    assert [(r["held_out_type"], r["description"], r["description_text"]) for r in rows] == [
        ("ORG", "description", DESCRIPTIONS["ORG"]), ("ORG", "name", "ORG")
    ]  # fmt: skip
    label_dir = tmp_path / "work" / "toy" / "without_ORG"
    nlp = spacy.blank("en")
    for split in ("train", "dev"):
        docs = list(DocBin().from_disk(label_dir / "corpus" / f"{split}.spacy").get_docs(nlp.vocab))
        labels = {span.label_ for doc in docs for span in list(doc.spans["sc"]) + list(doc.ents)}
        assert labels == {"LOC", "PER"}
    assert srsly.read_json(label_dir / "descriptions.json") == {k: DESCRIPTIONS[k] for k in ("PER", "LOC")}
    binder = spacy.load(label_dir / "seed_0" / "pipeline" / "model-best").get_pipe("binder_ner")
    assert "ORG" not in binder.labels
    for row in rows:
        assert row["dataset"] == "toy" and row["seed"] == 0 and row["output"] == 'doc.spans["sc"]'
        assert sorted(row["trained_labels"]) == ["LOC", "PER"] and sorted(row["labels_after"]) == ["LOC", "ORG", "PER"]
        assert all(0.0 <= row[k] <= 100.0 for k in ("p", "r", "f"))
        assert set(row["others_before"]) == set(row["others_after"]) == {"p", "r", "f"}
        assert "ORG" in row["per_type_f"] and row["train_docs"] == 5 and row["train_sentences"] == 6
    assert "| ORG | 1 |" in table.read_text()
    # the label embedding has no vector for a type it did not train on: refused before training
    refused = run_script(
        "zero_shot.py", "run", "toy", corpus, BINDER_TINY, "--descriptions", tmp_path / "descriptions.json",
        "--output", tmp_path / "refused.json", timeout=120,
    )  # fmt: skip
    assert refused.returncode != 0 and "does not read descriptions" in refused.stdout + refused.stderr


def test_workflow_commands_dry_run(tmp_path: Path) -> None:
    """The learning-curve and zero-shot commands run the scripts on the
    corpora the user project converts."""
    copy_project(tmp_path)
    benchmarks = tmp_path / "benchmarks"
    for command, expected in (
        ("learning-curve", ["learning_curve.py run ncbi_disease", "learning_curve.py run genia", "--nested", "learning_curve.py plot metrics/learning_curve_ncbi_disease.json"]),
        ("zero-shot", ["zero_shot.py run genia", "zero_shot.py run conll03"]),
    ):
        result = run_project(["run", command, str(benchmarks), "--dry"], tmp_path)
        assert result.returncode == 0, result.stdout + result.stderr
        for text in expected:
            assert text in result.stdout, (command, text, result.stdout)

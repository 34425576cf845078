"""spaCy's own commands on binder_ner: find-threshold, init config then
train, benchmark speed, evaluate; and the span view with scores."""
import re
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Tuple

import pytest
import spacy
from spacy import displacy
from spacy.tokens import DocBin
from spacy.util import filter_spans

from spacy_binder.display import span_view_with_scores
from util import NESTED_DATA, cnn_pipeline, load_script, make_examples, offline_env, train

NESTED_TEXT = "the University of Paris hired Anna Berg"


def spacy_cli(*args: str) -> str:
    """`python -m spacy *args`, offline; its stdout and stderr together."""
    result = subprocess.run(
        [sys.executable, "-m", "spacy", *args], capture_output=True, text=True, env=offline_env(), timeout=1200
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    return output


@pytest.fixture(scope="module")
def saved_pipeline(tmp_path_factory) -> Tuple[Path, Path]:
    """A CNN pipeline trained on NESTED_DATA, saved, and NESTED_DATA as a
    .spacy file: (pipeline folder, data file). Its gold is in doc.spans["sc"],
    and the outermost mentions in doc.ents (what `ents_f` is scored on)."""
    folder = tmp_path_factory.mktemp("cli")
    nlp = cnn_pipeline()
    examples = make_examples(nlp, NESTED_DATA)
    train(nlp, examples, 40)
    nlp.to_disk(folder / "pipeline")
    for eg in examples:
        eg.reference.ents = filter_spans(eg.reference.spans["sc"])
    DocBin(docs=[eg.reference for eg in examples]).to_disk(folder / "data.spacy")
    return folder / "pipeline", folder / "data.spacy"


def find_threshold(pipeline: Path, data: Path, scores_key: str) -> Tuple[Dict[float, float], float, float]:
    """Run `spacy find-threshold` on binder_ner's `threshold`: the score it
    prints for each threshold tried, and the best threshold and score it reports."""
    output = spacy_cli("find-threshold", str(pipeline), str(data), "binder_ner", "threshold", scores_key)
    rows = {float(t): float(s) for t, s in re.findall(r"^(\d\.\d+)\s+(\d+(?:\.\d+)?)\s*$", output, flags=re.M)}
    best = re.search(rf"Best threshold: ([\d.]+) with {scores_key} value of (\d+(?:\.\d+)?(?:e-?\d+)?)\.$", output, flags=re.M)
    assert best is not None, output[-2000:]
    return rows, float(best.group(1)), float(best.group(2))


@pytest.mark.parametrize("scores_key", ["spans_sc_f", "ents_f"])
def test_find_threshold_searches_binder_threshold(saved_pipeline, scores_key):
    rows, best, best_score = find_threshold(*saved_pipeline, scores_key)
    # the 11 thresholds spaCy tries, 0 and 1 included
    assert sorted(rows) == pytest.approx([i / 10 for i in range(11)])
    assert len(set(rows.values())) > 1  # the threshold reached the predictions
    # at 1 nothing is predicted; the reported best is the best row
    assert rows[1.0] == 0.0
    assert rows[best] == max(rows.values()) and round(best_score, 3) == rows[best]
    if scores_key == "spans_sc_f":
        # at 0 every candidate of every label is predicted: 88 spans of <= 4
        # tokens in the four sentences (7, 7, 9 and 5 tokens), times 3 labels;
        # the 9 gold spans are among them, so P = 9/264, R = 1, F = 18/273
        assert rows[0.0] == round(18 / 273, 3)


@pytest.mark.slow
@pytest.mark.parametrize("lang", ["en", "de"])
def test_init_config_trains_as_written(tmp_path, lang):
    """`spacy init config -p binder_ner` writes a config that `spacy train`
    trains: the factory's default model needs no transformer component."""
    corpus = tmp_path / "corpus"
    subprocess.run(
        [sys.executable, "-m", "spacy_binder.toy_corpus", str(corpus), "--n-train", "60", "--n-dev", "20", "--n-test", "1"],
        check=True, capture_output=True, env=offline_env(),
    )
    config = tmp_path / "config.cfg"
    spacy_cli("init", "config", "-p", "binder_ner", "--lang", lang, str(config))
    written = spacy.util.load_config(config)
    assert written["nlp"]["pipeline"] == ["binder_ner"] and written["nlp"]["lang"] == lang
    spacy_cli(
        "train", str(config), "--output", str(tmp_path / "out"),
        "--paths.train", str(corpus / "train.spacy"), "--paths.dev", str(corpus / "dev.spacy"),
        "--training.max_steps", "40", "--training.eval_frequency", "20",
    )
    nlp = spacy.load(tmp_path / "out" / "model-last")
    assert nlp.lang == lang and nlp.pipe_names == ["binder_ner"]
    assert set(nlp.get_pipe("binder_ner").labels) == {"PER", "ORG", "LOC", "DATE"}
    dev_docs = list(DocBin().from_disk(corpus / "dev.spacy").get_docs(nlp.vocab))
    predicted = [span.label_ for doc in nlp.pipe(doc.text for doc in dev_docs) for span in doc.spans["sc"]]
    assert predicted and set(predicted) <= {"PER", "ORG", "LOC", "DATE"}


def test_benchmark_speed(saved_pipeline):
    output = spacy_cli("benchmark", "speed", *map(str, saved_pipeline), "--batch-size", "4", "--batches", "30", "--warmup", "1")
    speed = re.search(r"Mean: ([\d.]+) words/s", output)
    assert speed is not None and float(speed.group(1)) > 0, output[-2000:]


def test_evaluate_prints_span_scores_but_spacy_renders_no_span_view(saved_pipeline, tmp_path):
    """`spacy evaluate` scores binder_ner, per label too. Its --displacy-path
    renders the span view only for components of spaCy's `spancat` factory
    (entities for `ner`, parses for `parser`; spacy/cli/evaluate.py), so for
    binder_ner it writes nothing: `python -m spacy_binder evaluate` (same
    options) renders them. If this
    fails, spaCy renders binder_ner now: say so in the docs."""
    pipeline, data = saved_pipeline
    displacy_dir = tmp_path / "displacy"
    displacy_dir.mkdir()
    output = spacy_cli("evaluate", str(pipeline), str(data), "--displacy-path", str(displacy_dir), "--spans-key", "sc")
    assert "SPANS (per type)" in output and "NER (per type)" in output
    per_type = output[output.index("SPANS (per type)"):]
    for label in ("PER", "ORG", "LOC"):
        assert re.search(rf"^\s*{label}\s+\d", per_type, flags=re.M), label
    assert list(displacy_dir.iterdir()) == []


@pytest.mark.parametrize("gold_preproc", [False, True])
def test_binder_evaluate_renders_ents_and_scored_spans(saved_pipeline, tmp_path, gold_preproc):
    """`python -m spacy_binder evaluate` prints spaCy's scores and, with
    --displacy-path, writes what spaCy's command leaves out for binder_ner:
    entities.html with the predicted doc.ents and spans.html with each
    predicted span's label and score."""
    pipeline, data = saved_pipeline
    displacy_dir = tmp_path / "displacy"
    displacy_dir.mkdir()
    result = subprocess.run(
        [sys.executable, "-m", "spacy_binder", "evaluate", str(pipeline), str(data), "--displacy-path",
         str(displacy_dir), "--displacy-limit", "2", *(["--gold-preproc"] if gold_preproc else [])],
        capture_output=True, text=True, env=offline_env(), timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SPANS (per type)" in result.stdout
    assert sorted(path.name for path in displacy_dir.iterdir()) == ["entities.html", "spans.html"]
    nlp = spacy.load(pipeline)
    texts = [doc.text for doc in DocBin().from_disk(data).get_docs(nlp.vocab)][:2]
    predicted = list(nlp.pipe(texts))
    assert any(doc.ents for doc in predicted) and any(doc.spans["sc"] for doc in predicted)
    entities = (displacy_dir / "entities.html").read_text(encoding="utf8")
    spans = (displacy_dir / "spans.html").read_text(encoding="utf8")
    for doc in predicted:
        for ent in doc.ents:
            assert ent.text in entities and ent.label_ in entities
        for span, score in zip(doc.spans["sc"], doc.spans["sc"].attrs["scores"]):
            assert span.label_ in spans and f"{float(score):.2f}" in spans
    # --displacy-limit 2: the third doc ("... the Bank of Rome") is not rendered
    assert "Rome" not in entities and "Rome" not in spans


def test_span_view_shows_each_score_after_its_label(saved_pipeline):
    nlp = spacy.load(saved_pipeline[0])
    doc = nlp(NESTED_TEXT)
    group = doc.spans["sc"]
    scores = group.attrs["scores"]
    assert len(group) > 0
    data = span_view_with_scores(doc, digits=3)
    assert [(s["start_token"], s["end_token"], s["label"]) for s in data["spans"]] == [
        (span.start, span.end, span.label_) for span in group
    ]
    assert [s["kb_id"] for s in data["spans"]] == [f"{score:.3f}" for score in scores]
    # the label stays bare, so the colors keyed by it still apply
    html = displacy.render(data, style="span", manual=True, options={"colors": {"ORG": "#123456"}})
    for span, score in zip(group, scores):
        assert re.search(rf"{span.label_}\s*<a [^>]*>{score:.3f}</a>", html), (span.label_, score)
    assert ("#123456" in html) == ("ORG" in {span.label_ for span in group})


def test_span_view_of_gold_keeps_bare_labels():
    nlp = cnn_pipeline()
    reference = make_examples(nlp, NESTED_DATA[:1])[0].reference
    data = span_view_with_scores(reference)
    assert [(s["label"], s["kb_id"]) for s in data["spans"]] == [("ORG", ""), ("LOC", ""), ("PER", "")]


def test_visualize_script_shows_predicted_scores(saved_pipeline):
    visualize = load_script("visualize.py")
    nlp = spacy.load(saved_pipeline[0])
    gold = list(DocBin().from_disk(saved_pipeline[1]).get_docs(nlp.vocab))[:1]
    html = visualize.render_gold_and_predicted(nlp, gold)
    predicted = nlp(gold[0].text)
    shown_scores: List[str] = re.findall(r"<a [^>]*>([\d.]+)</a>", html)
    # gold spans have no score; each predicted span shows its own (in the
    # view's order: by start, longer spans first)
    assert sorted(shown_scores) == sorted(f"{score:.2f}" for score in predicted.spans["sc"].attrs["scores"])
    assert "gold (3 spans)" in html

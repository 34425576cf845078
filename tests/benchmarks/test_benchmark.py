"""benchmarks/scripts/benchmark.py: the ner and spancat configs differ from the
BINDER config only where they must, and a tiny benchmark run writes sensible
rows."""
import itertools
import subprocess
import sys
from pathlib import Path

import pytest
import spacy
import srsly
from spacy import util
from spacy.tokens import Doc, DocBin, Span

from projects import DATA, REPO, copy_project, needs_data, run_project, slice_blocks
from util import load_script, script_path

benchmark = load_script("benchmark.py")
SYSTEMS, apply_budget, batches_per_epoch = benchmark.SYSTEMS, benchmark.apply_budget, benchmark.batches_per_epoch
merge_rows, primary_scores, parse_seeds = benchmark.merge_rows, benchmark.primary_scores, benchmark.parse_seeds
rows_to_markdown, seeds_markdown, system_config = benchmark.rows_to_markdown, benchmark.seeds_markdown, benchmark.system_config

BINDER_NCBI = REPO / "configs" / "binder_ncbi_disease.cfg"
BINDER_TINY = REPO / "configs" / "binder_tiny.cfg"


@pytest.mark.parametrize("system", ["spacy_ner", "spancat"])
def test_other_systems_share_everything_but_the_component(system: str) -> None:
    base = util.load_config(BINDER_NCBI, interpolate=False)
    config = system_config(base, system, max_width=7, spans_key="sc")
    name = {"spacy_ner": "ner", "spancat": "spancat"}[system]
    assert config["nlp"]["pipeline"] == ["transformer", name]
    assert "binder_ner" not in config["components"]
    assert "binder_ner" not in config["initialize"]["components"]
    # the transformer sees the same segments; binder_ner's segment length,
    # which its span getter read by reference, is written in as a value
    transformer = base["components"]["transformer"]
    assert transformer["model"]["get_spans"]["max_length"] == "${components.binder_ner.max_segment_length}"
    assert config["components"]["transformer"]["model"]["get_spans"] == {
        **transformer["model"]["get_spans"],
        "max_length": base["components"]["binder_ner"]["max_segment_length"],
    }
    assert {k: v for k, v in config["components"]["transformer"]["model"].items() if k != "get_spans"} == {
        k: v for k, v in transformer["model"].items() if k != "get_spans"
    }
    util.Config(config).interpolate()  # nothing refers to the removed component
    assert config["components"][name]["model"]["tok2vec"] == base["components"]["binder_ner"]["model"]["text_encoder"]
    for block in ("training", "corpora", "paths", "system"):
        if block == "training":
            assert {k: v for k, v in config[block].items() if k != "score_weights"} == {
                k: v for k, v in base[block].items() if k != "score_weights"
            }
        else:
            assert config[block] == base[block]
    if system == "spancat":
        suggester = config["components"]["spancat"]["suggester"]
        assert (suggester["min_size"], suggester["max_size"]) == (1, 7)
        assert config["training"]["score_weights"] == {"spans_sc_f": 1.0}
    else:
        assert config["training"]["score_weights"] == {"ents_f": 1.0}
    # the base config is left alone
    assert "binder_ner" in base["components"]


def test_binder_system_uses_the_suggester_width() -> None:
    base = util.load_config(BINDER_NCBI, interpolate=False)
    config = system_config(base, "binder_ner", max_width=7, spans_key="spans", nested=True)
    assert config["components"]["binder_ner"]["max_span_width"] == 7
    assert config["components"]["binder_ner"]["spans_key"] == "spans"
    # model-best is picked by the output the row reports: nested spans here,
    # doc.ents (as for spaCy ner) on a flat corpus
    assert config["training"]["score_weights"] == {"spans_spans_f": 1.0, "spans_sc_f": 0.0, "ents_f": 0.0}
    flat = system_config(base, "binder_ner", max_width=7, spans_key="spans")
    assert flat["training"]["score_weights"] == {"ents_f": 1.0, "spans_sc_f": 0.0, "spans_spans_f": 0.0}
    with pytest.raises(ValueError, match="Unknown system"):
        system_config(base, "crf", 7, "sc")


@pytest.mark.parametrize("system,nested", [(s, False) for s in SYSTEMS] + [("binder_ner", True)])
def test_system_configs_build_a_pipeline(system: str, nested: bool) -> None:
    """With the tiny config (tok2vec instead of a transformer) every derived
    config builds and initializes, and once spaCy has merged in the
    factories' default score weights, model-best is still picked by the one
    F-score the system's row reports."""
    base = util.load_config(BINDER_TINY, interpolate=False)
    config = util.Config(system_config(base, system, max_width=3, spans_key="sc", nested=nested)).interpolate()
    nlp = util.load_model_from_config(config, auto_fill=True, validate=True)
    weights = nlp.config["training"]["score_weights"]
    primary = "spans_sc_f" if system == "spancat" or nested else "ents_f"
    assert {key for key, weight in weights.items() if weight} == {primary}
    doc = Doc(nlp.vocab, words=["Mutations", "cause", "breast", "cancer", "."])
    doc.spans["sc"] = [Span(doc, 2, 4, "Disease")]
    doc.ents = [Span(doc, 2, 4, "Disease")]
    from spacy.training import Example

    examples = [Example(nlp.make_doc(doc.text), doc)]
    nlp.initialize(lambda: examples)
    assert nlp.pipe_names[-1] == {"binder_ner": "binder_ner", "spacy_ner": "ner", "spancat": "spancat"}[system]
    assert "Disease" in nlp.get_pipe(nlp.pipe_names[-1]).labels


def test_budget_flat_or_linear_decay() -> None:
    base = util.load_config(BINDER_NCBI, interpolate=False)
    apply_budget(base, epochs=3, learn_rate=2e-4, batch_size=500, eval_frequency=10, train_limit=7)
    assert base["training"]["optimizer"]["learn_rate"] == 2e-4
    assert (base["training"]["max_epochs"], base["training"]["max_steps"], base["training"]["patience"]) == (3, 0, 0)
    assert base["training"]["batcher"]["size"] == 500
    assert base["corpora"]["train"]["limit"] == 7
    apply_budget(base, epochs=3, learn_rate=2e-4, batch_size=500, eval_frequency=10, decay_steps=60)
    schedule = util.registry.resolve({"lr": base["training"]["optimizer"]["learn_rate"]})["lr"]
    rates = list(itertools.islice(schedule, 71))  # warmup_linear.v1 yields one rate per step
    rates = [rates[step] for step in (0, 30, 60, 70)]
    assert rates == pytest.approx([2e-4, 1e-4, 0.0, 0.0])


def test_batches_per_epoch_counts_padded_batches(tmp_path: Path) -> None:
    """Ten 4-token docs and three 40-token docs in 100-token padded batches:
    the short ones pad to 40 tokens together (one batch); a batch with a long
    doc pads every doc to 40, so at most two fit (two batches)."""
    vocab = spacy.blank("en").vocab
    docs = [Doc(vocab, words=["a"] * 4) for _ in range(10)] + [Doc(vocab, words=["b"] * 40) for _ in range(3)]
    DocBin(docs=docs).to_disk(tmp_path / "train.spacy")
    padded = {"@batchers": "spacy.batch_by_padded.v1", "size": 100, "buffer": 256, "discard_oversize": False, "get_length": None}
    assert batches_per_epoch(tmp_path / "train.spacy", padded) == 3
    assert batches_per_epoch(tmp_path / "train.spacy", padded, train_limit=10) == 1
    # the config's own batcher, whichever it is: by words (no padding), 40 + 120 tokens
    by_words = {"@batchers": "spacy.batch_by_words.v1", "size": 100, "tolerance": 0.0, "discard_oversize": False, "get_length": None}
    assert batches_per_epoch(tmp_path / "train.spacy", by_words) == 2


def test_primary_scores_pick_the_output_that_fits_the_corpus() -> None:
    scores = {"ents_p": 0.5, "ents_r": 1.0, "ents_f": 2 / 3, "spans_sc_p": 0.25, "spans_sc_r": 0.5, "spans_sc_f": 1 / 3}
    assert primary_scores("binder_ner", scores, nested=False, spans_key="sc")["f"] == 66.67
    assert primary_scores("binder_ner", scores, nested=True, spans_key="sc")["f"] == 33.33
    assert primary_scores("spancat", scores, nested=False, spans_key="sc")["output"] == 'doc.spans["sc"]'
    with pytest.raises(ValueError, match="No ents_"):
        primary_scores("spacy_ner", {"spans_sc_f": 0.5}, nested=False, spans_key="sc")


def test_merge_rows_replaces_same_system_and_dataset() -> None:
    old = [{"system": "a", "dataset": "x", "f": 1}, {"system": "b", "dataset": "x", "f": 2}, {"system": "a", "dataset": "y", "f": 3}]
    new = [{"system": "a", "dataset": "x", "f": 9}]
    merged = merge_rows(old, new)
    assert [(r["system"], r["dataset"], r["f"]) for r in merged] == [("b", "x", 2), ("a", "y", 3), ("a", "x", 9)]


def test_merge_rows_by_seed_keeps_one_row_per_seed_and_budget() -> None:
    def row(seed: int, f: float, **budget) -> dict:
        return {"system": "a", "dataset": "x", "epochs": 4, "seed": seed, "f": f, **budget}

    old = [row(0, 1), row(1, 2), row(1, 3, epochs=2)]
    merged = merge_rows(old, [row(1, 9), row(2, 5)], by_seed=True)
    # seed 1 at 4 epochs is replaced; seed 1 at 2 epochs is another budget
    assert [(r["seed"], r["epochs"], r["f"]) for r in merged] == [(0, 4, 1), (1, 2, 3), (1, 4, 9), (2, 4, 5)]
    # rows written before "schedule" was recorded were flat-rate runs
    assert merge_rows([row(0, 1)], [row(0, 7, schedule="flat")], by_seed=True) == [row(0, 7, schedule="flat")]


def test_parse_seeds() -> None:
    assert parse_seeds("3, 1,2") == [3, 1, 2]
    for bad, message in (("1,x", "comma-separated integers"), (" , ", "empty"), ("1,2,1", "repeats")):
        with pytest.raises(ValueError, match=message):
            parse_seeds(bad)


def test_seeds_table_gap_to_the_best_other_system() -> None:
    budget = {"dataset": "ncbi", "encoder": "m", "epochs": 4, "learn_rate": 1e-4, "schedule": "linear", "train_limit": 0}

    def row(system: str, seed: int, f: float, **changes) -> dict:
        return {**budget, "system": system, "seed": seed, "f": f, **changes}

    rows = [
        row("spacy_ner", 0, 84.0), row("binder_ner", 0, 85.0), row("spancat", 0, 84.5),
        row("spacy_ner", 1, 84.0), row("binder_ner", 1, 83.0), row("spancat", 1, 82.0),
        row("binder_ner", 2, 80.0),
        # another budget: a table of its own, not mixed into the first
        row("binder_ner", 0, 70.0, epochs=2), row("spacy_ner", 0, 60.0, epochs=2),
    ]  # fmt: skip
    first, second = seeds_markdown(rows).split("\n\nncbi, m, 2 epochs")
    assert second.splitlines()[0] == ", lr 0.0001 → 0 linear: 1 seed with every system"
    assert "| 0 | 70.00 | 60.00 | +10.00 |" in second and "mean" not in second
    lines = first.splitlines()
    assert lines[0] == "ncbi, m, 4 epochs, lr 0.0001 → 0 linear: 2 seeds with every system"
    # binder_ner first; the best other system is ner (mean 84.0 against spancat's 83.25),
    # and the gaps are paired with it: 85.0 - 84.0 and 83.0 - 84.0
    assert lines[2] == "| Seed | binder_ner F | spacy_ner F | spancat F | binder_ner - spacy_ner |"
    assert lines[4] == "| 0 | 85.00 | 84.00 | 84.50 | +1.00 |"
    assert lines[5] == "| 1 | 83.00 | 84.00 | 82.00 | -1.00 |"
    # gaps +1 and -1: mean 0, sd sqrt(2) = 1.41, standard error 1.41 / sqrt(2) = 1.00
    assert lines[6] == "| mean (sd) | 84.00 (1.41) | 84.00 (0.00) | 83.25 (1.77) | **+0.00** (1.41) |"
    assert "Mean gap +0.00 F, standard error 1.00 over 2 seeds." in lines
    assert any("highest mean F over these seeds: spacy_ner" in line for line in lines)
    # seed 2 has only binder_ner: left out of the table, and said so
    assert not any(line.startswith("| 2 |") for line in lines)
    assert lines[-1] == "Left out, without a row for every system: seed 2 (no spacy_ner, spancat)."
    # seeds in numeric order
    pairs = [row(system, seed, 1.0) for seed in (10, 2, 1) for system in ("binder_ner", "spacy_ner")]
    assert [line.split(" |")[0] for line in seeds_markdown(pairs).splitlines()[4:7]] == ["| 1", "| 2", "| 10"]
    # two rows of one system, seed and budget are two variants under one name
    with pytest.raises(ValueError, match="Two rows for binder_ner with seed 0"):
        seeds_markdown(rows + [row("binder_ner", 0, 99.0)])


def test_seed_and_seeds_together_are_refused(tmp_path: Path) -> None:
    cmd = [
        sys.executable, str(script_path("benchmark.py")), "run", "x", str(tmp_path), str(BINDER_TINY),
        "--seed", "1", "--seeds", "1,2", "--output", str(tmp_path / "b.json"),
    ]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "--seed and --seeds both given" in result.stdout + result.stderr
    assert not (tmp_path / "b.json").exists()


def test_markdown_reports_seconds_per_epoch() -> None:
    row = {
        "system": "spancat", "dataset": "genia", "output": "doc.spans", "encoder": "m", "epochs": 4,
        "p": 1.0, "r": 2.0, "f": 3.0, "train_seconds": 400.0, "words_per_second": 10.0, "peak_rss_mb": 5.0,
    }  # fmt: skip
    line = rows_to_markdown([row]).splitlines()[-1]
    assert "| 100 |" in line and "**3.00**" in line
    # rows without a schedule are from flat-rate runs
    assert "| 0.0001 flat |" in rows_to_markdown([{**row, "learn_rate": 1e-4}])
    assert "| 0.0001 → 0 linear |" in rows_to_markdown([{**row, "learn_rate": 1e-4, "schedule": "linear"}])


@pytest.mark.slow
@needs_data
def test_benchmark_run_on_a_slice(tmp_path: Path) -> None:
    """The three systems train on a slice of NCBI-disease with the tiny
    config; rows land in the JSON, and a rerun of one system replaces its row."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for split, name, n in (("train", "train.tsv", 60), ("dev", "devel.tsv", 20), ("test", "test.tsv", 20)):
        slice_blocks(DATA / "ncbi_disease" / name, tmp_path / name, n)
        subprocess.run(
            [sys.executable, str(script_path("convert_ncbi.py")), str(tmp_path / name), str(corpus / f"{split}.spacy")],
            check=True, capture_output=True,
        )  # fmt: skip
    output, table = tmp_path / "benchmark.json", tmp_path / "benchmark.md"
    common = [
        sys.executable, str(script_path("benchmark.py")), "run", "ncbi_slice", str(corpus), str(BINDER_TINY),
        "--work-dir", str(tmp_path / "work"), "--output", str(output), "--table", str(table),
        "--epochs", "2", "--learn-rate", "0.003", "--eval-frequency", "10",
    ]  # fmt: skip
    result = subprocess.run(common, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rows = srsly.read_json(output)
    assert [row["system"] for row in rows] == list(SYSTEMS)
    nlp = spacy.blank("en")
    longest = max(len(s) for d in DocBin().from_disk(corpus / "train.spacy").get_docs(nlp.vocab) for s in d.ents)
    for row in rows:
        assert row["dataset"] == "ncbi_slice" and row["epochs"] == 2 and row["max_span_width"] == longest
        assert 0.0 <= row["p"] <= 100.0 and 0.0 <= row["r"] <= 100.0 and 0.0 <= row["f"] <= 100.0
        assert row["train_seconds"] > 0 and row["words_per_second"] > 0 and row["peak_rss_mb"] > 50
        assert row["device"] == "cpu" and "peak_gpu_mb" not in row
    assert rows[0]["output"] == "doc.ents" and rows[2]["output"] == 'doc.spans["sc"]'
    assert table.read_text().count("| ncbi_slice |") == 3
    assert all(row["schedule"] == "flat" and row["seed"] == 0 for row in rows)
    rerun_args = ["--systems", "spancat", "--schedule", "linear", "--seed", "7"]
    rerun = subprocess.run(common + rerun_args, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    rows = srsly.read_json(output)
    assert [row["system"] for row in rows] == ["binder_ner", "spacy_ner", "spancat"]
    assert (rows[2]["schedule"], rows[2]["seed"]) == ("linear", 7)
    spancat_config = util.load_config(tmp_path / "work" / "ncbi_slice" / "spancat" / "config.cfg")
    decay = spancat_config["training"]["optimizer"]["learn_rate"]
    batcher = {**spancat_config["training"]["batcher"], "size": 1000}
    assert decay["total_steps"] == 2 * batches_per_epoch(corpus / "train.spacy", batcher)
    assert spancat_config["system"]["seed"] == 7
    # --seeds: every system once per seed, rows per seed, and the table of gaps
    seeds_json, seeds_md = tmp_path / "seeds.json", tmp_path / "seeds.md"
    seeds_args = ["--systems", "binder_ner,spacy_ner", "--epochs", "1", "--seeds", "1,2"]
    seeds_cmd = [
        sys.executable, str(script_path("benchmark.py")), "run", "ncbi_slice", str(corpus), str(BINDER_TINY),
        "--work-dir", str(tmp_path / "work"), "--output", str(seeds_json), "--table", str(seeds_md),
        "--learn-rate", "0.003", "--eval-frequency", "10", *seeds_args,
    ]  # fmt: skip
    seeds_run = subprocess.run(seeds_cmd, capture_output=True, text=True, timeout=900)
    assert seeds_run.returncode == 0, seeds_run.stdout[-3000:] + seeds_run.stderr[-3000:]
    seed_rows = srsly.read_json(seeds_json)
    assert [(r["system"], r["seed"]) for r in seed_rows] == [
        ("binder_ner", 1), ("spacy_ner", 1), ("binder_ner", 2), ("spacy_ner", 2)
    ]  # fmt: skip
    assert all(r["eval_frequency"] == 10 and r["epochs"] == 1 for r in seed_rows)
    for seed in (1, 2):
        config = util.load_config(tmp_path / "work" / "ncbi_slice" / f"seed_{seed}" / "binder_ner" / "config.cfg")
        assert config["system"]["seed"] == seed and config["training"]["max_epochs"] == 1
        f = {r["system"]: r["f"] for r in seed_rows if r["seed"] == seed}
        assert f"| {seed} | {f['binder_ner']:.2f} | {f['spacy_ner']:.2f} | {f['binder_ner'] - f['spacy_ner']:+.2f} |" in seeds_md.read_text()
    assert srsly.read_json(output) == rows  # the one-seed rows are untouched
    # ner cannot nest: refused with a clear message
    nested = subprocess.run(common + ["--nested"], capture_output=True, text=True, timeout=120)
    assert nested.returncode != 0 and "cannot predict nested spans" in nested.stdout + nested.stderr


def test_benchmark_workflow_dry_run(tmp_path: Path) -> None:
    """The benchmark workflow starts by converting the corpora it reads in the
    user project, then runs its three steps."""
    copy_project(tmp_path)
    result = run_project(["run", "benchmark", str(tmp_path / "benchmarks"), "--dry"], tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert out.index("project run fetch ../project --vars.corpus genia") < out.index("benchmark.py run ncbi_disease")
    assert "benchmark.py run genia ../project/corpus/genia" in out and "overhead.py" in out

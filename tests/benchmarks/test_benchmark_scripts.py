"""The measuring scripts of benchmarks/ (overhead.py, scaling.py,
profile_binder.py), run as a user runs them on a tiny trained
transformer + binder_ner pipeline."""
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import srsly
from spacy.tokens import DocBin
from spacy.vocab import Vocab

from util import DESCRIPTIONS, NESTED_DATA, load_script, make_examples, script_path, train, transformer_pipeline

N_COPIES = 3  # docs in the DocBin: NESTED_DATA repeated


def run_script(name: str, *args) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, str(script_path(name)), *map(str, args)], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, f"{name} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def trained(tiny_bert_path, tmp_path_factory):
    """(pipeline folder, .spacy file with gold spans) of a briefly trained
    tiny-BERT + binder_ner pipeline."""
    folder = tmp_path_factory.mktemp("benchmark_scripts")
    nlp = transformer_pipeline(tiny_bert_path)
    examples = make_examples(nlp, NESTED_DATA)
    train(nlp, examples, 3, descriptions=DESCRIPTIONS)
    nlp.to_disk(folder / "model")
    docs_path = folder / "docs.spacy"
    DocBin(docs=[eg.reference for eg in examples] * N_COPIES).to_disk(docs_path)
    return folder / "model", docs_path


def test_overhead(trained, tmp_path):
    model, docs = trained
    output = tmp_path / "metrics" / "overhead.json"
    proc = run_script("overhead.py", model, docs, "--output", output, "--n-docs", 6, "--rounds", 2, "--batch-size", 4)
    assert "words/s" in proc.stdout
    result = srsly.read_json(output)
    keys = {"model", "docs", "n_docs", "words", "rounds", "words_per_second_full",
            "words_per_second_transformer_only", "ratio", "overhead_pct", "binder_seconds_share"}  # fmt: skip
    assert keys <= set(result)
    assert result["n_docs"] == 6 and result["rounds"] == 2
    assert result["words"] == sum(len(text.split()) for text, _ in (NESTED_DATA * 2)[:6])
    assert result["words_per_second_full"] > 0 and result["words_per_second_transformer_only"] > 0
    assert result["ratio"] > 0
    assert result["ratio"] == pytest.approx(
        result["words_per_second_full"] / result["words_per_second_transformer_only"], abs=2e-3
    )
    assert result["overhead_pct"] == pytest.approx(100 * (1 - result["ratio"]), abs=0.02)
    # binder alone is timed in its own pass: on 6 tiny docs and busy cores it
    # can take longer than a full pass, so only its sign is certain
    assert result["binder_seconds_share"] > 0
    assert result["device"] == "cpu"


def test_scaling_build_doc():
    scaling = load_script("scaling.py")
    vocab = Vocab()
    sources = scaling.source_sentences(vocab, None)
    doc = scaling.build_doc(vocab, sources, 100)
    assert len(doc) == 100
    starts = [t.i for t in doc if t.is_sent_start]
    expected, i = [], 0
    while i < 100:
        expected.append(i)
        i += len(sources[(len(expected) - 1) % len(sources)])
    assert starts == expected
    assert doc.text.startswith(sources[0].text + " " + sources[1].text)


def test_scaling_passes_the_allocator_setting_to_each_measurement(trained, tmp_path):
    model, docs = trained
    output = tmp_path / "scaling.json"
    run_script("scaling.py", model, "--output", output, "--sizes", 60, "--source", docs,
               "--mmap-threshold", 131072)
    result = srsly.read_json(output)
    assert result["malloc_mmap_threshold"] == 131072
    assert [row["malloc_mmap_threshold"] for row in result["rows"]] == [131072]


@pytest.mark.slow
def test_scaling(trained, tmp_path):
    model, docs = trained
    output = tmp_path / "scaling.json"
    sizes = [50, 200, 800]
    proc = run_script(
        "scaling.py", model, "--output", output, "--sizes", ",".join(map(str, sizes)),
        "--source", docs, "--fit-min-tokens", 50,
    )  # fmt: skip
    assert "Exponents" in proc.stdout
    result = srsly.read_json(output)
    assert {"model", "rows", "time_exponent", "memory_exponent", "fit_min_tokens"} <= set(result)
    assert result["fit_min_tokens"] == 50
    rows = result["rows"]
    assert len(rows) == len(sizes)
    for row, size in zip(rows, sizes):
        assert abs(row["tokens"] - size) <= 0.1 * size
        assert row["seconds"] > 0 and row["peak_rss_increase_mb"] >= 0
        # a sentence per source doc piece: the NESTED_DATA docs have 7, 7, 7 and 5 words
        assert row["sentences"] >= size // 7
    assert [row["tokens"] for row in rows] == sorted({row["tokens"] for row in rows})
    assert result["malloc_mmap_threshold"] is None and all(row["malloc_mmap_threshold"] is None for row in rows)
    assert isinstance(result["time_exponent"], float) and math.isfinite(result["time_exponent"]), result
    # on the CPU: no GPU figures, and no GPU exponent fitted from missing values
    assert not any("peak_gpu_increase_mb" in row for row in rows)
    assert result["gpu_memory_exponent"] is None
    # null only when fewer than two sizes added measurable memory
    if sum(row["peak_rss_increase_mb"] > 0 for row in rows) >= 2:
        assert isinstance(result["memory_exponent"], float) and math.isfinite(result["memory_exponent"]), result
    else:
        assert result["memory_exponent"] is None


@pytest.mark.slow
def test_profile_binder(trained, tmp_path):
    model, docs = trained
    out = tmp_path / "profile"
    proc = run_script("profile_binder.py", model, docs, "--output-dir", out, "--n-docs", 8, "--train-steps", 2, "--batch-size", 4)
    assert "binder_ner" in proc.stdout
    for stage in ("inference", "training"):
        torch_text = (out / f"{stage}_torch.txt").read_text(encoding="utf8")
        assert "aten::" in torch_text and "binder_ner." in torch_text
        cprofile_text = (out / f"{stage}_cprofile.txt").read_text(encoding="utf8")
        assert "spacy_binder" in cprofile_text and "cumulative" in cprofile_text
    summary = srsly.read_json(out / "summary.json")
    for stage, method in (("inference", "predict"), ("training", "update")):
        row = summary[stage]
        assert row["wall_seconds"] > 0
        assert row["methods_seconds"][f"binder_ner.{method}"] > 0
        shares = [row["transformer_share"], row["binder_ner_share"], row["other_share"]]
        assert all(0 <= share <= 1 for share in shares)
        assert sum(shares) == pytest.approx(1, abs=0.02)
    assert summary["training"]["methods_seconds"]["transformer.backward"] > 0


def test_annotate_scaling_refuses_records_that_differ_from_nlp_pipe():
    """The speed rows of annotate_scaling.py count only if annotate wrote
    what nlp.pipe predicts: a missing id, a changed label or a score off by
    more than 1e-4 stops the script."""
    script = load_script("annotate_scaling.py")
    expected = {0: [(0, 4, "PER", 0.9)], 1: []}

    def record(doc_id, spans):
        return {"id": doc_id, "spans": [{"start": s, "end": e, "label": l, "score": p} for s, e, l, p in spans]}

    script.check_same([record(0, [(0, 4, "PER", 0.90005)]), record(1, [])], expected)
    for wrong in (
        [record(0, [(0, 4, "PER", 0.9)])],
        [record(0, [(0, 4, "LOC", 0.9)]), record(1, [])],
        [record(0, [(0, 4, "PER", 0.91)]), record(1, [])],
        [record(0, []), record(1, [])],
    ):
        with pytest.raises(SystemExit):
            script.check_same(wrong, expected)


def test_int8_speed(trained, tmp_path):
    model, docs = trained
    output = tmp_path / "int8.json"
    proc = run_script("int8_speed.py", model, docs, "--dataset", "toy", "--output", output,
                      "--sentences-per-doc", 2, "--rounds", 1, "--batch-size", 4,
                      "--calibration", docs, "--calibration-docs", 5, "--smoothing", 0.7)
    fp32, int8, smoothed = srsly.read_json(output)
    assert [row["precision"] for row in (fp32, int8, smoothed)] == ["fp32", "int8", "int8"]
    assert fp32["smoothing"] is None and int8["smoothing"] is None and smoothed["smoothing"] == pytest.approx(0.7)
    assert smoothed["calibration_docs"] == 5
    # the smoothed pipeline as saved and loaded back: every Linear of the tiny transformer wrapped
    assert fp32["smoothed_layers"] == int8["smoothed_layers"] == 0 and smoothed["smoothed_layers"] > 0
    for row in (fp32, int8, smoothed):
        assert {"dataset", "words_per_second", "ents_f", "spans_f", "peak_rss_mb", "disk_mb"} <= set(row)
        assert row["dataset"] == "toy" and row["words_per_second"] > 0
        # the DocBin holds sentence docs: joined two by two
        assert row["docs"] == math.ceil(len(NESTED_DATA) * N_COPIES / 2) and row["unit"] == "2 sentences per doc"
        assert row["peak_rss_mb"] > row["load_mb"] > 0
    for row in (int8, smoothed):
        assert row["speedup"] == pytest.approx(row["words_per_second"] / fp32["words_per_second"], abs=2e-3)
    assert "int8 smoothed" in proc.stdout and "x the fp32 words/s" in proc.stdout
    # the rows say which kernels the int8 weights were packed for, and the allocator settings
    assert fp32["int8_engine"] is None and int8["int8_engine"] == smoothed["int8_engine"]
    assert int8["int8_engine"] in torch.backends.quantized.supported_engines
    malloc_env = {key: value for key, value in os.environ.items() if key.startswith("MALLOC_")}
    assert all(row["malloc_env"] == malloc_env for row in (fp32, int8, smoothed))


def test_head_speed(trained, tmp_path):
    model, docs = trained
    output = tmp_path / "head.json"
    proc = run_script("head_speed.py", model, docs, "--dataset", "toy", "--output", output,
                      "--sentences-per-doc", 2, "--rounds", 2, "--batch-size", 4)
    vectors, factored = srsly.read_json(output)
    assert [row["span_scores"] for row in (vectors, factored)] == ["candidate vectors", "factored"]
    # the same docs, and the two ways score the same spans (float noise only)
    assert vectors["words"] == factored["words"] == sum(len(text.split()) for text, _ in NESTED_DATA * N_COPIES)
    assert 0 <= factored["max_span_score_difference"] < 1e-4
    for row in (vectors, factored):
        assert row["head_ms_per_1000_words"] == pytest.approx(
            row["predict_ms_per_1000_words"] + row["set_annotations_ms_per_1000_words"], abs=0.02
        )
        assert row["predict_ms_per_1000_words"] > 0
    assert "factored" in proc.stdout and "faster" in proc.stdout


def test_a_child_process_peak_is_its_own_not_its_parents():
    """peak_rss_mb in a fresh process (how int8_speed.py measures each
    pipeline) must not report the parent's size: Linux's ru_maxrss keeps the
    memory a forked child shared with its parent before exec."""
    import numpy

    ballast = numpy.ones(2**30 // 8)  # 1 GiB touched in this (the parent) process
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); "
        "from benchmark import peak_rss_mb; print(peak_rss_mb())"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(script_path("benchmark.py").parent)], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    child_mb = float(proc.stdout.strip().splitlines()[-1])
    assert 0 < child_mb < ballast.nbytes / 2**20 - 200
    del ballast


def test_buckets_speed_times_bucket_sizes_with_the_padded_predictions(tiny_bert_path, tmp_path):
    """buckets_speed.py: the pipeline padded, as saved and at other bucket
    sizes, timed side by side; every size predicts what the padded one does."""
    nlp = transformer_pipeline(tiny_bert_path, segments=True, max_segment_length=16, max_batch_pieces=64)
    examples = make_examples(nlp, NESTED_DATA)
    train(nlp, examples, 3, descriptions=DESCRIPTIONS)
    nlp.to_disk(tmp_path / "model")
    docs = tmp_path / "docs.spacy"
    DocBin(docs=[eg.reference for eg in examples] * N_COPIES).to_disk(docs)
    output = tmp_path / "buckets.json"
    run_script("buckets_speed.py", tmp_path / "model", docs, "--dataset", "toy", "--output", output,
               "--sentences-per-doc", 3, "--rounds", 1, "--max-batch-pieces", "64,16", "--no-heap-release")
    rows = srsly.read_json(output)
    assert [row["view"] for row in rows] == ["sentences", "documents"]
    for row in rows:
        assert row["max_batch_pieces"] == 64 and row["heap_release"] is False
        # the pipeline's own size is its 'bucketed' column, not loaded twice
        own, small = row["bucket_sizes"]
        assert own["max_batch_pieces"] == 64 and own["words_per_second"] == row["bucketed_words_per_second"]
        assert small["max_batch_pieces"] == 16 and small["words_per_second"] > 0
        assert row["docs_with_other_predictions"] == own["docs_with_other_predictions"] == small["docs_with_other_predictions"] == 0


def test_zero_shot_thresholds_equal_predicting_at_each_bar(trained, tmp_path):
    """zero_shot_thresholds.py predicts once at the lowest bar and filters by
    score; each bar's count must be what the pipeline predicts with
    untrained_threshold set to that bar, and P/R/F follow from the counts."""
    import spacy
    from spacy.tokens import Span

    model, _ = trained
    label, description = "MISC", "Anything else with a name: an event, a product or a nationality."
    descriptions = tmp_path / "descriptions.json"
    srsly.write_json(descriptions, {label: description})
    nlp = spacy.blank("en")
    gold_docs = []
    for text, spans in NESTED_DATA:
        doc = nlp.make_doc(text)
        # the LOC mentions stand in for the new type's gold
        doc.spans["sc"] = [Span(doc, start, end, label=label) for start, end, name in spans if name == "LOC"]
        gold_docs.append(doc)
    gold_path = tmp_path / "gold.spacy"
    DocBin(docs=gold_docs).to_disk(gold_path)
    output = tmp_path / "bars.json"
    run_script("zero_shot_thresholds.py", model, gold_path, "--type", label, "--descriptions", descriptions,
               "--bars", "0.9,0.5,0.0", "--output", output)
    rows = srsly.read_json(output)
    assert [row["untrained_threshold"] for row in rows] == [0.9, 0.5, 0.0]
    n_gold = sum(len(doc.spans["sc"]) for doc in gold_docs)
    assert all(row["gold"] == n_gold for row in rows)
    assert rows[-1]["predicted"] > 0  # every candidate of the new type is above 0
    assert [row["predicted"] for row in rows] == sorted(row["predicted"] for row in rows)
    pipeline = spacy.load(model)
    binder = pipeline.get_pipe("binder_ner")
    binder.add_label(label, description=description)
    for row in rows:
        binder.untrained_threshold = row["untrained_threshold"]
        predicted = sum(
            span.label_ == label for doc in pipeline.pipe(text for text, _ in NESTED_DATA) for span in doc.spans["sc"]
        )
        assert predicted == row["predicted"]
        p, r = row["p"], row["r"]
        # p and r are rounded to 0.005 each; f moves by at most twice that per unit of either
        assert row["f"] == pytest.approx(2 * p * r / (p + r) if p + r else 0.0, abs=0.025)
        assert r <= 100 * min(row["predicted"], n_gold) / n_gold + 0.01

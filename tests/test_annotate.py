"""`annotate` on Ray Data: the same answer as `nlp.pipe`, one record per input
id whatever the input holds or whatever happens to a worker, and resume.

The Ray tests share one local runtime that the module fixture starts and
stops; the interrupted-run test also runs the command line, which starts and
stops a runtime of its own."""
import json
import os
import signal
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import pytest
import spacy
from spacy.tokens import Span
from spacy.util import fix_random_seed

from spacy_binder.annotation import PartFolder, annotate, doc_record, parse_input_row
from util import NESTED_DATA, cnn_pipeline, make_examples, offline_env, train

ray = pytest.importorskip("ray")

SLOW_COMPONENT = '''
import os, time
from spacy.language import Language

@Language.component("sleepy")
def sleepy(doc):
    time.sleep(float(os.environ.get("SLEEPY_SECONDS", "0")))
    return doc
'''
TEXTS = [text for text, _ in NESTED_DATA] + [
    "Anna Berg moved to Oslo . the Bank of Rome hired her",
    "Oslo",
    "the University of Paris and the Bank of Rome gave money to the Anna Berg Foundation",
]


@pytest.fixture(scope="module")
def code_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("code") / "sleepy.py"
    path.write_text(SLOW_COMPONENT)
    spacy.util.import_file("sleepy_code", str(path))
    return path


@pytest.fixture(scope="module")
def pipeline_dir(tmp_path_factory, code_file) -> Path:
    """A trained CNN binder_ner pipeline, then a component that sleeps for
    SLEEPY_SECONDS per doc (0 unless a test sets it), so a run can be caught
    while it works."""
    fix_random_seed(0)
    nlp = cnn_pipeline()
    train(nlp, make_examples(nlp, NESTED_DATA), 40)
    nlp.add_pipe("sleepy")
    path = tmp_path_factory.mktemp("pipeline") / "pipeline"
    nlp.to_disk(path)
    return path


@pytest.fixture(scope="module")
def ray_runtime():
    os.environ.update(offline_env())  # workers inherit the driver's environment
    ray.init(num_cpus=3, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows))
    return path


def by_id(records):
    ids = [r["id"] for r in records]
    assert len(ids) == len(set(ids)), f"ids repeat: {sorted(ids)}"
    return {r["id"]: r for r in records}


# -- without Ray --------------------------------------------------------------


@pytest.mark.parametrize(
    "row,expected_id,error_part",
    [
        ('{"id": 1, "text": "Oslo"}', 1, None),
        ('{"id": "a", "text": ""}', "a", "is empty"),
        ('{"id": "a", "text": null}', "a", "is null"),
        ('{"id": "a", "text": 3}', "a", "a int"),
        ('{"id": "a"}', "a", "no 'text' field"),
        ('{"text": "Oslo"}', None, "no 'id' field"),
        ('{"id": "a", "text": "Oslo"', None, "not valid JSON"),
        ("[1, 2]", None, "not an object"),
        ('{"id": [1], "text": "Oslo"}', "[1]", "ids must be strings or integers"),
        ({"id": 7, "text": "Oslo"}, 7, None),
    ],
)
def test_parse_input_row_says_what_is_wrong(row, expected_id, error_part):
    doc_id, text, error = parse_input_row(row, "id", "text")
    assert doc_id == expected_id
    if error_part is None:
        assert error is None and text == "Oslo"
    else:
        assert text is None and error_part in error


def test_doc_record_has_char_offsets_and_the_spans_scores():
    nlp = spacy.blank("en")
    doc = nlp("Anna Berg moved to Oslo")
    doc.spans["sc"] = [Span(doc, 0, 2, label="PER"), Span(doc, 4, 5, label="LOC")]
    doc.spans["sc"].attrs["scores"] = [0.75, 0.5]
    doc.ents = [Span(doc, 0, 2, label="PER")]
    record = doc_record(doc, "d1", "sc")
    assert record["id"] == "d1" and record["error"] is None
    assert [(s["start"], s["end"]) for s in record["spans"]] == [(0, 9), (19, 23)]
    assert record["spans"][0]["score"] == 0.75
    # the entity's score is its span's score in the group
    assert record["ents"] == [{"start": 0, "end": 9, "label": "PER", "score": 0.75}]


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_part_folder_commits_whole_parts_and_reads_their_ids(tmp_path, suffix):
    folder = PartFolder(tmp_path / f"out{suffix}", part_size=2)
    folder.write([{"id": i, "ents": [], "spans": [], "error": None} for i in range(5)])
    # two parts of two are committed; the fifth record waits for flush
    assert len(folder.parts()) == 2
    expected = {0, 1, 2, 3} if suffix == ".jsonl" else {"0", "1", "2", "3"}
    assert PartFolder(tmp_path / f"out{suffix}").written_ids() == expected
    folder.flush()
    assert len(folder.read()) == 5
    (tmp_path / f"out{suffix}" / "part-x.tmp").write_text("half a part")
    PartFolder(tmp_path / f"out{suffix}")  # a new run removes leftovers
    assert not list((tmp_path / f"out{suffix}").glob("*.tmp"))


def test_output_folder_without_a_format_suffix_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"\.jsonl, \.parquet"):
        PartFolder(tmp_path / "out")


# -- on a local Ray runtime ---------------------------------------------------


BAD_ROWS = [
    {"id": "empty", "text": ""},
    {"id": "null", "text": None},
    {"id": "number", "text": 12},
    {"id": "no text"},
    {"text": "an id is missing"},
    '{"id": "broken", "text": "half a line',
    {"id": "d0", "text": "the same id again"},
]


def _actor_pids():
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if b"MapWorker" in cmdline and b"PipelineAnnotator" in cmdline:
                pids.append(int(entry.name))
    return pids


def _kill_an_actor_mid_run(state):
    deadline = time.time() + 300
    while time.time() < deadline and not state["done"]:
        pids = _actor_pids()
        if pids:
            time.sleep(2.0)  # loaded and in the middle of its batches
            state["running_when_killed"] = not state["done"]
            os.kill(pids[0], signal.SIGKILL)
            state["killed"] = pids[0]
            return
        time.sleep(0.05)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the actor process in /proc")
def test_same_answer_as_nlp_pipe_with_bad_records_and_a_killed_actor(
    tmp_path, pipeline_dir, code_file, ray_runtime, monkeypatch
):
    """One run (starting actors costs seconds each time) that checks three
    things: records equal `nlp.pipe`'s output; every id appears once, bad
    rows with an error; an actor killed mid-run is restarted by Ray and its
    batches redone, so nothing is lost or doubled."""
    monkeypatch.setenv("SLEEPY_SECONDS", "0.05")  # about 3 s of work per actor
    good = [{"id": f"d{i}", "text": TEXTS[i % len(TEXTS)]} for i in range(120)]
    rows = good[:60] + BAD_ROWS + good[60:]
    state = {"killed": None, "running_when_killed": False, "done": False}
    killer = threading.Thread(target=_kill_an_actor_mid_run, args=(state,))
    killer.start()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        stats = annotate(pipeline_dir, write_jsonl(tmp_path / "in.jsonl", rows), tmp_path / "out.jsonl",
                         actors=2, batch_size=4, code_path=code_file, progress=False)
    state["done"] = True
    killer.join()
    assert state["killed"] is not None and state["running_when_killed"], "no actor was killed mid-run"

    records = PartFolder(tmp_path / "out.jsonl").read()
    got = by_id([r for r in records if r["id"] is not None])
    assert set(got) == {row["id"] for row in good} | {"empty", "null", "number", "no text", "broken"} - {"broken"}
    for doc_id in ("empty", "null", "number", "no text"):
        assert got[doc_id]["error"], f"id {doc_id!r} should carry an error"
    without_id = [r["error"] for r in records if r["id"] is None]
    assert len(without_id) == 2 and any("no 'id'" in e for e in without_id) and any("JSON" in e for e in without_id)
    assert stats.repeated == 1 and stats.errors == 6
    assert any("repeat an id" in str(w.message) for w in caught)
    # the first "d0" is kept, the repeat skipped
    assert got["d0"]["error"] is None

    nlp = spacy.load(pipeline_dir)
    n_spans = 0
    for row, doc in zip(good, nlp.pipe(row["text"] for row in good)):
        record = got[row["id"]]
        assert record["error"] is None
        spans = doc.spans["sc"]
        assert [(s["start"], s["end"], s["label"]) for s in record["spans"]] == [
            (s.start_char, s.end_char, s.label_) for s in spans
        ]
        assert [(e["start"], e["end"], e["label"]) for e in record["ents"]] == [
            (e.start_char, e.end_char, e.label_) for e in doc.ents
        ]
        # batches differ (4 texts per actor call here), and padding changes
        # the float summation order, not the model: 1e-5 is far below any
        # score difference that could flip a decision at the 0.5 threshold
        for span_record, score in zip(record["spans"], spans.attrs["scores"]):
            assert span_record["score"] == pytest.approx(float(score), abs=1e-5)
        n_spans += len(spans)
    assert n_spans > 0, "the trained pipeline predicts no span: the comparison would be empty"


def test_parquet_in_and_out_with_other_field_names(tmp_path, pipeline_dir, code_file, ray_runtime):
    import pyarrow as pa
    import pyarrow.parquet as pq

    source = tmp_path / "in.parquet"
    pq.write_table(pa.table({"pmid": list(range(len(TEXTS))), "abstract": TEXTS, "year": [2020] * len(TEXTS)}), source)
    with pytest.raises(ValueError, match="no column 'body'"):
        annotate(pipeline_dir, source, tmp_path / "other.parquet", id_field="pmid", text_field="body",
                 code_path=code_file, progress=False)
    annotate(pipeline_dir, source, tmp_path / "out.parquet", id_field="pmid", text_field="abstract",
             batch_size=4, code_path=code_file, progress=False)
    records = by_id(PartFolder(tmp_path / "out.parquet").read())
    # Parquet stores ids as strings (one type per column)
    assert set(records) == {str(i) for i in range(len(TEXTS))}
    assert sum(len(r["spans"]) for r in records.values()) > 0


def test_an_interrupted_run_resumes_where_it_stopped(tmp_path, pipeline_dir, code_file, ray_runtime):
    """The command line (which starts and stops its own local runtime),
    stopped with Ctrl-C after some parts were written, then run again: the
    second run annotates only the ids the first did not write, and the
    output has every id once."""
    rows = [{"id": i, "text": TEXTS[i % len(TEXTS)]} for i in range(80)]
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    output = tmp_path / "out.jsonl"
    command = [sys.executable, "-m", "spacy_binder", "annotate", str(pipeline_dir), str(source), str(output),
               "--code", str(code_file), "--batch-size", "2", "--part-size", "4", "--no-progress"]
    env = offline_env(SLEEPY_SECONDS="0.1")
    # a child inherits an ignored SIGINT (Python then installs no Ctrl-C
    # handler): give it the default, so Ctrl-C reaches it whatever ran before
    first = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    # generous: Ray starts its niced workers slowly when the cores are busy
    deadline = time.time() + 600
    while time.time() < deadline and len(list(output.glob("part-*.jsonl"))) < 2 and first.poll() is None:
        time.sleep(0.1)
    first.send_signal(signal.SIGINT)
    first.wait(timeout=120)
    before = PartFolder(output).written_ids()
    assert 0 < len(before) < 80, f"the first run should stop part-way, it wrote {len(before)} of 80"
    stats = annotate(pipeline_dir, source, output, code_path=code_file, batch_size=2, part_size=4, progress=False)
    assert stats.resumed == len(before) and stats.written == 80 - len(before)
    records = by_id(PartFolder(output).read())
    assert set(records) == set(range(80))


def test_a_pipeline_that_does_not_load_fails_at_once_with_a_hint(tmp_path, pipeline_dir):
    source = write_jsonl(tmp_path / "in.jsonl", [{"id": 1, "text": "Oslo"}])
    # without --code the 'sleepy' component is unknown to spaCy in a fresh
    # process; here the driver has it registered, so break the path instead
    with pytest.raises(ValueError, match="neither a pipeline folder nor an installed"):
        annotate(tmp_path / "missing", source, tmp_path / "out.jsonl", progress=False)
    with pytest.raises(ValueError, match="Cannot tell the input format"):
        annotate(pipeline_dir, write_jsonl(tmp_path / "in.txt", ["x"]), tmp_path / "out2.jsonl", progress=False)

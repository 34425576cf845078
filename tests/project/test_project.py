"""The user's spaCy project in project/: fetch from a local mirror, and the
`all` and `demo` workflows (fetch, convert, train, evaluate, package,
visualize, report) on small slices of the three corpora with the tiny config.

The corpora come from ../shared/data (next to the checkout); tests that need
them are skipped when it is absent.
"""
import hashlib
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import srsly

from projects import BENCHMARKS, CORPORA, DATA, PROJECT, TINY_VARS, copy_project, make_mirror, needs_data, run_project
from util import load_script, offline_env, script_path, venv_with_wheel

def run_fetch(project_dir: Path, mirror: str, verify: str = "false", corpus: str = "") -> subprocess.CompletedProcess:
    script = project_dir / "scripts" / "fetch_assets.py"
    return subprocess.run(
        [sys.executable, str(script), "--mirror", mirror, "--verify", verify, "--corpus", corpus],
        cwd=project_dir, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_every_asset_belongs_to_one_corpus() -> None:
    """`fetch --corpus X` fetches the assets under X's folder: every asset must
    lie under exactly one corpus folder, and every corpus must have some."""
    fetch_assets = load_script("fetch_assets.py")
    assets = srsly.read_yaml(PROJECT / "project.yml")["assets"]
    assert all(asset["dest"].startswith("assets/") and asset["url"].startswith("https://") for asset in assets)
    per_corpus = {corpus: fetch_assets.read_assets(PROJECT, corpus) for corpus in CORPORA}
    assert sorted(a["dest"] for chosen in per_corpus.values() for a in chosen) == sorted(a["dest"] for a in assets)
    assert all(per_corpus.values())
    with pytest.raises(ValueError, match="Unknown corpus 'ncbi'"):
        fetch_assets.read_assets(PROJECT, "ncbi")


@needs_data
def test_fetch_takes_only_the_chosen_corpus(tmp_path: Path) -> None:
    """A mirror with only NCBI-disease serves the NCBI-disease workflow; the
    GENIA one names its missing files."""
    project_dir = copy_project(tmp_path)
    mirror = make_mirror(tmp_path / "mirror")
    for folder in ("conll2003", "genia"):
        shutil.rmtree(mirror / folder)
    result = run_fetch(project_dir, str(mirror), corpus="ncbi_disease")
    assert result.returncode == 0, result.stdout + result.stderr
    assert sorted(p.name for p in (project_dir / "assets").iterdir()) == ["ncbi_disease"]
    result = run_fetch(project_dir, str(mirror), corpus="genia")
    assert result.returncode != 0 and "assets/genia/GENIAcorpus3.02.tgz" in result.stdout
    assert "ncbi_disease" not in result.stdout.split("could not be fetched")[1]


@needs_data
def test_project_yml_checksums_match_shared_data() -> None:
    for asset in srsly.read_yaml(PROJECT / "project.yml")["assets"]:
        path = DATA / Path(asset["dest"]).relative_to("assets")
        assert hashlib.md5(path.read_bytes()).hexdigest() == asset["checksum"], asset["dest"]


@needs_data
def test_fetch_names_missing_file(tmp_path: Path) -> None:
    project_dir = copy_project(tmp_path)
    mirror = make_mirror(tmp_path / "mirror")
    (mirror / "genia" / "splits" / "dev.txt").unlink()
    result = run_fetch(project_dir, str(mirror))
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "assets/genia/splits/dev.txt" in output
    assert str(mirror / "genia" / "splits" / "dev.txt") in output
    # the real checksums reject the slices
    (mirror / "genia" / "splits" / "dev.txt").write_text("MEDLINE:1\n")
    result = run_fetch(project_dir, str(mirror), verify="true")
    assert result.returncode != 0 and "checksum mismatch" in result.stdout + result.stderr
    assert run_fetch(project_dir, str(mirror)).returncode == 0
    assert (project_dir / "assets" / "genia" / "splits" / "dev.txt").read_text() == "MEDLINE:1\n"


def test_fetch_without_mirror_explains(tmp_path: Path) -> None:
    project_dir = copy_project(tmp_path)
    result = run_fetch(project_dir, "")
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "spacy project assets" in output and "BINDER_DATA_MIRROR" in output
    assert "assets/ncbi_disease/train.tsv" in output


def test_evaluate_tables() -> None:
    metrics_to_markdown = load_script("evaluate_tables.py").metrics_to_markdown
    metrics = {
        "spans_sc_p": 0.5, "spans_sc_r": 0.25, "spans_sc_f": 1 / 3,
        "spans_sc_per_type": {"RNA": {"p": 1.0, "r": 0.5, "f": 2 / 3}, "DNA": {"p": 0.0, "r": 0.0, "f": 0.0}},
        "ents_p": 0.9, "ents_r": 0.8, "ents_f": 0.85, "ents_per_type": {"DNA": {"p": 0.9, "r": 0.8, "f": 0.85}},
    }  # fmt: skip
    text = metrics_to_markdown(metrics, "sc", "T")
    assert "| DNA | 0.00 | 0.00 | 0.00 |\n| RNA | 100.00 | 50.00 | 66.67 |" in text
    assert "| **total (micro)** | **50.00** | **25.00** | **33.33** |" in text
    assert "| **total (micro)** | **90.00** | **80.00** | **85.00** |" in text
    assert text.index("Nested spans") < text.index("Flat entities")


def test_workflow_dry_runs(tmp_path: Path) -> None:
    project_dir = copy_project(tmp_path)
    runs = [("all", corpus) for corpus in CORPORA] + [("demo", "ncbi_disease")]
    for workflow, corpus in runs:
        result = run_project(["run", workflow, str(project_dir), "--dry", "--vars.corpus", corpus], tmp_path)
        assert result.returncode == 0, result.stdout + result.stderr


def test_all_trains_on_the_configs_schedule() -> None:
    """`train` passes no schedule (the config's own); only `train-demo` does,
    and both train on the config named after the corpus."""
    commands = {cmd["name"]: cmd for cmd in srsly.read_yaml(PROJECT / "project.yml")["commands"]}
    train, demo = commands["train"]["script"][0], commands["train-demo"]["script"][0]
    assert "--training." not in train
    assert demo.startswith(train + " ") and "--training.max_steps ${vars.demo_max_steps}" in demo
    assert "../configs/binder_${vars.corpus}.cfg" in train
    for corpus in CORPORA:
        assert (PROJECT.parent / "configs" / f"binder_{corpus}.cfg").is_file()
        assert (PROJECT.parent / "configs" / "descriptions" / f"{corpus}.json").is_file()


def _check_outputs(project_dir: Path, corpus: str) -> None:
    metrics = srsly.read_json(project_dir / "metrics" / f"{corpus}.json")
    for key in ("spans_sc_f", "spans_sc_p", "spans_sc_r", "ents_f"):
        assert 0.0 <= metrics[key] <= 1.0, (key, metrics[key])
    table = (project_dir / "metrics" / f"{corpus}.md").read_text(encoding="utf8")
    assert "| Type | P | R | F |" in table and "total (micro)" in table
    html = (project_dir / "visualize" / f"{corpus}.html").read_text(encoding="utf8")
    assert 'class="spans"' in html and "predicted" in html and "gold" in html
    wheel = project_dir / "packages" / f"en_binder_{corpus}-0.1.0" / "dist" / f"en_binder_{corpus}-0.1.0-py3-none-any.whl"
    assert wheel.is_file()


def _install_and_load(wheel: Path, venv: Path) -> str:
    """pip-install the wheel into a fresh venv without downloading anything and
    run the packaged pipeline there; return its output."""
    python = venv_with_wheel(wheel, venv)
    code = (
        "import spacy, en_binder_ncbi_disease as pkg; nlp = spacy.load('en_binder_ncbi_disease'); "
        "doc = nlp('Mutations in the BRCA1 gene cause breast cancer and ovarian cancer.'); "
        "print(pkg.__file__); print(nlp.pipe_names); print([(s.text, s.label_) for s in doc.spans['sc']])"
    )
    result = subprocess.run([str(python), "-c", code], capture_output=True, text=True, env=offline_env(), timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def _last_logged_step(stdout: str) -> str:
    """The step column of the last row of spaCy's training table."""
    rows = [line.split() for line in stdout.splitlines() if re.match(r"^\s*\d+\s+\d+\s+[\d.]+", line)]
    return rows[-1][1] if rows else ""


@pytest.mark.slow
@needs_data
def test_project_end_to_end(tmp_path: Path) -> None:
    """`spacy project run all` for NCBI-disease and GENIA slices with the
    tiny config as each corpus's config, `demo` for CoNLL-2003 (the same
    steps on the demo schedule) and its rerun that finds nothing changed, then
    the NCBI wheel installed in a fresh venv."""
    project_dir = copy_project(tmp_path, tiny=True)
    mirror = make_mirror(tmp_path / "mirror")
    timings = {}
    # the config's own schedule: 40 steps (TINY_SCHEDULE); the demo's: 30
    for workflow, corpus, steps in (("all", "ncbi_disease", "40"), ("all", "genia", "40"), ("demo", "conll03", "30")):
        start = time.time()
        result = run_project(["run", workflow, str(project_dir), "--vars.corpus", corpus, *TINY_VARS], mirror)
        assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]
        timings[corpus] = time.time() - start
        _check_outputs(project_dir, corpus)
        # the last step prints the test scores and where everything went
        report = result.stdout[result.stdout.index(f"BINDER on {corpus}: test set") :]
        metrics = srsly.read_json(project_dir / "metrics" / f"{corpus}.json")
        assert f"{100 * metrics['ents_f']:.2f}" in report and f"{100 * metrics['spans_sc_p']:.2f}" in report
        assert str((project_dir / "visualize" / f"{corpus}.html").resolve()) in report
        assert _last_logged_step(result.stdout) == steps, result.stdout[-3000:]
    print("workflow seconds:", {k: round(v) for k, v in timings.items()})
    # a second run finds nothing changed (fetch only checks, report prints)
    result = run_project(["run", "demo", str(project_dir), "--vars.corpus", "conll03", *TINY_VARS], mirror)
    assert result.returncode == 0 and result.stdout.count("nothing changed") == 5, result.stdout
    wheel = project_dir / "packages" / "en_binder_ncbi_disease-0.1.0" / "dist" / "en_binder_ncbi_disease-0.1.0-py3-none-any.whl"
    output = _install_and_load(wheel, tmp_path / "venv")
    assert str(tmp_path / "venv") in output.splitlines()[0]
    assert "binder_ner" in output


def test_report_fails_on_missing_outputs(tmp_path: Path) -> None:
    metrics = tmp_path / "m.json"
    srsly.write_json(metrics, {"ents_p": 0.5, "ents_r": 0.25, "ents_f": 1 / 3})
    for name in ("model", "t.md", "w.whl"):
        (tmp_path / name).touch()
    args = [
        sys.executable, str(script_path("report.py")), "demo", "--model", str(tmp_path / "model"),
        "--metrics", str(metrics), "--table", str(tmp_path / "t.md"), "--package", str(tmp_path / "w.whl"),
        "--html", str(tmp_path / "missing.html"),
    ]  # fmt: skip
    result = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "Visualization: " + str(tmp_path / "missing.html") in result.stdout
    (tmp_path / "missing.html").touch()
    result = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    # flat scores only (no nested view in the metrics): one row, in percent
    assert "flat doc.ents" in result.stdout and "50.00   25.00   33.33" in result.stdout
    assert "nested" not in result.stdout


@pytest.mark.parametrize("folder", [PROJECT, BENCHMARKS], ids=["project", "benchmarks"])
def test_project_readme_is_generated_from_project_yml(folder: Path, tmp_path: Path) -> None:
    """Each project's README.md holds what `spacy project document` makes of
    its project.yml (rerun it after editing project.yml)."""
    result = run_project(["document", str(folder), "--output", str(tmp_path / "README.md")], tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    start = "<!-- WEASEL: AUTO-GENERATED DOCS START (do not remove) -->"
    end = "<!-- WEASEL: AUTO-GENERATED DOCS END (do not remove) -->"
    generated = (tmp_path / "README.md").read_text(encoding="utf8")
    committed = (folder / "README.md").read_text(encoding="utf8")
    section = committed[committed.index(start) : committed.index(end)]
    assert section.strip() == generated[generated.index(start) : generated.index(end)].strip()


def test_user_project_lists_only_user_commands() -> None:
    """Benchmarks and experiments live in benchmarks/, not in the user's project."""
    names = {cmd["name"] for cmd in srsly.read_yaml(PROJECT / "project.yml")["commands"]}
    assert names == {"fetch", "convert", "train", "train-demo", "evaluate", "evaluate-documents", "package", "visualize", "report"}
    harness = {cmd["name"] for cmd in srsly.read_yaml(BENCHMARKS / "project.yml")["commands"]}
    assert {"benchmark-ncbi", "benchmark-speed", "distant-compare"} <= harness and not names & harness


def test_train_script_syncs_total_steps_with_max_steps() -> None:
    train = load_script("train.py")
    TOTAL_STEPS, sync_total_steps = train.TOTAL_STEPS, train.sync_total_steps
    config = {"training": {"optimizer": {"learn_rate": {"@schedules": "warmup_linear.v1", "total_steps": 1500}}}}
    assert sync_total_steps(config, {"training.max_steps": 200}) == {"training.max_steps": 200, TOTAL_STEPS: 200}
    # left alone: no limit, an explicit total, a constant learning rate
    assert sync_total_steps(config, {"training.max_steps": 0}) == {"training.max_steps": 0}
    explicit = {"training.max_steps": 200, TOTAL_STEPS: 300}
    assert sync_total_steps(config, explicit) == explicit
    constant = {"training": {"optimizer": {"learn_rate": 0.001}}}
    assert sync_total_steps(constant, {"training.max_steps": 200}) == {"training.max_steps": 200}

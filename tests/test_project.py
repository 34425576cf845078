"""The spaCy project in project/: fetch from a local mirror, and the whole
`all` workflow (fetch, convert, train, evaluate, package, visualize) on small
slices of the three corpora with the tiny config.

The corpora come from ../shared/data (next to the checkout); tests that need
them are skipped when it is absent.
"""
import hashlib
import io
import re
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Dict, List

import pytest
import srsly

from util import offline_env, venv_with_wheel

REPO = Path(__file__).resolve().parent.parent
PROJECT = REPO / "project"
DATA = REPO.parent / "shared" / "data"
GENERATED = ["assets", "corpus", "training", "metrics", "packages", "visualize", "project.lock", "__pycache__"]
# Tiny schedule on the tiny config (CNN tok2vec + label embeddings, lr 0.003).
TINY_VARS = [
    "--vars.config", "../configs/binder_tiny.cfg",
    "--vars.verify_checksums", "false",
    "--vars.max_epochs", "0",
    "--vars.max_steps", "40",
    "--vars.eval_frequency", "20",
    "--vars.learn_rate", "0.003",
    "--vars.n_visualize", "5",
]  # fmt: skip

needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"corpus folder {DATA} not found")


def _blocks(path: Path) -> List[str]:
    """The blank-line-separated blocks of a file (sentences, DOCSTART lines)."""
    return [b for b in re.split(r"\n\s*\n", path.read_text(encoding="utf8")) if b.strip()]


def _slice_blocks(src: Path, dest: Path, n_sentences: int) -> None:
    """Copy blocks from the start of `src` until `n_sentences` sentences are in,
    keeping every -DOCSTART- block met on the way."""
    kept: List[str] = []
    n = 0
    for block in _blocks(src):
        kept.append(block)
        n += not block.startswith("-DOCSTART-")
        if n >= n_sentences:
            break
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text("\n\n".join(kept) + "\n\n", encoding="utf8")


def _slice_genia(src_dir: Path, dest_dir: Path, n_articles: Dict[str, int]) -> None:
    """A GENIA tarball and split lists with the first n articles of each split."""
    with tarfile.open(src_dir / "GENIAcorpus3.02.tgz", "r:gz") as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith("GENIAcorpus3.02.xml"))
        xml = tar.extractfile(member).read().decode("utf8")  # type: ignore[union-attr]
    head = xml[: xml.index("<article>")]
    articles = re.findall(r"<article>.*?</article>", xml, flags=re.DOTALL)
    kept: List[str] = []
    (dest_dir / "splits").mkdir(parents=True, exist_ok=True)
    for split, n in n_articles.items():
        ids = (src_dir / "splits" / f"{split}.txt").read_text(encoding="utf8").split()[:n]
        chosen = [a for a in articles if re.search(r"<bibliomisc>(.*?)</bibliomisc>", a).group(1) in ids]  # type: ignore[union-attr]
        kept += chosen
        (dest_dir / "splits" / f"{split}.txt").write_text("\n".join(ids) + "\n", encoding="utf8")
    data = (head + "\n".join(kept) + "\n</set>\n").encode("utf8")
    with tarfile.open(dest_dir / "GENIAcorpus3.02.tgz", "w:gz") as tar:
        info = tarfile.TarInfo(member.name)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    for name in ("dev", "test"):
        lines = (src_dir / "cnn_nested_ner_preprocessed" / f"{name}.jsonlines").read_text(encoding="utf8")
        out = dest_dir / "cnn_nested_ner_preprocessed" / f"{name}.jsonlines"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("".join(lines.splitlines(keepends=True)[:10]), encoding="utf8")


def make_mirror(mirror: Path) -> Path:
    """A data mirror laid out like ../shared/data with small slices of every
    corpus file (the MD5s therefore differ from project.yml's)."""
    for name, n in (("train.tsv", 80), ("devel.tsv", 30), ("test.tsv", 30)):
        _slice_blocks(DATA / "ncbi_disease" / name, mirror / "ncbi_disease" / name, n)
    for name, n in (("eng.train", 80), ("eng.testa", 30), ("eng.testb", 30)):
        _slice_blocks(DATA / "conll2003" / name, mirror / "conll2003" / name, n)
    _slice_genia(DATA / "genia", mirror / "genia", {"train": 8, "dev": 2, "test": 2})
    return mirror


def copy_project(dest: Path) -> Path:
    """Copy project/ and configs/ (which project.yml refers to as ../configs)
    without generated files; return the project folder."""
    shutil.copytree(PROJECT, dest / "project", ignore=shutil.ignore_patterns(*GENERATED))
    shutil.copytree(REPO / "configs", dest / "configs")
    return dest / "project"


def run_project(args: List[str], mirror: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run `python -m spacy project ARGS` with BINDER_DATA_MIRROR set."""
    env = offline_env(BINDER_DATA_MIRROR=str(mirror))
    return subprocess.run(
        [sys.executable, "-m", "spacy", "project", *args],
        env=env, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def run_fetch(project_dir: Path, mirror: str, verify: str = "false") -> subprocess.CompletedProcess:
    script = project_dir / "scripts" / "fetch_assets.py"
    return subprocess.run(
        [sys.executable, str(script), "--mirror", mirror, "--verify", verify],
        cwd=project_dir, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_project_yml_assets_match_fetch_outputs() -> None:
    config = srsly.read_yaml(PROJECT / "project.yml")
    dests = [asset["dest"] for asset in config["assets"]]
    fetch = next(cmd for cmd in config["commands"] if cmd["name"] == "fetch")
    assert fetch["outputs"] == dests
    assert all(dest.startswith("assets/") and asset["url"].startswith("https://") for dest, asset in zip(dests, config["assets"]))


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
    sys.path.insert(0, str(PROJECT / "scripts"))
    try:
        from evaluate_tables import metrics_to_markdown
    finally:
        sys.path.pop(0)
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
    for workflow in ("all", "genia", "conll03", "benchmark"):
        result = run_project(["run", workflow, str(project_dir), "--dry"], tmp_path)
        assert result.returncode == 0, result.stdout + result.stderr


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


@pytest.mark.slow
@needs_data
def test_project_end_to_end(tmp_path: Path) -> None:
    """`spacy project run all` for NCBI-disease, GENIA and CoNLL-2003 slices
    with the tiny config, then the NCBI wheel installed in a fresh venv."""
    project_dir = copy_project(tmp_path)
    mirror = make_mirror(tmp_path / "mirror")
    timings = {}
    for corpus in ("ncbi_disease", "genia", "conll03"):
        start = time.time()
        result = run_project(["run", "all", str(project_dir), "--vars.corpus", corpus, *TINY_VARS], mirror)
        assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]
        timings[corpus] = time.time() - start
        _check_outputs(project_dir, corpus)
        # the last step prints the test scores and where everything went
        report = result.stdout[result.stdout.index(f"BINDER on {corpus}: test set") :]
        metrics = srsly.read_json(project_dir / "metrics" / f"{corpus}.json")
        assert f"{100 * metrics['ents_f']:.2f}" in report and f"{100 * metrics['spans_sc_p']:.2f}" in report
        assert str((project_dir / "visualize" / f"{corpus}.html").resolve()) in report
    print("workflow seconds:", {k: round(v) for k, v in timings.items()})
    # a second run finds nothing changed
    result = run_project(["run", "all", str(project_dir), "--vars.corpus", "conll03", *TINY_VARS], mirror)
    assert result.returncode == 0 and result.stdout.count("nothing changed") == 6, result.stdout
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
        sys.executable, str(PROJECT / "scripts" / "report.py"), "demo", "--model", str(tmp_path / "model"),
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


def test_project_readme_is_generated_from_project_yml(tmp_path: Path) -> None:
    """project/README.md holds what `spacy project document` makes of the
    current project.yml (rerun it after editing project.yml)."""
    result = run_project(["document", str(PROJECT), "--output", str(tmp_path / "README.md")], tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    marker = "<!-- WEASEL: AUTO-GENERATED DOCS END (do not remove) -->"
    generated = (tmp_path / "README.md").read_text(encoding="utf8")
    committed = (PROJECT / "README.md").read_text(encoding="utf8")
    assert committed.split(marker)[0].strip() == generated.split(marker)[0].strip()


def test_train_script_syncs_total_steps_with_max_steps() -> None:
    sys.path.insert(0, str(PROJECT / "scripts"))
    try:
        from train import TOTAL_STEPS, sync_total_steps
    finally:
        sys.path.pop(0)
    config = {"training": {"optimizer": {"learn_rate": {"@schedules": "warmup_linear.v1", "total_steps": 1500}}}}
    assert sync_total_steps(config, {"training.max_steps": 200}) == {"training.max_steps": 200, TOTAL_STEPS: 200}
    # left alone: no limit, an explicit total, a constant learning rate
    assert sync_total_steps(config, {"training.max_steps": 0}) == {"training.max_steps": 0}
    explicit = {"training.max_steps": 200, TOTAL_STEPS: 300}
    assert sync_total_steps(config, explicit) == explicit
    constant = {"training": {"optimizer": {"learn_rate": 0.001}}}
    assert sync_total_steps(constant, {"training.max_steps": 200}) == {"training.max_steps": 200}

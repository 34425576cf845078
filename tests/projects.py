"""Helpers for the tests of the two spaCy projects, project/ (the user's
workflow) and benchmarks/ (the harness): where they are, small slices of the
corpora in ../shared/data, and running `spacy project`."""
import io
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Dict, List

import pytest
from thinc.api import Config

from util import offline_env

REPO = Path(__file__).resolve().parent.parent
PROJECT = REPO / "project"
BENCHMARKS = REPO / "benchmarks"
DATA = REPO.parent / "shared" / "data"
CORPORA = ("ncbi_disease", "conll03", "genia")
GENERATED = ["assets", "corpus", "training", "metrics", "packages", "visualize", "project.lock", "__pycache__"]
# the tiny config's schedule in the copied projects: a few seconds per corpus
TINY_SCHEDULE = {
    "training.max_epochs": 0,
    "training.max_steps": 40,
    "training.eval_frequency": 20,
    "training.optimizer.learn_rate.total_steps": 40,
}
# project vars for the tiny runs: the demo schedule as short, no MD5s of slices
TINY_VARS = [
    "--vars.verify_checksums", "false",
    "--vars.demo_max_epochs", "0",
    "--vars.demo_max_steps", "30",
    "--vars.demo_eval_frequency", "15",
    "--vars.n_visualize", "5",
]  # fmt: skip

needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"corpus folder {DATA} not found")


def _blocks(path: Path) -> List[str]:
    """The blank-line-separated blocks of a file (sentences, DOCSTART lines)."""
    return [b for b in re.split(r"\n\s*\n", path.read_text(encoding="utf8")) if b.strip()]


def slice_blocks(src: Path, dest: Path, n_sentences: int) -> None:
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
        slice_blocks(DATA / "ncbi_disease" / name, mirror / "ncbi_disease" / name, n)
    for name, n in (("eng.train", 80), ("eng.testa", 30), ("eng.testb", 30)):
        slice_blocks(DATA / "conll2003" / name, mirror / "conll2003" / name, n)
    _slice_genia(DATA / "genia", mirror / "genia", {"train": 8, "dev": 2, "test": 2})
    return mirror


def copy_project(dest: Path, tiny: bool = False) -> Path:
    """Copy project/, benchmarks/ and configs/ (which both project.yml files
    refer to as ../configs) without generated files; return the project folder.
    With `tiny`, every corpus config is the tiny config (CNN tok2vec + label
    embeddings) on TINY_SCHEDULE, so the workflows run in seconds."""
    ignore = shutil.ignore_patterns(*GENERATED)
    shutil.copytree(PROJECT, dest / "project", ignore=ignore)
    shutil.copytree(BENCHMARKS, dest / "benchmarks", ignore=ignore)
    shutil.copytree(REPO / "configs", dest / "configs")
    if tiny:
        config = Config().from_disk(REPO / "configs" / "binder_tiny.cfg", interpolate=False)
        for key, value in TINY_SCHEDULE.items():
            section, name = key.rsplit(".", 1)
            node = config
            for part in section.split("."):
                node = node[part]
            node[name] = value
        for corpus in CORPORA:
            config.to_disk(dest / "configs" / f"binder_{corpus}.cfg")
    return dest / "project"


def run_project(args: List[str], mirror: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run `python -m spacy project ARGS` with BINDER_DATA_MIRROR set."""
    env = offline_env(BINDER_DATA_MIRROR=str(mirror))
    return subprocess.run(
        [sys.executable, "-m", "spacy", "project", *args],
        env=env, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip

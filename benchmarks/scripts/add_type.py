"""Adding a type X to a trained pipeline with examples: the pipeline was
trained without X (zero_shot.py's pipeline, its train split without X's
gold), X is added by its description and fine-tuned with
configs/binder_add_types.cfg on the first N train sentences annotated for X
only, in three variants:

- rehearsal: the shipped config: X's docs train X's rows only, and up to
  `--rehearsal-limit` docs of the pipeline's own training data (without X)
  are mixed in and train the old types' rows only;
- new-only: the same without rehearsal data;
- plain: X's docs read by spacy.Corpus.v1, no rehearsal: their unlabelled
  text counts as "no entity" for every type (what a config without
  spacy-binder.NewTypesCorpus.v1 does).

With `--label-old-types`, the rehearsal and new-only variants also give X's
docs the pipeline's own predictions of the old types
(`corpora.train.old_types_from`): pseudo-labels, so the old types train on
X's text too.

Each row: the test P/R/F of X and of every old type, and of the old types
together, on binder_ner's ranked output (doc.spans on a nested corpus),
with the pipeline before the fine-tune (X by its description only) as the
`zero-shot` row. `--reference` names a pipeline trained from scratch on
the same N sentences with every type (the learning curve's point): X's F
there is the target.
"""
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import srsly
import typer
from wasabi import msg

import project_scripts  # noqa: F401  (the user project's scripts, importable)
from learning_curve import first_docs_for_sentences, read_docs
from zero_shot import score_states

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "configs" / "binder_add_types.cfg"
VARIANTS = ("rehearsal", "new-only", "plain")

app = typer.Typer(add_completion=False)


@app.callback()
def main() -> None:
    """Adding a type with examples: `run`."""


def only_type(docs: list, label: str, spans_key: str) -> list:
    """`docs` with every gold mention but those of `label` removed, in place."""
    for doc in docs:
        if spans_key in doc.spans:
            doc.spans[spans_key] = [span for span in doc.spans[spans_key] if span.label_ == label]
        doc.ents = [ent for ent in doc.ents if ent.label_ == label]
    return docs


def scores_of(pipeline_or_nlp, test_path: Path, label: str, nested: bool, spans_key: str) -> Dict[str, Any]:
    """Test P/R/F per type and of the types other than `label` together."""
    import spacy
    from spacy.tokens import DocBin

    nlp = spacy.load(pipeline_or_nlp) if isinstance(pipeline_or_nlp, Path) else pipeline_or_nlp
    gold = list(DocBin().from_disk(test_path).get_docs(nlp.vocab))
    states = score_states(nlp, gold, label, nested, spans_key)
    own = states["per_type"].get(label, {"p": 0.0, "r": 0.0, "f": 0.0})
    return {**own, "others": states["others"], "per_type_f": {k: v["f"] for k, v in states["per_type"].items()}}


def fine_tune_config(variant: str, dest: Path) -> Path:
    """configs/binder_add_types.cfg for a variant, written to `dest`."""
    from spacy import util

    config = util.load_config(CONFIG, interpolate=False)
    if variant == "plain":
        config["corpora"]["train"] = {
            "@readers": "spacy.Corpus.v1", "path": "${paths.train}", "max_length": 0, "gold_preproc": False,
            "limit": 0, "augmenter": None,
        }  # fmt: skip
    config.to_disk(dest)
    return dest


@app.command("run")
def run(
    dataset: str = typer.Argument(..., help="Dataset name for the rows (e.g. genia)"),
    corpus_dir: Path = typer.Argument(..., help="Folder with train/dev/test.spacy (every type)", exists=True, file_okay=False),
    pipeline: Path = typer.Argument(..., help="A pipeline trained without the type", exists=True, file_okay=False),
    rehearsal: Path = typer.Argument(..., help="Its training data (.spacy, without the type)", exists=True),
    label: str = typer.Option(..., "--type", help="The type to add"),
    descriptions: Path = typer.Option(..., "--descriptions", help="Type descriptions (JSON)", exists=True, dir_okay=False),
    new_sentences: int = typer.Option(500, "--new-sentences", help="Fine-tune on the first N train sentences, annotated for the type only"),
    rehearsal_limit: int = typer.Option(3000, "--rehearsal-limit", help="Rehearsal docs mixed in (rehearsal variant)"),
    new_repeats: int = typer.Option(3, "--new-repeats", help="Read each new example this many times (not with plain)"),
    variants: str = typer.Option(",".join(VARIANTS), "--variants", help=f"Comma-separated, of {', '.join(VARIANTS)}"),
    steps: int = typer.Option(600, "--steps", help="Fine-tune steps"),
    learn_rate: float = typer.Option(5e-5, "--learn-rate", help="Initial learning rate (linear decay to 0)"),
    eval_frequency: int = typer.Option(100, "--eval-frequency", help="Steps between dev evaluations"),
    freeze_layers: int = typer.Option(0, "--freeze-layers", help="Keep the transformer's embeddings and first N layers as they are"),
    seed: int = typer.Option(0, "--seed"),
    old_types: bool = typer.Option(False, "--label-old-types", help="Label the old types in X's docs with the pipeline (not with plain)"),
    nested: bool = typer.Option(False, "--nested", help="Score doc.spans (and pick model-best by it)"),
    gold_preproc: bool = typer.Option(False, "--gold-preproc", help="Train on the corpus's own tokens (as the corpus's config does)"),
    spans_key: str = typer.Option("sc", "--spans-key"),
    reference: Optional[Path] = typer.Option(None, "--reference", help="A pipeline trained from scratch on the same sentences with every type"),
    work_dir: Path = typer.Option(Path("training/add_type"), "--work-dir"),
    output: Path = typer.Option(Path("metrics/add_type.json"), "--output"),
    table: Path = typer.Option(Path("metrics/add_type.md"), "--table"),
) -> None:
    """Fine-tune a pipeline trained without TYPE on N sentences annotated for
    TYPE only, per variant, and score TYPE and the old types on test."""
    from spacy.tokens import DocBin

    chosen = [v.strip() for v in variants.split(",") if v.strip()]
    unknown = sorted(set(chosen) - set(VARIANTS))
    if unknown or not chosen:
        msg.fail(f"--variants takes a subset of {', '.join(VARIANTS)}, got {variants!r}", exits=1)
    given = srsly.read_json(descriptions)
    if label not in given:
        msg.fail(f"{descriptions} has no description of {label!r}", exits=1)
    run_dir = work_dir / dataset / label
    run_dir.mkdir(parents=True, exist_ok=True)
    train_docs = read_docs(corpus_dir / "train.spacy")
    n_docs, n_sentences = first_docs_for_sentences(train_docs, new_sentences)
    new_docs = only_type(train_docs[:n_docs], label, spans_key)
    n_mentions = sum(len(doc.spans[spans_key]) if spans_key in doc.spans else len(doc.ents) for doc in new_docs)
    DocBin(docs=new_docs, store_user_data=True).to_disk(run_dir / "new.spacy")
    new_types = run_dir / "new_types.json"
    srsly.write_json(new_types, {label: given[label]})
    common = {
        "dataset": dataset, "type": label, "new_sentences": n_sentences, "new_docs": n_docs, "new_mentions": n_mentions,
        "seed": seed, "steps": steps, "learn_rate": learn_rate, "freeze_layers": freeze_layers,
    }  # fmt: skip
    rows: List[Dict[str, Any]] = []

    import spacy

    nlp = spacy.load(pipeline)
    nlp.get_pipe("binder_ner").add_label(label, description=given[label])
    rows.append({**common, "variant": "zero-shot", "train_seconds": 0.0, **scores_of(nlp, corpus_dir / "test.spacy", label, nested, spans_key)})
    before = scores_of(pipeline, corpus_dir / "test.spacy", label, nested, spans_key)
    rows.append({**common, "variant": "before", "train_seconds": 0.0, **before})
    if reference is not None:
        rows.append({**common, "variant": "from-scratch", "pipeline": str(reference), "train_seconds": None, **scores_of(reference, corpus_dir / "test.spacy", label, nested, spans_key)})
    # model-best by the output the rows score (the config's default: nested)
    weights = [] if nested else ["--training.score_weights.spans_sc_f", "0", "--training.score_weights.ents_f", "1"]
    for variant in chosen:
        out = run_dir / variant
        cmd = [
            sys.executable, "-m", "spacy", "train", str(fine_tune_config(variant, run_dir / f"{variant}.cfg")),
            "--output", str(out), "--paths.pipeline", str(pipeline), "--paths.new_types", str(new_types),
            "--paths.train", str(run_dir / "new.spacy"), "--paths.dev", str(corpus_dir / "dev.spacy"),
            "--paths.rehearsal", str(rehearsal) if variant == "rehearsal" else "null", "--system.seed", str(seed),
            "--training.max_steps", str(steps), "--training.eval_frequency", str(eval_frequency),
            "--training.optimizer.learn_rate.initial_rate", str(learn_rate),
            "--initialize.after_init.layers", str(freeze_layers),
            "--corpora.train.gold_preproc", "true" if gold_preproc else "false", *weights,
        ]  # fmt: skip
        if variant != "plain":  # spacy.Corpus.v1 has neither
            cmd += ["--corpora.train.rehearsal_limit", str(rehearsal_limit), "--corpora.train.new_repeats", str(new_repeats)]
            cmd += ["--corpora.train.old_types_from", str(pipeline) if old_types else "null"]
        msg.divider(f"{dataset}: add {label}, {variant}")
        start = time.perf_counter()
        if subprocess.run(cmd).returncode != 0:
            msg.fail(f"spacy train failed for {variant}", exits=1)
        seconds = round(time.perf_counter() - start, 1)
        scores = scores_of(out / "model-best", corpus_dir / "test.spacy", label, nested, spans_key)
        rows.append({
            **common, "variant": variant, "rehearsal_limit": rehearsal_limit if variant == "rehearsal" else 0,
            "new_repeats": new_repeats if variant != "plain" else 1,
            "old_types_labelled": old_types and variant != "plain", "train_seconds": seconds, **scores,
        })  # fmt: skip
        msg.good(f"{variant}: {label} F {scores['f']:.2f}; old types F {before['others']['f']:.2f} -> {scores['others']['f']:.2f}")
        srsly.write_json(output, rows)
    srsly.write_json(output, rows)
    table.write_text(add_type_markdown(rows), encoding="utf8")
    print(table.read_text(encoding="utf8"))


def add_type_markdown(rows: List[Dict[str, Any]]) -> str:
    """One line per variant: X's P/R/F, the old types' F and each type's F."""
    types = sorted({name for row in rows for name in row["per_type_f"]})
    lines = [
        f"| Variant | {rows[0]['type']} P / R / F | old types F | " + " | ".join(f"{t} F" for t in types) + " |",
        "| --- | --- | ---: | " + " | ".join("---:" for _ in types) + " |",
    ]
    for row in rows:
        cells = [f"{row['per_type_f'].get(t, 0.0):.2f}" for t in types]
        prf = " / ".join(f"{row[k]:.2f}" for k in ("p", "r", "f"))
        name = row["variant"] + (", old types labelled" if row.get("old_types_labelled") else "")
        lines.append(f"| {name} | {prf} | {row['others']['f']:.2f} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    app()

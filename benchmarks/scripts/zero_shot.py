"""Zero-shot leave-one-type-out: for each entity type X of a corpus, train
binder_ner without X (its mentions removed from the train and dev gold, so
they are unlabelled text there, and its description left out), then add X to
the trained pipeline by its description alone (`binder.add_label(X,
description=...)`) and score X on the whole test split; once with X's
description and once with X's label as its description. One training per X
(and seed) serves both.

Each row has X's test P/R/F on the output binder_ner is ranked by (doc.ents on
a flat corpus, doc.spans on a nested one), the trained labels and the labels
after add_label, and the F of the trained types before and after adding X
(scored against the test gold without X, X's predictions left out): how much
the new type takes from the trained ones. Training runs in its own process
through benchmark.py (`run_system`, `system_config`), on the budget of
learning_curve.py (a fixed number of steps, `apply_step_budget`).
"""
import copy
import statistics
from pathlib import Path
from typing import Any, Dict, List

import srsly
import typer
from wasabi import msg

import project_scripts  # noqa: F401  (the user project's scripts, importable)
from benchmark import batches_per_epoch, longest_gold_span, parse_seeds, primary_prefix, run_system, system_config
from learning_curve import (
    apply_step_budget, check_binder_config, first_docs_for_sentences, gold_labels, read_docs, save_rows, sentence_count,
)  # fmt: skip
from train import encoder_overrides

DESCRIPTION_KINDS = ("description", "name")
# row fields besides system, seed and benchmark.BUDGET_KEYS that tell rows apart
HELD_OUT_KEYS = ("held_out_type", "description", "max_steps")

app = typer.Typer(add_completion=False)


@app.callback()
def main() -> None:
    """Zero-shot leave-one-type-out: `run` (a callback keeps `run` a
    subcommand, as in benchmark.py and learning_curve.py)."""


def without_type(docs: list, label: str, spans_key: str) -> list:
    """`docs` with the gold mentions of `label` removed from doc.spans[spans_key]
    and doc.ents, in place; their tokens become unlabelled text."""
    for doc in docs:
        if spans_key in doc.spans:
            doc.spans[spans_key] = [span for span in doc.spans[spans_key] if span.label_ != label]
        doc.ents = [ent for ent in doc.ents if ent.label_ != label]
    return docs


def write_corpus_without(corpus_dir: Path, dest: Path, label: str, spans_key: str) -> None:
    """DEST/{train,dev}.spacy: the corpus's train and dev splits without the
    gold mentions of `label`."""
    from spacy.tokens import DocBin

    dest.mkdir(parents=True, exist_ok=True)
    for split in ("train", "dev"):
        docs = without_type(read_docs(corpus_dir / f"{split}.spacy"), label, spans_key)
        DocBin(docs=docs, store_user_data=True).to_disk(dest / f"{split}.spacy")


def drop_label_predictions(doc, label: str, spans_key: str):
    """`doc` with the predictions of `label` removed (both outputs), in place."""
    if spans_key in doc.spans:
        group = doc.spans[spans_key]
        kept = [i for i, span in enumerate(group) if span.label_ != label]
        scores = group.attrs.get("scores")
        doc.spans[spans_key] = [group[i] for i in kept]
        if scores is not None:
            doc.spans[spans_key].attrs["scores"] = [scores[i] for i in kept]
    doc.ents = [ent for ent in doc.ents if ent.label_ != label]
    return doc


def score_states(nlp, gold_docs: list, label: str, nested: bool, spans_key: str) -> Dict[str, Any]:
    """Predict the test docs once and score them twice: against the whole
    gold (per type), and with `label` left out of gold and predictions (the
    other types together).

    RETURNS (Dict[str, Any]): {"per_type": {label: {"p", "r", "f"}}, "others":
        {"p", "r", "f"}}, on binder_ner's ranked output, in percent.
    """
    from spacy.training import Example

    binder = nlp.get_pipe("binder_ner")
    prefix = primary_prefix("binder_ner", nested, spans_key)
    examples = [Example(nlp.make_doc(doc.text), doc) for doc in gold_docs]
    for example, doc in zip(examples, nlp.pipe([eg.predicted for eg in examples])):
        example.predicted = doc
    per_type = binder.score(examples)[f"{prefix}_per_type"]
    others = [
        Example(drop_label_predictions(eg.predicted, label, spans_key), without_type([eg.reference.copy()], label, spans_key)[0])
        for eg in examples
    ]  # fmt: skip
    scores = binder.score(others)
    return {
        "per_type": {name: {k: round(100 * v, 2) for k, v in prf.items()} for name, prf in per_type.items()},
        "others": {k: round(100 * float(scores[f"{prefix}_{k}"] or 0.0), 2) for k in ("p", "r", "f")},
    }


def score_added_type(
    pipeline: Path, test_path: Path, label: str, description: str, nested: bool, spans_key: str, gpu_id: int = -1
) -> Dict[str, Any]:
    """Load a pipeline trained without `label`, score the trained types, add
    `label` with `description` and score again.

    RETURNS (Dict[str, Any]): "p", "r", "f" of `label` (0 where nothing of it
        was predicted), "trained_labels", "labels_after", "description_text"
        (what the pipeline holds for `label`), the trained types'
        "others_before" and "others_after" P/R/F, and "per_type_f" after.
    """
    import spacy
    from spacy.tokens import DocBin

    if gpu_id >= 0:
        spacy.require_gpu(gpu_id)
    nlp = spacy.load(pipeline)
    binder = nlp.get_pipe("binder_ner")
    trained = list(binder.labels)
    if label in trained:
        raise ValueError(f"{pipeline} was trained with {label!r}: its gold was not removed")
    gold = list(DocBin().from_disk(test_path).get_docs(nlp.vocab))
    before = score_states(nlp, gold, label, nested, spans_key)
    binder.add_label(label, description=description)
    after = score_states(nlp, gold, label, nested, spans_key)
    own = after["per_type"].get(label, {"p": 0.0, "r": 0.0, "f": 0.0})
    return {
        **own,
        "trained_labels": trained,
        "labels_after": list(binder.labels),
        "description_text": binder.descriptions[label],
        "others_before": before["others"],
        "others_after": after["others"],
        "per_type_f": {name: prf["f"] for name, prf in after["per_type"].items()},
    }


def zero_shot_markdown(rows: List[Dict[str, Any]]) -> str:
    """Per dataset, X's test F with its description and with its name (mean
    over the seeds), and the trained types' F before and after adding X."""
    parts = []
    for dataset in dict.fromkeys(row["dataset"] for row in rows):
        own = [row for row in rows if row["dataset"] == dataset]
        lines = [
            f"{dataset}: held-out type X added by add_label after training without it; test P / R / F of X "
            "(mean over the seeds), and the F of the trained types before → after adding X",
            "",
            "| Held-out type | Seeds | with description: P / R / F of X | others F | with name: P / R / F of X | others F |",
            "| --- | ---: | --- | --- | --- | --- |",
        ]
        for held_out in dict.fromkeys(row["held_out_type"] for row in own):
            cells = []
            n_seeds = 0
            for kind in DESCRIPTION_KINDS:
                found = [row for row in own if row["held_out_type"] == held_out and row["description"] == kind]
                n_seeds = max(n_seeds, len(found))
                if not found:
                    cells += ["", ""]
                    continue
                prf = " / ".join(f"{statistics.mean(row[k] for row in found):.2f}" for k in ("p", "r", "f"))
                before = statistics.mean(row["others_before"]["f"] for row in found)
                after = statistics.mean(row["others_after"]["f"] for row in found)
                cells += [prf, f"{before:.2f} → {after:.2f}"]
            lines.append(f"| {held_out} | {n_seeds} | " + " | ".join(cells) + " |")
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"


@app.command("run")
def run(
    dataset: str = typer.Argument(..., help="Dataset name for the rows (e.g. genia)"),
    corpus_dir: Path = typer.Argument(..., help="Folder with train/dev/test.spacy", exists=True, file_okay=False),
    base_config: Path = typer.Argument(..., help="The BINDER config (a type encoder that reads descriptions)", exists=True),
    descriptions: Path = typer.Option(..., "--descriptions", help="Type descriptions (JSON) of every type", exists=True, dir_okay=False),
    types: str = typer.Option("", "--types", help="Comma-separated types to hold out (default: every train type)"),
    seeds: str = typer.Option("0", "--seeds", help="Comma-separated seeds: every type once per seed"),
    nested: bool = typer.Option(False, "--nested", help="The corpus is nested: score doc.spans"),
    train_sentences: int = typer.Option(0, "--train-sentences", help="Train on the first N sentences only (0 = all)"),
    steps: int = typer.Option(1000, "--steps", help="Optimizer steps of each training"),
    learn_rate: float = typer.Option(1e-4, "--learn-rate", help="Initial learning rate"),
    schedule: str = typer.Option("linear", "--schedule", help="'linear' decay to 0 over the steps, or 'flat'"),
    batch_size: int = typer.Option(1000, "--batch-size", help="Padded batch size in tokens"),
    eval_frequency: int = typer.Option(200, "--eval-frequency", help="Steps between dev evaluations"),
    encoder: str = typer.Option("minilm", "--encoder", help="'minilm', a model name or a folder"),
    spans_key: str = typer.Option("sc", "--spans-key", help="doc.spans key of the gold spans"),
    gpu_id: int = typer.Option(-1, "--gpu-id", help="GPU id, or -1 for CPU"),
    work_dir: Path = typer.Option(Path("training/zero_shot"), "--work-dir", help="Corpora, configs and pipelines"),
    output: Path = typer.Option(Path("metrics/zero_shot.json"), "--output", help="JSON rows, merged"),
    table: Path = typer.Option(Path("metrics/zero_shot.md"), "--table", help="Markdown table of all rows"),
) -> None:
    """Hold out each type in turn: train binder_ner without it, add it by its
    description (and by its name) and score it on the test split."""
    from spacy import util

    try:
        seed_list = parse_seeds(seeds)
        base = util.load_config(base_config, interpolate=False)
        apply_step_budget(base, steps, learn_rate, schedule, batch_size, eval_frequency)
    except ValueError as err:
        msg.fail(str(err), exits=1)
    check_binder_config(base, base_config, "add_label scores a type it was not trained on by its description only")
    given = srsly.read_json(descriptions)
    train_path = corpus_dir / "train.spacy"
    train_docs = read_docs(train_path)
    if train_sentences:
        n_docs, n_sentences = first_docs_for_sentences(train_docs, train_sentences)
    else:
        n_docs, n_sentences = len(train_docs), sum(sentence_count(doc) for doc in train_docs)
    n_batches = batches_per_epoch(train_path, {**base["training"]["batcher"], "size": batch_size}, n_docs)
    all_labels = gold_labels(train_docs, spans_key)
    held_out = [name.strip() for name in types.split(",") if name.strip()] or all_labels
    unknown = [name for name in held_out if name not in all_labels]
    missing = [name for name in all_labels if name not in given]
    if unknown or missing:
        msg.fail(f"Types not in the train gold: {unknown}; without a description in {descriptions}: {missing}", exits=1)
    if len(all_labels) < 2:
        msg.fail(f"{dataset} has {len(all_labels)} type: nothing is left to train on without it", exits=1)
    max_width = longest_gold_span(train_path, spans_key)  # X's mentions included: X must fit at inference
    encoder_name = encoder_overrides(base, encoder)[1]
    old_rows = srsly.read_json(output) if output.exists() else []
    rows: List[Dict[str, Any]] = []
    for seed in seed_list:
        for label in held_out:
            label_dir = work_dir / dataset / f"without_{label}"
            write_corpus_without(corpus_dir, label_dir / "corpus", label, spans_key)
            descriptions_path = label_dir / "descriptions.json"
            srsly.write_json(descriptions_path, {name: text for name, text in given.items() if name in all_labels and name != label})
            config = copy.deepcopy(base)
            config["system"]["seed"] = seed
            config["corpora"]["train"]["limit"] = n_docs
            config["paths"]["descriptions"] = str(descriptions_path.resolve())
            msg.divider(f"binder_ner on {dataset} without {label}, seed {seed}")
            system_dir = label_dir / f"seed_{seed}"
            trained = run_system(
                "binder_ner", system_config(config, "binder_ner", max_width, spans_key, nested), label_dir / "corpus",
                system_dir, dataset=dataset, encoder=encoder, spans_key=spans_key, gpu_id=gpu_id, nested=nested,
                test_path=corpus_dir / "test.spacy",
            )  # fmt: skip
            for kind in DESCRIPTION_KINDS:
                text = given[label] if kind == "description" else label
                try:
                    scores = score_added_type(
                        system_dir / "pipeline" / "model-best", corpus_dir / "test.spacy", label, text,
                        nested, spans_key, gpu_id,
                    )  # fmt: skip
                except ValueError as err:
                    msg.fail(str(err), exits=1)
                row = {
                    "system": "binder_ner", "dataset": dataset, "held_out_type": label, "description": kind,
                    "seed": seed, "output": trained["output"], **scores,
                    "encoder": encoder_name, "epochs": round(steps / max(1, n_batches), 1), "max_steps": steps, "learn_rate": learn_rate,
                    "schedule": schedule, "batch_size": batch_size, "eval_frequency": eval_frequency,
                    "train_limit": n_docs, "train_docs": n_docs, "train_sentences": n_sentences, "max_span_width": max_width,
                    "train_seconds": trained["train_seconds"], "device": trained["device"],
                }  # fmt: skip
                rows.append(row)
                msg.good(f"{label} by its {kind}: F {row['f']:.2f}; trained types F {row['others_before']['f']:.2f} → {row['others_after']['f']:.2f}")
            # saved after every type, so a later failure loses none
            save_rows(output, table, old_rows, rows, HELD_OUT_KEYS, zero_shot_markdown)
    print(table.read_text(encoding="utf8") if rows else "")
    msg.good(f"Saved {output} and {table}")


if __name__ == "__main__":
    app()

"""Learning curves: test F of binder_ner and of spaCy ner (flat corpora) or
spancat (nested) trained on the first 50, 100, ... sentences of a corpus's
train split, once per seed; binder_ner twice, with the type descriptions and
with each type's label as its description (`--variants descriptions,names`).
`--descriptions-tag` renames the descriptions variant in the rows and run
folders, so that curves of another descriptions file (guideline text, example
mentions) can be drawn beside the first.

Budget rule, the same for every size, system, variant and seed: a fixed
number of optimizer steps (`--steps`) in padded batches of `--batch-size`
tokens, a learning rate that is flat or decays linearly to 0 over those steps,
no early stop, dev scored every `--eval-frequency` steps and model-best
picked on the whole dev split. A fixed number of epochs would give the
smallest sets a handful of updates; fixed steps give every size as many,
which is hundreds of epochs of 50 sentences (model-best keeps the checkpoint
from before they overfit) and about 16 epochs of 1,000 NCBI-disease
sentences at 500 steps. Dev and test are the whole splits for every size.

A size counts sentences: the first N train Docs where each Doc is a sentence
(NCBI-disease, GENIA), rounded up to whole Docs where a Doc holds several
(CoNLL-2003 articles). Training reads them through `[corpora.train] limit`,
so each row's `train_docs` is what spaCy's reader yielded and
`train_sentences` the sentences in those Docs. Each point trains and is
scored in its own process by benchmark.py (`run_system`), on configs made by
its `system_config` and `apply_budget`: the comparison of systems is the
benchmark's, at each size.
"""
import copy
import statistics
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import srsly
import typer
from wasabi import msg

import project_scripts  # noqa: F401  (the user project's scripts, importable)
from benchmark import (
    SYSTEMS, apply_budget, batches_per_epoch, longest_gold_span, merge_rows, parse_seeds, run_system, system_config,
)  # fmt: skip
from train import encoder_overrides

VARIANTS = ("descriptions", "names")
SCHEDULES = ("flat", "linear")
# row fields besides system, seed and benchmark.BUDGET_KEYS that tell points apart
POINT_KEYS = ("descriptions", "max_steps")
# row fields that must match for points to be drawn on one curve
CURVE_KEYS = ("dataset", "encoder", "max_steps", "learn_rate", "schedule", "batch_size", "eval_frequency")

app = typer.Typer(add_completion=False)


def parse_sizes(text: str) -> List[int]:
    """The train sizes of a comma-separated list such as "50,100,200",
    ascending (positive, no repeats)."""
    try:
        sizes = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ValueError(f"--sizes takes comma-separated integers such as 50,100,200, got {text!r}") from None
    if not sizes or min(sizes) < 1 or len(set(sizes)) != len(sizes):
        raise ValueError(f"--sizes needs distinct positive integers, got {text!r}")
    return sorted(sizes)


def parse_names(text: str, option: str, known: Tuple[str, ...]) -> List[str]:
    """The names of a comma-separated list, each one of `known`."""
    names = [part.strip() for part in text.split(",") if part.strip()]
    unknown = sorted(set(names) - set(known))
    if not names or unknown:
        raise ValueError(f"{option} takes a comma-separated subset of {', '.join(known)}, got {text!r}")
    return names


def read_docs(path: Path) -> list:
    """The non-empty Docs of a DocBin, in file order: the ones spaCy's
    corpus reader yields (and counts towards its `limit`)."""
    from spacy.tokens import DocBin
    from spacy.vocab import Vocab

    return [doc for doc in DocBin().from_disk(path).get_docs(Vocab()) if len(doc)]


def sentence_count(doc) -> int:
    """Sentences in a Doc: by its sentence boundaries, else one."""
    return len(list(doc.sents)) if doc.has_annotation("SENT_START") else 1


def first_docs_for_sentences(docs: list, n_sentences: int) -> Tuple[int, int]:
    """How many of the first `docs` hold at least `n_sentences` sentences
    (all of them when they hold fewer), and how many sentences those are.

    RETURNS (Tuple[int, int]): (docs, sentences).
    """
    total = 0
    for n_docs, doc in enumerate(docs, start=1):
        total += sentence_count(doc)
        if total >= n_sentences:
            return n_docs, total
    return len(docs), total


def gold_labels(docs: list, spans_key: str) -> List[str]:
    """The sorted labels of the gold mentions in `docs`."""
    from spacy_binder.spans import get_gold_spans

    return sorted({span.label_ for doc in docs for span in get_gold_spans(doc, spans_key)})


def type_encoder_reads_descriptions(base: Dict[str, Any]) -> bool:
    """Whether the (uninterpolated) BINDER config's type encoder reads type
    descriptions (spacy-binder.DescriptionEncoder.v1 does, the label
    embedding does not). Builds only the type encoder, which loads no
    weights."""
    from spacy import util

    block = util.Config(copy.deepcopy(base)).interpolate()["components"]["binder_ner"]["model"]["type_encoder"]
    return util.registry.resolve({"type_encoder": block})["type_encoder"].attrs.get("reads_descriptions", True)


def check_binder_config(base: Dict[str, Any], base_config: Path, reader_needed_for: str = "") -> None:
    """Exit unless the BINDER config has paths.descriptions to set and, when
    `reader_needed_for` says why, a type encoder that reads descriptions."""
    if "descriptions" not in base.get("paths", {}):
        msg.fail(f"{base_config} has no paths.descriptions to set", exits=1)
    if reader_needed_for and not type_encoder_reads_descriptions(base):
        msg.fail(
            "The type encoder does not read descriptions",
            f"{base_config}: {reader_needed_for}; use spacy-binder.DescriptionEncoder.v1",
            exits=1,
        )


def save_rows(
    output: Path, table: Path, old_rows: List[Dict[str, Any]], rows: List[Dict[str, Any]],
    extra_keys: Tuple[str, ...], to_markdown: Callable[[List[Dict[str, Any]]], str],
) -> List[Dict[str, Any]]:
    """Merge `rows` into `old_rows` (benchmark.merge_rows: one row per
    system, seed, budget and `extra_keys`), write them to OUTPUT and their
    markdown to TABLE.

    RETURNS (List[Dict[str, Any]]): All the rows.
    """
    all_rows = merge_rows(old_rows, rows, by_seed=True, extra_keys=extra_keys)
    for path in (output, table):
        path.parent.mkdir(parents=True, exist_ok=True)
    srsly.write_json(output, all_rows)
    table.write_text(to_markdown(all_rows), encoding="utf8")
    return all_rows


def apply_step_budget(
    base: Dict[str, Any],
    steps: int,
    learn_rate: float,
    schedule: str,
    batch_size: int,
    eval_frequency: int,
    train_limit: int = 0,
) -> Dict[str, Any]:
    """benchmark.apply_budget with a fixed number of steps instead of epochs
    (as many epochs as they take), in place: the learning rate is flat, or
    with schedule "linear" decays to 0 over the steps.

    RETURNS (Dict[str, Any]): `base`.
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"Unknown schedule {schedule!r}: use {' or '.join(SCHEDULES)}")
    if steps < 1:
        raise ValueError(f"The step budget must be at least 1, got {steps}")
    decay_steps = steps if schedule == "linear" else 0
    apply_budget(base, 0, learn_rate, batch_size, eval_frequency, train_limit, decay_steps)
    base["training"]["max_steps"] = steps
    return base


def check_descriptions_tag(tag: str) -> None:
    """A --descriptions-tag names a run folder and a curve: a word, and not
    "names", which is the other variant's."""
    if tag == "names" or not tag.replace("_", "").replace("-", "").isalnum():
        raise ValueError(
            f"--descriptions-tag takes a word of letters, digits, '-' or '_' other than 'names', got {tag!r}"
        )


def write_descriptions(path: Path, labels: List[str], given: Dict[str, str], variant: str) -> Dict[str, str]:
    """Write the descriptions of `labels` for a binder_ner variant to `path`:
    the given ones ("descriptions"), or each label as its own ("names").
    Only labels in the training data: binder_ner refuses descriptions of
    labels it does not train on.

    RETURNS (Dict[str, str]): What was written.
    """
    if variant == "names":
        chosen = {label: label for label in labels}
    else:
        missing = [label for label in labels if label not in given]
        if missing:
            raise ValueError(f"No description given for {', '.join(missing)}")
        chosen = {label: given[label] for label in labels}
    path.parent.mkdir(parents=True, exist_ok=True)
    srsly.write_json(path, chosen)
    return chosen


def series_name(row: Dict[str, Any]) -> str:
    """A curve's name: the system, and binder_ner's descriptions variant."""
    return f"{row['system']} ({row['descriptions']})" if row.get("descriptions") else row["system"]


def curve_points(rows: List[Dict[str, Any]]) -> Dict[Tuple, Dict[str, List[Tuple[int, float, float, int]]]]:
    """Per curve group (CURVE_KEYS) and series (`series_name`), the points
    (train sentences, mean F, sd of F, seeds) over the seeds, by size."""
    groups: Dict[Tuple, Dict[str, Dict[int, List[float]]]] = {}
    for row in rows:
        group = tuple(row.get(key) for key in CURVE_KEYS)
        sizes = groups.setdefault(group, {}).setdefault(series_name(row), {})
        sizes.setdefault(row["train_sentences"], []).append(row["f"])
    return {
        group: {
            name: [
                (size, statistics.mean(f), statistics.stdev(f) if len(f) > 1 else 0.0, len(f))
                for size, f in sorted(sizes.items())
            ]
            for name, sizes in series.items()
        }
        for group, series in groups.items()
    }


def group_title(group: Tuple) -> str:
    values = dict(zip(CURVE_KEYS, group))
    rate = f"lr {values['learn_rate']:g}" + (" flat" if values["schedule"] == "flat" else " → 0 linear")
    return (
        f"{values['dataset']}, {values['encoder']}, {values['max_steps']} steps of {values['batch_size']} "
        f"padded tokens, {rate}, dev every {values['eval_frequency']} steps"
    )


def curve_markdown(rows: List[Dict[str, Any]]) -> str:
    """Per curve group, a table of test F (mean and sd over the seeds, and
    how many) by train sentences, one column per series."""
    parts = []
    for group, series in curve_points(rows).items():
        names = list(series)
        sizes = sorted({point[0] for points in series.values() for point in points})
        lines = [
            f"{group_title(group)}: test F, mean (sd) over n seeds",
            "",
            "| Train sentences | " + " | ".join(f"{name} F" for name in names) + " |",
            "| ---: |" + " ---: |" * len(names),
        ]
        for size in sizes:
            cells = []
            for name in names:
                found = [point for point in series[name] if point[0] == size]
                cells.append("" if not found else f"{found[0][1]:.2f} ({found[0][2]:.2f}, n={found[0][3]})")
            lines.append(f"| {size} | " + " | ".join(cells) + " |")
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"


@app.command("run")
def run(
    dataset: str = typer.Argument(..., help="Dataset name for the rows (e.g. ncbi_disease)"),
    corpus_dir: Path = typer.Argument(..., help="Folder with train/dev/test.spacy", exists=True, file_okay=False),
    base_config: Path = typer.Argument(..., help="The BINDER config the others are made from", exists=True),
    sizes: str = typer.Option("50,100,200,500,1000", "--sizes", help="Comma-separated numbers of train sentences"),
    seeds: str = typer.Option("0,1,2", "--seeds", help="Comma-separated seeds: every point once per seed"),
    systems: str = typer.Option("binder_ner,spacy_ner", "--systems", help="Comma-separated subset of benchmark.py's systems"),
    variants: str = typer.Option(",".join(VARIANTS), "--variants", help="binder_ner with the type descriptions and/or with the labels as descriptions"),
    descriptions: Optional[Path] = typer.Option(None, "--descriptions", help="Type descriptions (JSON) for the descriptions variant", exists=True, dir_okay=False),
    descriptions_tag: str = typer.Option("descriptions", "--descriptions-tag", help="The descriptions variant's name in the rows and run folders: tells the curves of other description files (e.g. guideline text) apart"),
    nested: bool = typer.Option(False, "--nested", help="The corpus is nested: rank binder_ner by doc.spans"),
    steps: int = typer.Option(500, "--steps", help="Optimizer steps for every point"),
    learn_rate: float = typer.Option(1e-4, "--learn-rate", help="Initial learning rate for every point"),
    schedule: str = typer.Option("linear", "--schedule", help="'linear' decay to 0 over the steps, or 'flat'"),
    batch_size: int = typer.Option(1000, "--batch-size", help="Padded batch size in tokens"),
    eval_frequency: int = typer.Option(100, "--eval-frequency", help="Steps between dev evaluations"),
    encoder: str = typer.Option("minilm", "--encoder", help="'minilm', a model name or a folder"),
    spans_key: str = typer.Option("sc", "--spans-key", help="doc.spans key of the gold spans"),
    gpu_id: int = typer.Option(-1, "--gpu-id", help="GPU id, or -1 for CPU"),
    work_dir: Path = typer.Option(Path("training/learning_curve"), "--work-dir", help="Configs and trained pipelines"),
    output: Path = typer.Option(Path("metrics/learning_curve.json"), "--output", help="JSON rows, merged"),
    table: Path = typer.Option(Path("metrics/learning_curve.md"), "--table", help="Markdown table of all rows"),
) -> None:
    """Train and score every system (and binder_ner variant) on the first
    N train sentences, for each size and seed, one process each."""
    from spacy import util

    try:
        size_list = parse_sizes(sizes)
        seed_list = parse_seeds(seeds)
        chosen = parse_names(systems, "--systems", SYSTEMS)
        variant_list = parse_names(variants, "--variants", VARIANTS)
        check_descriptions_tag(descriptions_tag)
        base = util.load_config(base_config, interpolate=False)
        apply_step_budget(base, steps, learn_rate, schedule, batch_size, eval_frequency)
    except ValueError as err:
        msg.fail(str(err), exits=1)
    if nested and "spacy_ner" in chosen:
        msg.fail("spaCy ner cannot predict nested spans", "Leave spacy_ner out of --systems with --nested", exits=1)
    given: Dict[str, str] = {}
    if "binder_ner" in chosen:
        if "descriptions" in variant_list and descriptions is None:
            msg.fail("The descriptions variant needs --descriptions", exits=1)
        why = "names and descriptions would train the same model" if "names" in variant_list else ""
        check_binder_config(base, base_config, why)
        given = srsly.read_json(descriptions) if descriptions is not None else {}
    train_path = corpus_dir / "train.spacy"
    train_docs = read_docs(train_path)
    undescribed = [label for label in gold_labels(train_docs, spans_key) if label not in given]
    if "binder_ner" in chosen and "descriptions" in variant_list and undescribed:
        # found now rather than at the first size that has them, hours later
        msg.fail(f"No description for {', '.join(undescribed)}", f"Add them to {descriptions}", exits=1)
    max_width = longest_gold_span(train_path, spans_key)
    encoder_name = encoder_overrides(base, encoder)[1]
    points: List[Tuple[int, int, int]] = []  # (size asked for, docs, sentences)
    for size in size_list:
        n_docs, n_sentences = first_docs_for_sentences(train_docs, size)
        if points and n_docs == points[-1][1]:
            msg.warn(f"{size} sentences: the same {n_docs} docs as {points[-1][0]}; skipped")
            continue
        if n_sentences < size:
            msg.warn(f"{size} sentences asked for, the train split has {n_sentences}: training on all of it")
        points.append((size, n_docs, n_sentences))
    old_rows = srsly.read_json(output) if output.exists() else []
    rows: List[Dict[str, Any]] = []
    for seed in seed_list:
        for size, n_docs, n_sentences in points:
            labels = gold_labels(train_docs[:n_docs], spans_key)
            batcher = {**base["training"]["batcher"], "size": batch_size}
            n_batches = batches_per_epoch(train_path, batcher, n_docs)
            point = copy.deepcopy(base)
            point["system"]["seed"] = seed
            point["corpora"]["train"]["limit"] = n_docs
            point_dir = work_dir / dataset / f"sentences_{size}" / f"seed_{seed}"
            runs = [(system, None) for system in chosen if system != "binder_ner"]
            if "binder_ner" in chosen:
                runs = [("binder_ner", variant) for variant in variant_list] + runs
            for system, variant in runs:
                tag = descriptions_tag if variant == "descriptions" else variant
                run_dir = point_dir / (f"{system}_{tag}" if variant else system)
                if variant:
                    descriptions_path = run_dir / "descriptions.json"
                    write_descriptions(descriptions_path, labels, given, variant)
                    point["paths"]["descriptions"] = str(descriptions_path.resolve())
                msg.divider(f"{series_name({'system': system, 'descriptions': tag})}: {dataset}, {n_sentences} sentences, seed {seed}")
                row = run_system(
                    system, system_config(point, system, max_width, spans_key, nested), corpus_dir, run_dir,
                    dataset=dataset, encoder=encoder, spans_key=spans_key, gpu_id=gpu_id, nested=nested,
                )  # fmt: skip
                row.update({
                    "encoder": encoder_name, "seed": seed, "train_sentences": n_sentences, "train_docs": n_docs,
                    "train_limit": n_docs, "sentences_asked": size, "train_labels": labels,
                    "epochs": round(steps / max(1, n_batches), 1), "max_steps": steps, "learn_rate": learn_rate,
                    "schedule": schedule, "batch_size": batch_size, "eval_frequency": eval_frequency,
                    "max_span_width": max_width,
                    **({"descriptions": tag} if variant else {}),
                })  # fmt: skip
                rows.append(row)
                msg.good(f"F {row['f']:.2f}, {row['train_seconds']:.0f} s training")
                # saved after every point, so a later failure loses none
                save_rows(output, table, old_rows, rows, POINT_KEYS, curve_markdown)
    print(table.read_text(encoding="utf8") if rows else "")
    msg.good(f"Saved {output} and {table}")


@app.command("plot")
def plot(
    rows_paths: List[Path] = typer.Argument(..., help="Learning-curve rows (JSON files, e.g. one per corpus)", exists=True, dir_okay=False),
    output: Path = typer.Option(..., "--output", help="PNG file"),
    table: Optional[Path] = typer.Option(None, "--table", help="Also a markdown table of all the rows"),
) -> None:
    """Draw the learning curves of ROWS_PATHS: test F against train
    sentences (log scale), mean and sd over the seeds, one panel per curve
    group (dataset and budget)."""
    try:
        import matplotlib
    except ImportError:
        msg.fail("The plot needs matplotlib", "pip install -r requirements.txt (in benchmarks/)", exits=1)
    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    rows = [row for path in rows_paths for row in srsly.read_json(path)]
    groups = curve_points(rows)
    if not groups:
        msg.fail(f"No rows in {', '.join(map(str, rows_paths))}", exits=1)
    fig, axes = plt.subplots(1, len(groups), figsize=(6 * len(groups), 4.5), squeeze=False)
    for ax, (group, series) in zip(axes[0], groups.items()):
        for name, points in series.items():
            x, mean, sd = ([point[i] for point in points] for i in range(3))
            ax.errorbar(x, mean, yerr=sd, marker="o", capsize=3, label=name)
        values = dict(zip(CURVE_KEYS, group))
        sizes = sorted({point[0] for points in series.values() for point in points})
        ax.set_xscale("log")
        ax.set_xticks(sizes, [str(size) for size in sizes])  # the sizes, not powers of ten
        ax.minorticks_off()
        ax.set_title(f"{values['dataset']} ({values['max_steps']} steps)")
        ax.set_xlabel("train sentences")
        ax.set_ylabel("test F (mean and sd over seeds)")
        ax.grid(True, alpha=0.3)
        ax.legend()
    fig.tight_layout()
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, format="png", dpi=100)
    msg.good(f"Saved {output}")
    if table is not None:
        table.parent.mkdir(parents=True, exist_ok=True)
        table.write_text(curve_markdown(rows), encoding="utf8")
        msg.good(f"Saved {table}")


if __name__ == "__main__":
    app()

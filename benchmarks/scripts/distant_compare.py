"""Distant supervision compared: what do dictionary labels buy each system?

On one corpus (gold train/dev/test .spacy) and one BINDER config, with the
same encoder, epochs, learning rate and batches for every trained system:

- `dictionary`: the dictionary matcher itself (distant_labels.py) on the
  gold test set;
- `spacy_ner` trained on the distant labels (unlabeled tokens count as O);
- `binder_ner` trained on the distant labels, with the plain loss
  (variant `default`) and with the options for partially annotated data
  (`unlabeled_weight`, `ignore_overlapping_negatives` of the loss block);
- `binder_ner` trained on the gold labels: the ceiling.

With --variants-only, only the binder_ner variants on distant labels are
trained (to compare the loss options). Each trained binder_ner row also has
`dev_gold_f`: its model-best's doc.ents F on the gold dev split, to choose
between variants without looking at test.

The distant labels of train AND dev come from the dictionary (no gold at
training time, dev included: model selection sees distant labels too); test
is always gold. The trained systems reuse benchmark.py (its configs, its
budget and its `one` command, one process per system). Flat corpora: the
systems are scored on doc.ents, as in benchmark.py.

Rows go to a JSON list (`system`, `labels`, `variant`, `p`, `r`, `f`, ...)
and a markdown table.
"""
import copy
import math
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import srsly
import typer
from wasabi import msg

SCRIPTS = Path(__file__).parent
sys.path.insert(0, str(SCRIPTS))
import project_scripts  # noqa: F401,E402  (the user project's scripts, importable)
from benchmark import apply_budget, longest_gold_span, run_system, system_config  # noqa: E402
from distant_labels import TermFileError, exit_on_term_file_error, label_docbin, read_term_file, warn_term_list  # noqa: E402
from fetch_assets import parse_bool  # noqa: E402

DEFAULT_VARIANTS = "default,unlabeled_weight=0.5,ignore_overlapping,unlabeled_weight=0.5+ignore_overlapping"
ROW_KEYS = ("system", "labels", "variant", "output", "p", "r", "f")


def parse_variant(spec: str) -> Dict[str, Any]:
    """The loss options of a binder_ner variant.

    spec (str): "default" (the plain loss), or "+"-joined options:
        "unlabeled_weight=W" (0 < W <= 1) and "ignore_overlapping".
    RETURNS (Dict[str, Any]): Arguments for spacy-binder.BinderLoss.v1.
    """
    spec = spec.strip()
    if spec == "default":
        return {}
    options: Dict[str, Any] = {}
    for part in spec.split("+"):
        part = part.strip()
        name, sep, value = part.partition("=")
        if name == "ignore_overlapping" and not sep:
            options["ignore_overlapping_negatives"] = True
        elif name == "unlabeled_weight" and sep:
            try:
                weight = float(value)
            except ValueError:
                weight = math.nan
            if not 0.0 < weight <= 1.0:
                raise ValueError(f"Variant {spec!r}: unlabeled_weight must be a number in (0, 1], got {value!r}")
            options["unlabeled_weight"] = weight
        else:
            raise ValueError(
                f"Unknown binder_ner variant part {part!r} in {spec!r}: expected 'default', "
                "'unlabeled_weight=W' or 'ignore_overlapping', joined with '+'"
            )
    return options


def parse_variants(specs: str) -> List[Tuple[str, Dict[str, Any]]]:
    """Comma-separated variant specs -> [(name, loss options)], no repeats."""
    variants: List[Tuple[str, Dict[str, Any]]] = []
    for spec in specs.split(","):
        if spec.strip():
            options = parse_variant(spec)
            if all(options != seen for _, seen in variants):
                variants.append((spec.strip(), options))
    if not variants:
        raise ValueError("No binder_ner variant given (e.g. --variants default,unlabeled_weight=0.5)")
    return variants


def binder_config(base: Dict[str, Any], max_width: int, spans_key: str, loss_options: Dict[str, Any]) -> Dict[str, Any]:
    """The binder_ner config of benchmark.py with extra loss options."""
    config = system_config(base, "binder_ner", max_width, spans_key)
    loss = config["components"]["binder_ner"].setdefault("loss", {"@misc": "spacy-binder.BinderLoss.v1"})
    loss.update(copy.deepcopy(loss_options))
    return config


def gold_f(model: Path, gold_path: Path, gpu_id: int) -> float:
    """doc.ents F (in %) of a trained pipeline on a gold .spacy file, from plain text."""
    import spacy
    from spacy.tokens import DocBin
    from spacy.training import Example

    if gpu_id >= 0:
        spacy.require_gpu(gpu_id)
    nlp = spacy.load(model)
    gold = list(DocBin().from_disk(gold_path).get_docs(nlp.vocab))
    scores = nlp.evaluate([Example(nlp.make_doc(doc.text), doc) for doc in gold])
    return round(100 * (scores.get("ents_f") or 0.0), 2)


def rows_to_markdown(rows: List[Dict[str, Any]], title: str) -> str:
    """A markdown table of the rows."""
    lines = [
        f"### {title}",
        "",
        "| System | Trained on | Variant | Output scored | P | R | F | Gold dev F | Train s |",
        "| --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        seconds = row.get("train_seconds")
        dev = row.get("dev_gold_f")
        lines.append(
            f"| {row['system']} | {row['labels']} labels | {row['variant']} | {row.get('output', '')} "
            f"| {row['p']:.2f} | {row['r']:.2f} | **{row['f']:.2f}** | {'' if dev is None else f'{dev:.2f}'} "
            f"| {'' if seconds is None else f'{seconds:.0f}'} |"
        )
    return "\n".join(lines) + "\n"


def main(
    corpus_dir: Path = typer.Argument(..., help="Folder with the gold train/dev/test.spacy", exists=True, file_okay=False),
    config: Path = typer.Option(Path("../configs/binder_ncbi_disease.cfg"), "--config", help="The BINDER config (encoder, training) all systems are made from", exists=True, dir_okay=False),
    distant_dir: Optional[Path] = typer.Option(None, "--distant-dir", help="Folder with the distant train/dev.spacy (default: CORPUS_DIR/distant; made with the dictionary when missing)", file_okay=False),
    dictionary: Optional[Path] = typer.Option(None, "--dictionary", help="TYPE<TAB>term file (default: DISTANT_DIR/dictionary.tsv)", dir_okay=False),
    dataset: Optional[str] = typer.Option(None, "--dataset", help="Dataset name for the rows (default: the corpus folder's name)"),
    work_dir: Path = typer.Option(Path("training/distant"), "--work-dir", help="Configs and trained pipelines"),
    output: Path = typer.Option(Path("metrics/distant.json"), "--output", help="JSON rows"),
    table: Path = typer.Option(Path("metrics/distant.md"), "--table", help="Markdown table"),
    variants: str = typer.Option(DEFAULT_VARIANTS, "--variants", help="binder_ner variants on distant labels, comma-separated: default, unlabeled_weight=W, ignore_overlapping, or options joined with +"),
    encoder: str = typer.Option("minilm", "--encoder", help="'minilm', a model name or a folder"),
    epochs: int = typer.Option(2, "--epochs", help="Epochs for every system"),
    learn_rate: float = typer.Option(1e-4, "--learn-rate", help="Learning rate for every system"),
    batch_size: int = typer.Option(1000, "--batch-size", help="Padded batch size in tokens for every system"),
    eval_frequency: int = typer.Option(100, "--eval-frequency", help="Steps between dev evaluations"),
    descriptions: Optional[Path] = typer.Option(None, "--descriptions", help="Type descriptions (JSON) for binder_ner", dir_okay=False),
    exact_case: str = typer.Option("false", "--exact-case-abbreviations", help="true: dictionary terms without lower-case letters match only as written (see distant_labels.py)"),
    spans_key: str = typer.Option("sc", "--spans-key", help="doc.spans key of gold and labels"),
    gpu_id: int = typer.Option(-1, "--gpu-id", help="GPU id, or -1 for CPU"),
    variants_only: bool = typer.Option(False, "--variants-only", help="Train only the binder_ner variants on distant labels (no spaCy ner, no gold ceiling)"),
) -> None:
    """Dictionary matcher, spaCy ner and binder_ner variants on distant labels,
    and binder_ner on gold labels, all measured on the gold test set."""
    from spacy import util

    exact_case_abbreviations = parse_bool(exact_case)
    try:
        chosen = parse_variants(variants)
    except ValueError as err:
        msg.fail("Bad --variants", str(err), exits=1)
    dataset = dataset or corpus_dir.name
    distant_dir = distant_dir or corpus_dir / "distant"
    dictionary = dictionary or distant_dir / "dictionary.tsv"
    gold_test = corpus_dir / "test.spacy"
    for path in (corpus_dir / "train.spacy", corpus_dir / "dev.spacy", gold_test):
        if not path.is_file():
            msg.fail(f"{path} does not exist", "CORPUS_DIR must hold the gold train/dev/test.spacy", exits=1)
    try:
        terms = read_term_file(dictionary)
    except TermFileError as err:
        exit_on_term_file_error(err)
    warn_term_list(terms)
    for split in ("train", "dev"):
        if not (distant_dir / f"{split}.spacy").is_file():
            msg.info(f"No {distant_dir / f'{split}.spacy'}: labeling the gold {split} split with {dictionary}")
            label_docbin(terms, corpus_dir / f"{split}.spacy", distant_dir / f"{split}.spacy", spans_key,
                         exact_case_abbreviations=exact_case_abbreviations)  # fmt: skip

    common = {"dataset": dataset, "epochs": epochs, "learn_rate": learn_rate, "batch_size": batch_size}
    rows: List[Dict[str, Any]] = []
    # the dictionary matcher on the gold test set
    matched = label_docbin(terms, gold_test, None, spans_key, exact_case_abbreviations=exact_case_abbreviations)
    if matched.scores is None:
        msg.fail(f"{gold_test} has no gold annotation", exits=1)
    scores = matched.scores
    rows.append({
        "system": "dictionary", "labels": "distant", "variant": "matcher", "output": "dictionary matches",
        "p": scores["p"], "r": scores["r"], "f": scores["f"], "dataset": dataset, "n_terms": len(terms.terms),
        "exact_case_abbreviations": exact_case_abbreviations, "scores": scores,
    })  # fmt: skip
    msg.good(f"dictionary on gold test: P {scores['p']:.2f} R {scores['r']:.2f} F {scores['f']:.2f}")

    base = util.load_config(config, interpolate=False)
    apply_budget(base, epochs, learn_rate, batch_size, eval_frequency)
    if descriptions is not None and "descriptions" in base.get("paths", {}):
        base["paths"]["descriptions"] = str(descriptions)
    distant_width = longest_gold_span(distant_dir / "train.spacy", spans_key)
    gold_width = longest_gold_span(corpus_dir / "train.spacy", spans_key)
    msg.info(f"Longest train mention: {distant_width} tokens (distant labels), {gold_width} (gold)")
    runs = [] if variants_only else [("spacy_ner", "distant", "default", system_config(base, "spacy_ner", distant_width, spans_key), {})]
    for name, options in chosen:
        runs.append(("binder_ner", "distant", name, binder_config(base, distant_width, spans_key, options), options))
    if not variants_only:
        runs.append(("binder_ner", "gold", "default", binder_config(base, gold_width, spans_key, {}), {}))
    for system, labels, variant, system_cfg, options in runs:
        msg.divider(f"{system} on {labels} labels ({variant})")
        slug = variant.replace("=", "").replace("+", "_").replace(".", "")
        row = run_system(
            system, system_cfg, distant_dir if labels == "distant" else corpus_dir,
            work_dir / dataset / f"{system}-{labels}-{slug}", dataset=dataset, encoder=encoder,
            spans_key=spans_key, gpu_id=gpu_id, test_path=gold_test,
        )  # fmt: skip
        row.update({
            "system": system, "labels": labels, "variant": variant, "loss_options": options, **common,
            "max_span_width": distant_width if labels == "distant" else gold_width,
        })  # fmt: skip
        if system == "binder_ner":
            run_dir = work_dir / dataset / f"{system}-{labels}-{slug}"
            row["dev_gold_f"] = gold_f(run_dir / "pipeline" / "model-best", corpus_dir / "dev.spacy", gpu_id)
        rows.append({**{key: row[key] for key in ROW_KEYS}, **row})
        msg.good(f"{system} ({labels}, {variant}): F {row['f']:.2f}, {row['train_seconds']:.0f} s training")
    output.parent.mkdir(parents=True, exist_ok=True)
    srsly.write_json(output, rows)
    title = f"Distant supervision on {dataset} (test set, gold); {epochs} epochs, lr {learn_rate}, dictionary of {len(terms.terms)} terms"
    table.parent.mkdir(parents=True, exist_ok=True)
    table.write_text(rows_to_markdown(rows, title), encoding="utf8")
    print(rows_to_markdown(rows, title))
    msg.good(f"Saved {output} and {table}")


if __name__ == "__main__":
    typer.run(main)

"""Distant supervision compared: what do dictionary labels buy each system?

On one corpus (gold train/dev/test .spacy) and one BINDER config, with the
same encoder, epochs, learning rate and batches for every trained system:

- `dictionary`: the dictionary matcher itself (distant_labels.py) on the
  gold test set;
- `spacy_ner` trained on the distant labels (unlabeled tokens count as O);
- `binder_ner` trained on the distant labels;
- `binder_ner` trained on the gold labels: the ceiling.

Each trained binder_ner row also has `dev_gold_f`: its model-best's doc.ents
F on the gold dev split. (The loss options for partially annotated data that
this script once compared were removed: none helped on gold dev, see
results/README.md.)

The distant labels of train AND dev come from the dictionary (no gold at
training time, dev included: model selection sees distant labels too); test
is always gold. The trained systems reuse benchmark.py (its configs, its
budget and its `one` command, one process per system). Flat corpora: the
systems are scored on doc.ents, as in benchmark.py.

Rows go to a JSON list (`system`, `labels`, `variant`, `p`, `r`, `f`, ...)
and a markdown table.
"""
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

import srsly
import typer
from wasabi import msg

SCRIPTS = Path(__file__).parent
sys.path.insert(0, str(SCRIPTS))
import project_scripts  # noqa: F401,E402  (the user project's scripts, importable)
from benchmark import apply_budget, longest_gold_span, run_system, system_config  # noqa: E402
from distant_labels import TermFileError, exit_on_term_file_error, label_docbin, read_term_file, warn_term_list  # noqa: E402
from fetch_assets import parse_bool  # noqa: E402

ROW_KEYS = ("system", "labels", "variant", "output", "p", "r", "f")


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
    encoder: str = typer.Option("minilm", "--encoder", help="'minilm', a model name or a folder"),
    epochs: int = typer.Option(2, "--epochs", help="Epochs for every system"),
    learn_rate: float = typer.Option(1e-4, "--learn-rate", help="Learning rate for every system"),
    batch_size: int = typer.Option(1000, "--batch-size", help="Padded batch size in tokens for every system"),
    eval_frequency: int = typer.Option(100, "--eval-frequency", help="Steps between dev evaluations"),
    descriptions: Optional[Path] = typer.Option(None, "--descriptions", help="Type descriptions (JSON) for binder_ner", dir_okay=False),
    exact_case: str = typer.Option("false", "--exact-case-abbreviations", help="true: dictionary terms without lower-case letters match only as written (see distant_labels.py)"),
    spans_key: str = typer.Option("sc", "--spans-key", help="doc.spans key of gold and labels"),
    gpu_id: int = typer.Option(-1, "--gpu-id", help="GPU id, or -1 for CPU"),
) -> None:
    """Dictionary matcher, spaCy ner and binder_ner on distant labels, and
    binder_ner on gold labels, all measured on the gold test set."""
    from spacy import util

    exact_case_abbreviations = parse_bool(exact_case)
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
    runs = [
        ("spacy_ner", "distant", system_config(base, "spacy_ner", distant_width, spans_key)),
        ("binder_ner", "distant", system_config(base, "binder_ner", distant_width, spans_key)),
        ("binder_ner", "gold", system_config(base, "binder_ner", gold_width, spans_key)),
    ]
    variant = "default"  # the table's column; the loss options it once named were removed
    for system, labels, system_cfg in runs:
        msg.divider(f"{system} on {labels} labels")
        row = run_system(
            system, system_cfg, distant_dir if labels == "distant" else corpus_dir,
            work_dir / dataset / f"{system}-{labels}-{variant}", dataset=dataset, encoder=encoder,
            spans_key=spans_key, gpu_id=gpu_id, test_path=gold_test,
        )  # fmt: skip
        row.update({
            "system": system, "labels": labels, "variant": variant, **common,
            "max_span_width": distant_width if labels == "distant" else gold_width,
        })  # fmt: skip
        if system == "binder_ner":
            run_dir = work_dir / dataset / f"{system}-{labels}-{variant}"
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

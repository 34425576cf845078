"""Train and evaluate `binder_ner`, spaCy `ner` and spaCy `spancat` side by
side on one corpus, with the same encoder, epochs, learning rate and batches.

The three configs are made from one BINDER config by swapping only the
component after the transformer, so everything else (encoder, optimizer,
schedule, batcher, dev evaluation) is the same by construction. spancat's
n-gram suggester and binder_ner's `max_span_width` both cover the longest gold
mention of the train split. Each system trains and is measured in its own
process, so its peak RSS is its own.

Rows (one per system and dataset) are merged into the output JSON, so runs on
several corpora add up; the markdown table is rewritten from all rows. With
`--seeds`, every system is trained once per seed instead: the rows (one per
system, dataset and seed) go to metrics/benchmark_seeds.json, and the table adds
each seed's F-scores, the gap of binder_ner to the best other system, and the
mean, standard deviation and standard error of that gap.
"""
import copy
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import srsly
import typer
from wasabi import msg

import project_scripts  # noqa: F401  (the user project's scripts, importable)
from devices import device_name, gpu_peak_mb, synchronize
from train import encoder_overrides

SCRIPTS = Path(__file__).parent
SYSTEMS = ("binder_ner", "spacy_ner", "spancat")
COMPONENT = {"binder_ner": "binder_ner", "spacy_ner": "ner", "spancat": "spancat"}
ROW_KEYS = ("system", "dataset", "encoder", "epochs", "p", "r", "f", "train_seconds", "words_per_second", "peak_rss_mb")
# what must match for rows of several seeds to be compared
BUDGET_KEYS = ("dataset", "encoder", "epochs", "learn_rate", "schedule", "batch_size", "eval_frequency", "train_limit")
# the value of a budget key in rows written before it was recorded
BUDGET_DEFAULTS = {"schedule": "flat", "train_limit": 0}

app = typer.Typer(add_completion=False)


def longest_gold_span(docbin_path: Path, spans_key: str) -> int:
    """The length in tokens of the longest gold mention in a DocBin (gold in
    doc.spans[spans_key], else doc.ents)."""
    from spacy.tokens import DocBin
    from spacy.vocab import Vocab

    from spacy_binder.spans import get_gold_spans

    longest = 0
    for doc in DocBin().from_disk(docbin_path).get_docs(Vocab()):
        longest = max([longest, *(len(span) for span in get_gold_spans(doc, spans_key))])
    if longest == 0:
        raise ValueError(f"{docbin_path} has no gold mentions (in doc.spans[{spans_key!r}] or doc.ents)")
    return longest


def _listener(base: Dict[str, Any]) -> Dict[str, Any]:
    """The text encoder of the BINDER config (a listener of the shared
    transformer or tok2vec), for the other systems."""
    return copy.deepcopy(base["components"]["binder_ner"]["model"]["text_encoder"])


def _inline_references(config: Dict[str, Any], section: str) -> None:
    """Replace every `${section.key}` value of `config` (for example the
    transformer's segment length, read from binder_ner) by the value it refers
    to, so that the config still interpolates once `section` is removed."""
    values = config
    for name in section.split("."):
        values = values[name]

    def inline(block: Dict[str, Any]) -> None:
        for key, value in block.items():
            if isinstance(value, dict):
                inline(value)
            elif isinstance(value, str) and value.startswith("${" + section + ".") and value.endswith("}"):
                name = value[len(section) + 3 : -1]
                if name not in values:
                    raise KeyError(f"{key} = {value} refers to {name!r}, which {section} does not define")
                block[key] = copy.deepcopy(values[name])

    inline(config)


def system_config(
    base: Dict[str, Any], system: str, max_width: int, spans_key: str, nested: bool = False
) -> Dict[str, Any]:
    """A training config for `system` made from the (uninterpolated) BINDER
    config `base`: same encoder component, corpora and [training]; only
    binder_ner is swapped for the other component, with the same listener,
    and the score weights differ.

    base (Dict[str, Any]): The BINDER config, as loaded with interpolate=False.
    system (str): One of SYSTEMS.
    max_width (int): The longest span to consider (binder_ner and spancat).
    spans_key (str): The doc.spans key of gold and predictions.
    nested (bool): The corpus is nested, so binder_ner is ranked (and its
        model-best picked) by doc.spans rather than doc.ents.
    RETURNS (Dict[str, Any]): The new config.
    """
    if system not in SYSTEMS:
        raise ValueError(f"Unknown system {system!r}: expected one of {', '.join(SYSTEMS)}")
    config = copy.deepcopy(base)
    components = config["components"]
    if system == "binder_ner":
        components["binder_ner"]["max_span_width"] = max_width
        components["binder_ner"]["spans_key"] = spans_key
        # model-best is picked by the output the row ranks it by. spaCy adds
        # the factory's default weights (spans_sc_f = 1.0) to these, so every
        # other F-score gets an explicit 0.
        primary = f"{primary_prefix(system, nested, spans_key)}_f"
        weights = {key: 0.0 for key in ("ents_f", "spans_sc_f", f"spans_{spans_key}_f")}
        weights[primary] = 1.0
    else:
        listener = _listener(base)
        _inline_references(config, "components.binder_ner")
        del components["binder_ner"]
        config["initialize"]["components"].pop("binder_ner", None)
        if system == "spacy_ner":
            # spaCy's own transformer + ner defaults (spacy init config)
            components["ner"] = {
                "factory": "ner",
                "moves": None,
                "update_with_oracle_cut_size": 100,
                "incorrect_spans_key": None,
                "model": {
                    "@architectures": "spacy.TransitionBasedParser.v2",
                    "state_type": "ner",
                    "extra_state_tokens": False,
                    "hidden_width": 64,
                    "maxout_pieces": 2,
                    "use_upper": False,
                    "nO": None,
                    "tok2vec": listener,
                },
            }
            weights = {"ents_f": 1.0}
        else:
            components["spancat"] = {
                "factory": "spancat",
                "spans_key": spans_key,
                "threshold": 0.5,
                "max_positive": None,
                "suggester": {"@misc": "spacy.ngram_range_suggester.v1", "min_size": 1, "max_size": max_width},
                "model": {
                    "@architectures": "spacy.SpanCategorizer.v1",
                    "reducer": {"@layers": "spacy.mean_max_reducer.v1", "hidden_size": 128},
                    "scorer": {"@layers": "spacy.LinearLogistic.v1", "nO": None, "nI": None},
                    "tok2vec": listener,
                },
            }
            weights = {f"spans_{spans_key}_f": 1.0}
    pipeline = config["nlp"]["pipeline"]
    config["nlp"]["pipeline"] = [COMPONENT[system] if name == "binder_ner" else name for name in pipeline]
    config["training"]["score_weights"] = weights
    return config


def primary_prefix(system: str, nested: bool, spans_key: str) -> str:
    """The prefix of the scores a system is ranked by: on a flat corpus the
    flat output (doc.ents) of binder_ner and ner, on a nested one the nested
    spans; spancat only has doc.spans (which may overlap, even on a flat
    corpus)."""
    if system == "spancat" or (system == "binder_ner" and nested):
        return f"spans_{spans_key}"
    return "ents"


def primary_scores(system: str, scores: Dict[str, Any], nested: bool, spans_key: str) -> Dict[str, float]:
    """The P/R/F a system is ranked by (see primary_prefix).

    RETURNS (Dict[str, float]): {"output", "p", "r", "f"}; scores in percent.
    """
    prefix = primary_prefix(system, nested, spans_key)
    output = "doc.ents" if prefix == "ents" else f'doc.spans["{spans_key}"]'
    if scores.get(f"{prefix}_f") is None:
        raise ValueError(f"No {prefix}_* scores for {system}: got {sorted(scores)}")
    return {"output": output, **{k: round(100 * float(scores[f"{prefix}_{k}"]), 2) for k in ("p", "r", "f")}}


def fresh_docs(nlp, docs):
    """New unannotated docs with the words and spaces of `docs`."""
    from spacy.tokens import Doc

    return [Doc(nlp.vocab, words=[t.text for t in d], spaces=[bool(t.whitespace_) for t in d]) for d in docs]


def words_per_second(nlp, docs, batch_size: int = 32, warmup: int = 16) -> float:
    """Inference throughput of `nlp.pipe` on fresh copies of `docs` (words and
    spaces only), after a warm-up on the first few."""
    list(nlp.pipe(fresh_docs(nlp, docs[:warmup]), batch_size=batch_size))
    n_words = sum(len(doc) for doc in docs)
    start = time.perf_counter()
    list(nlp.pipe(fresh_docs(nlp, docs), batch_size=batch_size))
    synchronize()
    return n_words / (time.perf_counter() - start)


def status_kb(field: str) -> Optional[int]:
    """A memory field of /proc/self/status (e.g. "VmHWM"), in kB; None where
    Linux's /proc does not give it."""
    try:
        with open("/proc/self/status", encoding="utf8") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def peak_rss_mb() -> float:
    """This process's peak resident set size in MB: VmHWM where Linux's /proc
    has it. Not ru_maxrss there: Linux carries it over from the parent's
    memory that a forked child shared before its exec, so a child measured
    from a large parent reports at least the parent's size."""
    peak_kb = status_kb("VmHWM")
    if peak_kb is not None:
        return peak_kb / 1024
    # ru_maxrss is in bytes on macOS, KiB elsewhere
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (2**20 if sys.platform == "darwin" else 1024)


@app.command("one", hidden=True)
def run_one(
    system: str = typer.Argument(...),
    config_path: Path = typer.Argument(..., exists=True),
    corpus_dir: Path = typer.Argument(..., exists=True, file_okay=False),
    output_dir: Path = typer.Argument(...),
    row_path: Path = typer.Argument(...),
    dataset: str = typer.Option(...),
    encoder: str = typer.Option("minilm"),
    nested: bool = typer.Option(False),
    spans_key: str = typer.Option("sc"),
    gpu_id: int = typer.Option(-1),
    test_path: Optional[Path] = typer.Option(None, help="Gold test .spacy (default: CORPUS_DIR/test.spacy)"),
) -> None:
    """Train one system on CORPUS_DIR/{train,dev}.spacy, evaluate it on the
    test set, time inference; write one row."""
    import spacy
    from spacy.cli.train import train
    from spacy.tokens import DocBin
    from spacy.training import Example

    overrides = {"paths.train": str(corpus_dir / "train.spacy"), "paths.dev": str(corpus_dir / "dev.spacy")}
    encoder_paths, encoder_name = encoder_overrides(spacy.util.load_config(config_path, interpolate=False), encoder)
    overrides.update(encoder_paths)
    start = time.perf_counter()
    train(config_path, output_dir, use_gpu=gpu_id, overrides=overrides)
    train_seconds = time.perf_counter() - start

    if gpu_id >= 0:
        spacy.require_gpu(gpu_id)
    nlp = spacy.load(output_dir / "model-best")
    test_path = test_path if test_path is not None else corpus_dir / "test.spacy"
    gold = list(DocBin().from_disk(test_path).get_docs(nlp.vocab))
    examples = [Example(nlp.make_doc(doc.text), doc) for doc in gold]
    scores = nlp.evaluate(examples)
    config = spacy.util.load_config(config_path)
    speed = words_per_second(nlp, gold)
    gpu_peak = gpu_peak_mb()  # over training and inference; None on CPU
    row = {
        "system": system,
        "dataset": dataset,
        "encoder": encoder_name,
        "epochs": config["training"]["max_epochs"],
        **primary_scores(system, scores, nested, spans_key),
        "train_seconds": round(train_seconds, 1),
        "words_per_second": round(speed, 1),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "device": device_name(),
        **({} if gpu_peak is None else {"peak_gpu_mb": round(gpu_peak, 1)}),
        "scores": {k: v for k, v in scores.items() if k.endswith(("_p", "_r", "_f"))},
    }
    srsly.write_json(row_path, row)


def batches_per_epoch(train_path: Path, batcher_config: Dict[str, Any], train_limit: int = 0) -> int:
    """How many batches the config's batcher (`[training.batcher]`, resolved)
    makes of the train docs in one epoch (the docs in file order; shuffling
    moves this by a batch or two)."""
    import spacy.training  # noqa: F401  (registers spaCy's batchers)
    from spacy import util
    from spacy.tokens import DocBin
    from spacy.vocab import Vocab

    batcher = util.registry.resolve({"batcher": batcher_config})["batcher"]
    docs = list(DocBin().from_disk(train_path).get_docs(Vocab()))
    if train_limit:
        docs = docs[:train_limit]
    return sum(1 for _ in batcher(docs))


def apply_budget(
    base: Dict[str, Any],
    epochs: int,
    learn_rate: float,
    batch_size: int,
    eval_frequency: int,
    train_limit: int = 0,
    decay_steps: int = 0,
) -> Dict[str, Any]:
    """Give the (uninterpolated) config `base` the shared training budget, in
    place: a fixed number of epochs without early stop, a fixed padded batch
    size, optionally only the first `train_limit` train docs, and a learning
    rate that is flat, or with `decay_steps` > 0 decays linearly from
    `learn_rate` to 0 over that many steps (no warm-up).

    RETURNS (Dict[str, Any]): `base`.
    """
    base["training"].update({"max_epochs": epochs, "max_steps": 0, "patience": 0, "eval_frequency": eval_frequency})
    base["training"]["batcher"]["size"] = batch_size
    if decay_steps > 0:
        base["training"]["optimizer"]["learn_rate"] = {
            "@schedules": "warmup_linear.v1",
            "warmup_steps": 0,
            "total_steps": decay_steps,
            "initial_rate": learn_rate,
        }
    else:
        base["training"]["optimizer"]["learn_rate"] = learn_rate
    base["corpora"]["train"]["limit"] = train_limit
    return base


def run_system(
    system: str,
    config: Dict[str, Any],
    corpus_dir: Path,
    system_dir: Path,
    *,
    dataset: str,
    encoder: str,
    spans_key: str,
    gpu_id: int,
    nested: bool = False,
    test_path: Optional[Path] = None,
) -> Dict[str, Any]:
    """Write `config` to SYSTEM_DIR/config.cfg, train and evaluate it with the
    `one` command in a process of its own (pipeline in SYSTEM_DIR/pipeline),
    and return its row. Exits when that process fails.

    corpus_dir (Path): Folder with the train.spacy and dev.spacy to train on.
    test_path (Optional[Path]): The gold test set (default: CORPUS_DIR/test.spacy).
    """
    from spacy import util

    system_dir.mkdir(parents=True, exist_ok=True)
    config_path = system_dir / "config.cfg"
    util.Config(config).to_disk(config_path)
    row_path = system_dir / "row.json"
    cmd = [
        sys.executable, __file__, "one", system, str(config_path), str(corpus_dir), str(system_dir / "pipeline"),
        str(row_path), "--dataset", dataset, "--encoder", encoder, "--spans-key", spans_key,
        "--gpu-id", str(gpu_id), "--nested" if nested else "--no-nested",
    ]  # fmt: skip
    if test_path is not None:
        cmd += ["--test-path", str(test_path)]
    result = subprocess.run(cmd)
    if result.returncode != 0:
        msg.fail(f"{system} failed (exit {result.returncode}); its config: {config_path}", exits=1)
    return srsly.read_json(row_path)


def budget(row: Dict[str, Any]) -> Tuple:
    """The values of BUDGET_KEYS in a row: rows with the same budget can be
    compared across seeds."""
    return tuple(row.get(key, BUDGET_DEFAULTS.get(key)) for key in BUDGET_KEYS)


def set_description_encoder(config: Dict[str, Any], kind: str, source: Path) -> None:
    """binder_ner's description encoder as `kind`: 'frozen' (the config's
    DescriptionEncoder.v1 keeping its checkpoint's weights) or 'shared'
    (SharedDescriptionEncoder.v1, reading with the transformer component)."""
    model = config["components"].get("binder_ner", {}).get("model", {})
    if model.get("type_encoder", {}).get("@architectures") != "spacy-binder.DescriptionEncoder.v1":
        msg.fail(f"--description-encoder {kind} given, but {source} has no description encoder", exits=1)
    if kind == "frozen":
        model["type_encoder"]["frozen"] = True
    elif kind == "shared":
        model["type_encoder"] = {"@architectures": "spacy-binder.SharedDescriptionEncoder.v1"}
    else:
        msg.fail(f"--description-encoder must be 'config', 'frozen' or 'shared', got {kind!r}", exits=1)


def merge_rows(
    old: List[Dict[str, Any]], new: List[Dict[str, Any]], by_seed: bool = False, extra_keys: Sequence[str] = ()
) -> List[Dict[str, Any]]:
    """Replace rows of the same system and dataset (with `by_seed`: the same
    system, seed and budget), keep the others, in order. `extra_keys` are
    further row fields that tell rows apart (variants of one system, for
    example), compared too."""

    def key(row: Dict[str, Any]) -> Tuple:
        own = (row["system"], row.get("seed"), *budget(row)) if by_seed else (row["system"], row["dataset"])
        return (*own, *(row.get(name) for name in extra_keys))

    replaced = {key(row) for row in new}
    return [row for row in old if key(row) not in replaced] + new


def parse_seeds(text: str) -> List[int]:
    """The seeds of a comma-separated list such as "0,1,2" (no repeats)."""
    try:
        seeds = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ValueError(f"--seeds takes comma-separated integers such as 0,1,2, got {text!r}") from None
    if not seeds:
        raise ValueError("--seeds is empty: give comma-separated integers such as 0,1,2")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"--seeds repeats a seed: {text!r}")
    return seeds


def _dataset_text(row: Dict[str, Any]) -> str:
    """The dataset of a row, with the train-doc limit if it had one."""
    limit = row.get("train_limit") or 0
    return f"{row['dataset']} (first {limit} train docs)" if limit else row["dataset"]


def _learn_rate_text(row: Dict[str, Any]) -> str:
    """A row's learning rate and schedule, e.g. "0.0001 → 0 linear" ("" if unknown)."""
    rate = row.get("learn_rate")
    schedule = row.get("schedule", BUDGET_DEFAULTS["schedule"])
    return "" if rate is None else f"{rate:g} flat" if schedule == "flat" else f"{rate:g} → 0 {schedule}"


def _budget_title(row: Dict[str, Any]) -> str:
    parts = [_dataset_text(row), str(row.get("encoder")), f"{row.get('epochs')} epochs"]
    if row.get("learn_rate") is not None:
        parts.append(f"lr {_learn_rate_text(row)}")
    if row.get("batch_size") is not None:
        parts.append(f"batches of {row['batch_size']} padded tokens")
    if row.get("eval_frequency") is not None:
        parts.append(f"dev every {row['eval_frequency']} steps")
    return ", ".join(parts)


def seeds_markdown(rows: List[Dict[str, Any]], system: str = "binder_ner") -> str:
    """Per dataset and budget (BUDGET_KEYS), a table of each seed's F-scores
    and of the paired gap between `system` and the best other system (the
    one with the highest mean F over the seeds), with the mean and standard
    deviation over the seeds and the standard error of the mean gap.

    A seed without a row for every system of its group is left out of the
    table, and a line under it says which. Two rows of one system, seed and
    budget are an error: they would be different variants under one name.
    """
    parts = []
    for group in dict.fromkeys(budget(row) for row in rows):
        own = [row for row in rows if budget(row) == group]
        f: Dict[Tuple[str, Any], float] = {}
        for row in own:
            if (row["system"], row.get("seed")) in f:
                raise ValueError(
                    f"Two rows for {row['system']} with seed {row.get('seed')} and the same budget "
                    f"({_budget_title(row)}): keep one, or put the other in a file of its own"
                )
            f[row["system"], row.get("seed")] = row["f"]
        systems = list(dict.fromkeys(row["system"] for row in own))
        systems.sort(key=lambda name: name != system)  # `system` first, the others as they ran
        # numeric order; rows without a seed (the config's) last
        seeds = sorted({row.get("seed") for row in own}, key=lambda seed: (seed is None, seed or 0))
        complete = [s for s in seeds if all((name, s) in f for name in systems)]
        others = [name for name in systems if name != system]
        best = None
        if system in systems and others and complete:
            best = max(others, key=lambda name: statistics.mean(f[name, s] for s in complete))
        header = [f"{name} F" for name in systems] + ([f"{system} - {best}"] if best else [])
        n = len(complete)
        lines = [
            f"{_budget_title(own[0])}: {n} seed{'' if n == 1 else 's'} with every system",
            "",
            "| Seed | " + " | ".join(header) + " |",
            "| ---: |" + " ---: |" * len(header),
        ]
        gaps = [f[system, s] - f[best, s] for s in complete] if best else []
        for i, seed in enumerate(complete):
            cells = [f"{f[name, seed]:.2f}" for name in systems] + ([f"{gaps[i]:+.2f}"] if best else [])
            lines.append(f"| {seed} | " + " | ".join(cells) + " |")
        if n > 1:
            cells = [f"{statistics.mean(f[name, s] for s in complete):.2f} ({statistics.stdev(f[name, s] for s in complete):.2f})" for name in systems]
            if best:
                cells.append(f"**{statistics.mean(gaps):+.2f}** ({statistics.stdev(gaps):.2f})")
            lines.append("| mean (sd) | " + " | ".join(cells) + " |")
        if best and len(others) > 1:
            lines += ["", f"The best other system is the one with the highest mean F over these seeds: {best}."]
        if best and n > 1:
            se = statistics.stdev(gaps) / n**0.5
            lines += ["", f"Mean gap {statistics.mean(gaps):+.2f} F, standard error {se:.2f} over {n} seeds."]
        left_out = [s for s in seeds if s not in complete]
        if left_out:
            missing = ", ".join(f"{s} (no {', '.join(m for m in systems if (m, s) not in f)})" for s in left_out)
            lines += ["", f"Left out, without a row for every system: seed{'' if len(left_out) == 1 else 's'} {missing}."]
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"


def rows_to_markdown(rows: List[Dict[str, Any]], with_seed: bool = False) -> str:
    """A markdown table of the benchmark rows, with train seconds per epoch
    (and with `with_seed`, a column for the seed)."""
    seed_head, seed_rule = ("| Seed ", "| ---: ") if with_seed else ("", "")
    lines = [
        seed_head + "| Dataset | System | Output scored | Encoder | Epochs | Learning rate | P | R | F | Train s/epoch | Words/s | Peak RSS (MB) |",
        seed_rule + "| --- | --- | --- | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        per_epoch = row["train_seconds"] / max(1, row["epochs"])
        lines.append(
            (f"| {row.get('seed')} " if with_seed else "")
            + f"| {_dataset_text(row)} | {row['system']} | {row.get('output', '')} | {row['encoder']} | {row['epochs']} | {_learn_rate_text(row)} "
            f"| {row['p']:.2f} | {row['r']:.2f} | **{row['f']:.2f}** | {per_epoch:.0f} "
            f"| {row['words_per_second']:.0f} | {row['peak_rss_mb']:.0f} |"
        )
    return "\n".join(lines) + "\n"


@app.command("run")
def run(
    dataset: str = typer.Argument(..., help="Dataset name for the rows (e.g. ncbi_disease)"),
    corpus_dir: Path = typer.Argument(..., help="Folder with train/dev/test.spacy", exists=True, file_okay=False),
    base_config: Path = typer.Argument(..., help="The BINDER config the others are made from", exists=True),
    work_dir: Path = typer.Option(Path("training/benchmark"), "--work-dir", help="Configs and trained pipelines"),
    output: Optional[Path] = typer.Option(None, "--output", help="JSON rows, merged (default: metrics/benchmark.json, with --seeds metrics/benchmark_seeds.json)"),
    table: Optional[Path] = typer.Option(None, "--table", help="Markdown table (default: metrics/benchmark.md, with --seeds metrics/benchmark_seeds.md)"),
    systems: str = typer.Option(",".join(SYSTEMS), "--systems", help="Comma-separated subset of the systems"),
    encoder: str = typer.Option("minilm", "--encoder", help="'minilm', a model name or a folder"),
    epochs: int = typer.Option(2, "--epochs", help="Epochs for every system"),
    learn_rate: float = typer.Option(1e-4, "--learn-rate", help="Initial learning rate for every system"),
    schedule: str = typer.Option("flat", "--schedule", help="'flat' learning rate, or 'linear' decay to 0 over the epochs"),
    batch_size: int = typer.Option(1000, "--batch-size", help="Padded batch size in tokens for every system"),
    eval_frequency: int = typer.Option(100, "--eval-frequency", help="Steps between dev evaluations"),
    seed: Optional[int] = typer.Option(None, "--seed", help="Random seed for every system (default: the config's)"),
    seeds: str = typer.Option("", "--seeds", help="Comma-separated seeds (e.g. 0,1,2,3,4): train every system once per seed; rows per seed and a table of the gaps"),
    train_limit: int = typer.Option(0, "--train-limit", help="Train on the first N docs only (0 = all); reported per row"),
    nested: bool = typer.Option(False, "--nested", help="The corpus is nested: rank binder_ner by doc.spans"),
    descriptions: Optional[Path] = typer.Option(None, "--descriptions", help="Type descriptions (JSON) for binder_ner", exists=True, dir_okay=False),
    spans_key: str = typer.Option("sc", "--spans-key", help="doc.spans key of the gold spans"),
    gpu_id: int = typer.Option(-1, "--gpu-id", help="GPU id, or -1 for CPU"),
    description_encoder: str = typer.Option("config", "--description-encoder", help="binder_ner's description encoder: 'config' (as the config has it), 'frozen' (DescriptionEncoder.v1 with frozen = true) or 'shared' (SharedDescriptionEncoder.v1: the transformer component reads the descriptions); other than 'config', rows get description_encoder"),
) -> None:
    """Train, evaluate and time each system on one corpus, one process each
    (with --seeds, once per seed)."""
    from spacy import util

    chosen = [s.strip() for s in systems.split(",") if s.strip()]
    unknown = sorted(set(chosen) - set(SYSTEMS))
    if unknown:
        msg.fail(f"Unknown system(s): {', '.join(unknown)}", f"Choose from {', '.join(SYSTEMS)}", exits=1)
    if nested and "spacy_ner" in chosen:
        msg.fail("spaCy ner cannot predict nested spans", "Leave spacy_ner out of --systems with --nested", exits=1)
    if seeds and seed is not None:
        msg.fail("--seed and --seeds both given", "Use --seed N for one run or --seeds N,M,... for several", exits=1)
    try:
        seed_list: List[Optional[int]] = parse_seeds(seeds) if seeds else [seed]
    except ValueError as err:
        msg.fail(str(err), exits=1)
    stem = "benchmark_seeds" if seeds else "benchmark"
    output = output if output is not None else Path("metrics") / f"{stem}.json"
    table = table if table is not None else Path("metrics") / f"{stem}.md"
    max_width = longest_gold_span(corpus_dir / "train.spacy", spans_key)
    msg.info(f"Longest train mention: {max_width} tokens (spancat n-grams 1..{max_width}, binder max_span_width)")
    if schedule not in ("flat", "linear"):
        msg.fail(f"Unknown --schedule '{schedule}'", "Use 'flat' or 'linear'", exits=1)
    base = util.load_config(base_config, interpolate=False)
    decay_steps = 0
    if schedule == "linear":
        batcher = {**base["training"]["batcher"], "size": batch_size}
        decay_steps = epochs * batches_per_epoch(corpus_dir / "train.spacy", batcher, train_limit)
        msg.info(f"Learning rate {learn_rate} decays linearly to 0 over {decay_steps} steps")
    # Same schedule for all: a fixed number of epochs, no early stop.
    apply_budget(base, epochs, learn_rate, batch_size, eval_frequency, train_limit, decay_steps)
    if descriptions is not None:
        if "descriptions" not in base.get("paths", {}):
            msg.fail(f"--descriptions given, but {base_config} has no paths.descriptions to set", exits=1)
        base["paths"]["descriptions"] = str(descriptions.resolve())
    if description_encoder != "config":
        set_description_encoder(base, description_encoder, base_config)
    old_rows = srsly.read_json(output) if output.exists() else []
    rows: List[Dict[str, Any]] = []
    for run_seed in seed_list:
        if run_seed is not None:
            base["system"]["seed"] = run_seed
        run_dir = work_dir / dataset / f"seed_{run_seed}" if seeds else work_dir / dataset
        for system in chosen:
            msg.divider(f"{system} on {dataset}" + (f", seed {run_seed}" if seeds else ""))
            row = run_system(
                system, system_config(base, system, max_width, spans_key, nested), corpus_dir, run_dir / system,
                dataset=dataset, encoder=encoder, spans_key=spans_key, gpu_id=gpu_id, nested=nested,
            )  # fmt: skip
            row["max_span_width"] = max_width
            row["learn_rate"] = learn_rate
            row["schedule"] = schedule
            row["seed"] = base["system"]["seed"]
            row["batch_size"] = batch_size
            row["eval_frequency"] = eval_frequency
            row["train_limit"] = train_limit
            if description_encoder != "config" and system == "binder_ner":
                row["description_encoder"] = description_encoder
            rows.append(row)
            msg.good(f"{system}: F {row['f']:.2f}, {row['train_seconds']:.0f} s training, {row['words_per_second']:.0f} words/s")
        # saved after every seed, so a later failure loses none of them
        all_rows = merge_rows(old_rows, rows, by_seed=bool(seeds), extra_keys=("description_encoder",))
        output.parent.mkdir(parents=True, exist_ok=True)
        srsly.write_json(output, all_rows)
        text = seeds_markdown(all_rows) + "\n" + rows_to_markdown(all_rows, with_seed=True) if seeds else rows_to_markdown(all_rows)
        table.write_text(text, encoding="utf8")
    print(text)
    msg.good(f"Saved {output} and {table}")


if __name__ == "__main__":
    app()

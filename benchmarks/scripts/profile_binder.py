"""Where does the time of a trained BINDER pipeline go, in inference and in
training? Answers which part to optimise first: the transformer, the BINDER
head (span enumeration, scoring, decoding) or the Python around them.

Inference is `nlp.pipe` over the first --n-docs docs of TRAIN_SPACY (fresh
docs: words and spaces only); training is --train-steps `nlp.update` calls on
batches of Examples from it, with the optimizer of `nlp.resume_training()` (see resume_training).
Each is run three times after a warm-up: once with the components' methods
timed directly (for summary.json), once under `torch.profiler` (CPU
activities; op tables, plus a table by total time in which the components'
methods show up as `transformer.predict`, `binder_ner.update`, ...), once
under cProfile (Python-side cumulative times). The runs are separate so that
neither profiler's overhead distorts the other or the direct timings.

In training, the transformer's backward pass runs inside binder_ner's
`update` (its listener calls back into the transformer); it is timed on its
own and counted for the transformer, not for binder_ner.
"""
import cProfile
import io
import pstats
import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional

import spacy
import srsly
import torch
import typer
from spacy.language import Language
from spacy.tokens import Doc, DocBin
from spacy.training import Example
from spacy.util import minibatch, registry
from thinc.api import Adam, Optimizer
from torch.profiler import ProfilerActivity, record_function
from wasabi import msg

from benchmark import fresh_docs

TRANSFORMER = "transformer"
BINDER = "binder_ner"
INFERENCE_METHODS = ("predict", "set_annotations")
TRAINING_METHODS = ("update", "finish_update")


def _wrap(fn: Callable, label: str, times: Optional[Dict[str, float]], record: bool) -> Callable:
    """`fn`, adding its wall time to times[label] and/or marking it as a
    torch.profiler range called `label`."""

    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            if record:
                with record_function(label):
                    return fn(*args, **kwargs)
            return fn(*args, **kwargs)
        finally:
            if times is not None:
                times[label] += time.perf_counter() - start

    return wrapper


@contextmanager
def instrument(
    nlp: Language, methods: List[str], times: Optional[Dict[str, float]] = None, record: bool = False
) -> Iterator[None]:
    """Wrap the given methods of the transformer and binder_ner components
    (on the instances, undone on exit), plus the transformer's backward pass
    that binder_ner's listener calls during `update`.

    nlp (Language): The pipeline.
    methods (List[str]): Method names, e.g. ["predict", "set_annotations"].
    times (Optional[Dict[str, float]]): Where to add seconds per "component.method".
    record (bool): Also mark each call as a torch.profiler range.
    """
    patched = []
    for name in (TRANSFORMER, BINDER):
        pipe = nlp.get_pipe(name)
        for method in methods:
            original = getattr(pipe, method)
            setattr(pipe, method, _wrap(original, f"{name}.{method}", times, record))
            patched.append((pipe, method))
    transformer = nlp.get_pipe(TRANSFORMER)
    if "update" in methods:
        update = transformer.update

        def update_and_wrap_backprop(*args, **kwargs):
            losses = update(*args, **kwargs)
            # The listener keeps the transformer's backprop callback in
            # `_backprop` (spacy-transformers); time it where it is present.
            for listener in transformer.listeners:
                backprop = getattr(listener, "_backprop", None)
                if backprop is not None:
                    listener._backprop = _wrap(backprop, f"{TRANSFORMER}.backward", times, record)
            return losses

        transformer.update = update_and_wrap_backprop
    try:
        yield
    finally:
        for pipe, method in patched:
            delattr(pipe, method)


def make_batches(nlp: Language, docs: List[Doc], batch_size: int, n_steps: int) -> List[List[Example]]:
    """`n_steps` batches of Examples (fresh predicted docs, gold docs as
    reference), cycling through `docs`."""
    examples = [Example(fresh_docs(nlp, [doc])[0], doc) for doc in docs]
    batches: List[List[Example]] = []
    while len(batches) < n_steps:
        batches.extend(list(b) for b in minibatch(examples, size=batch_size))
    return batches[:n_steps]


def resume_training(nlp: Language) -> Optimizer:
    """`nlp.resume_training()`, with the optimizer of the pipeline's
    [training.optimizer]. That block often refers to other settings (e.g. a
    schedule's total_steps = ${training.max_steps}), which resume_training
    cannot resolve from the block alone: resolve it from the interpolated
    config then, and fall back to Adam (the learning rate does not matter
    for profiling)."""
    try:
        return nlp.resume_training()
    except Exception:  # noqa: BLE001 - a config that spaCy cannot resolve on its own
        pass
    try:
        block = nlp.config.interpolate()["training"]["optimizer"]
        optimizer = registry.resolve({"optimizer": block})["optimizer"]
    except Exception as error:  # noqa: BLE001
        msg.warn(f"Could not build the pipeline's optimizer ({type(error).__name__}); using Adam(1e-5)")
        optimizer = Adam(1e-5)
    return nlp.resume_training(sgd=optimizer)


def shares(times: Dict[str, float], wall: float, components: Dict[str, List[str]]) -> Dict[str, Any]:
    """Seconds and share of `wall` per component, from per-method seconds.

    components (Dict[str, List[str]]): component -> the "x.method" labels
        that count for it, "-label" for time to subtract (nested calls).
    """
    result: Dict[str, Any] = {"wall_seconds": round(wall, 4)}
    total = 0.0
    for component, labels in components.items():
        seconds = sum(-times[l[1:]] if l.startswith("-") else times[l] for l in labels)
        total += seconds
        result[f"{component}_seconds"] = round(seconds, 4)
        result[f"{component}_share"] = round(seconds / wall, 4)
    result["other_share"] = round(max(0.0, wall - total) / wall, 4)
    result["methods_seconds"] = {label: round(s, 4) for label, s in sorted(times.items())}
    return result


def torch_tables(prof: Any) -> str:
    """The op table by self CPU time, then the table by total CPU time (where
    the component ranges show up)."""
    averages = prof.key_averages()
    return (
        "# Sorted by self CPU time\n"
        + averages.table(sort_by="self_cpu_time_total", row_limit=30)
        + "\n\n# Sorted by total CPU time (component methods are ranges named component.method)\n"
        + averages.table(sort_by="cpu_time_total", row_limit=20)
        + "\n"
    )


def cprofile_text(profiler: cProfile.Profile) -> str:
    """pstats of `profiler`, sorted by cumulative time, top 40."""
    stream = io.StringIO()
    pstats.Stats(profiler, stream=stream).sort_stats("cumulative").print_stats(40)
    return stream.getvalue()


def profile_all(run: Callable[[], None], methods: List[str], nlp: Language, out_dir: Path, prefix: str) -> Dict[str, float]:
    """Run `run` timed, under torch.profiler and under cProfile; write the
    two reports. RETURNS (Dict[str, float]): wall seconds of the timed run
    and seconds per component method."""
    times: Dict[str, float] = defaultdict(float)
    with instrument(nlp, methods, times=times):
        start = time.perf_counter()
        run()
        times["wall"] = time.perf_counter() - start
    with instrument(nlp, methods, record=True):
        with torch.profiler.profile(activities=[ProfilerActivity.CPU]) as prof:
            run()
    (out_dir / f"{prefix}_torch.txt").write_text(torch_tables(prof), encoding="utf8")
    profiler = cProfile.Profile()
    profiler.enable()
    run()
    profiler.disable()
    (out_dir / f"{prefix}_cprofile.txt").write_text(cprofile_text(profiler), encoding="utf8")
    return times


def main(
    model: str = typer.Argument(..., help="Trained pipeline with 'transformer' and 'binder_ner' (folder or package)"),
    train_path: Path = typer.Argument(..., help="Training docs with gold spans (.spacy)", exists=True, dir_okay=False),
    output_dir: Path = typer.Option(..., "--output-dir", "-o", help="Folder for the reports", file_okay=False),
    n_docs: int = typer.Option(64, "--n-docs", "-n", help="Docs for inference (and the pool of training examples)", min=1),
    train_steps: int = typer.Option(5, "--train-steps", help="nlp.update calls per training run", min=1),
    batch_size: int = typer.Option(8, "--batch-size", "-b", help="Examples per update; nlp.pipe uses 32"),
) -> None:
    """Profile inference and training of a BINDER pipeline with torch.profiler
    and cProfile, and write the component time shares."""
    nlp = spacy.load(model)
    for name in (TRANSFORMER, BINDER):
        if name not in nlp.pipe_names:
            msg.fail(f"The pipeline {model} has no '{name}' component", f"Components: {nlp.pipe_names}", exits=1)
    gold = [doc for doc in DocBin().from_disk(train_path).get_docs(nlp.vocab) if len(doc)][:n_docs]
    if not gold:
        msg.fail(f"No non-empty docs in {train_path}", exits=1)
    output_dir.mkdir(parents=True, exist_ok=True)
    n_words = sum(len(doc) for doc in gold)
    msg.info(f"{len(gold)} docs, {n_words} words; {train_steps} updates of {batch_size} examples")

    def infer() -> None:
        list(nlp.pipe(fresh_docs(nlp, gold), batch_size=32))

    infer()  # warm-up
    inference = profile_all(infer, list(INFERENCE_METHODS), nlp, output_dir, "inference")

    sgd = resume_training(nlp)
    batches = make_batches(nlp, gold, batch_size, train_steps)

    def train() -> None:
        for batch in batches:
            nlp.update(batch, sgd=sgd)

    nlp.update(batches[0], sgd=sgd)  # warm-up
    training = profile_all(train, list(TRAINING_METHODS), nlp, output_dir, "training")

    summary = {
        "model": str(model),
        "data": str(train_path),
        "n_docs": len(gold),
        "words": n_words,
        "train_steps": train_steps,
        "batch_size": batch_size,
        "method": "direct wall time of the component methods, in a run without profilers",
        "note": "binder_ner includes its description encoder; the transformer includes its backward pass",
        "inference": shares(
            inference,
            inference.pop("wall"),
            {
                TRANSFORMER: [f"{TRANSFORMER}.{m}" for m in INFERENCE_METHODS],
                BINDER: [f"{BINDER}.{m}" for m in INFERENCE_METHODS],
            },
        ),
        "training": shares(
            training,
            training.pop("wall"),
            {
                # the transformer's backward runs inside binder_ner.update
                TRANSFORMER: [f"{TRANSFORMER}.update", f"{TRANSFORMER}.finish_update", f"{TRANSFORMER}.backward"],
                BINDER: [f"{BINDER}.update", f"{BINDER}.finish_update", f"-{TRANSFORMER}.backward"],
            },
        ),
    }
    srsly.write_json(output_dir / "summary.json", summary)
    for stage in ("inference", "training"):
        row = summary[stage]
        msg.divider(stage)
        msg.text(
            f"wall {row['wall_seconds']:.2f} s: transformer {100 * row['transformer_share']:.1f}%, "
            f"binder_ner {100 * row['binder_ner_share']:.1f}%, other {100 * row['other_share']:.1f}%"
        )
        lines = (output_dir / f"{stage}_torch.txt").read_text(encoding="utf8").splitlines()
        print("\n".join(lines[1:9]))
    msg.good(f"Reports in {output_dir}")


if __name__ == "__main__":
    typer.run(main)

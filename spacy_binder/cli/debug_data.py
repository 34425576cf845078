"""`python -m spacy_binder debug-data CONFIG`: what `spacy debug data` would
say about a binder_ner component's spans, and what only BINDER needs (see
spacy_binder.diagnostics)."""
import sys
from collections import Counter
from pathlib import Path
from typing import Optional

import typer
from spacy.cli._util import Arg, Opt, import_code, parse_config_overrides, show_validation_error
from wasabi import MESSAGES, Printer

from ..diagnostics import (
    INSIDE,
    LOW_COUNT_THRESHOLD,
    OVERLAP_KINDS,
    DataReport,
    diagnose_config,
    length_percentile,
)
from . import app


@app.command(
    "debug-data",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def debug_data_cli(
    # fmt: off
    ctx: typer.Context,  # the config overrides, e.g. --paths.train train.spacy
    config_path: Path = Arg(..., help="Path to the training config", exists=True, allow_dash=True),
    code_path: Optional[Path] = Opt(None, "--code", "-c", help="Python file with registered functions to import"),
    verbose: bool = Opt(False, "--verbose", "-V", help="Print full length distributions"),
    strict: bool = Opt(False, "--strict", help="Exit 1 also when training would leave gold mentions out of the loss"),
    no_format: bool = Opt(False, "--no-format", "-NF", help="Don't pretty-print the results (no icons, colours or wrapping)"),
    # fmt: on
):
    """Analyse the train and dev data of a binder_ner config: mentions per
    label, lengths against max_span_width, sentence crossings and edges,
    nesting and overlap, type descriptions, and the gold that training
    would leave out of the loss (with the reason). Exits 1 on what would
    make training fail (and with --strict, on gold training would skip).
    """
    overrides = parse_config_overrides(ctx.args)
    import_code(code_path)
    msg = Printer(pretty=not no_format)
    with show_validation_error(config_path):
        try:
            reports = diagnose_config(config_path, overrides)
        except (ValueError, FileNotFoundError) as error:  # bad data, a missing corpus file
            msg.fail(str(error), exits=1)
    for report in reports:
        print_report(report, msg, verbose=verbose, strict=strict)
    msg.divider("Summary")
    counts = {kind: msg.counts[kind] for kind in (MESSAGES.GOOD, MESSAGES.WARN, MESSAGES.FAIL)}
    if counts[MESSAGES.GOOD]:
        msg.good(f"{counts[MESSAGES.GOOD]} check(s) passed")
    if counts[MESSAGES.WARN]:
        msg.warn(f"{counts[MESSAGES.WARN]} warning(s)")
    if counts[MESSAGES.FAIL]:
        msg.fail(f"{counts[MESSAGES.FAIL]} error(s)")
        sys.exit(1)


def _format_counts(per_label: Counter) -> str:
    return ", ".join(f"{label} {n}" for label, n in sorted(per_label.items()) if n)


def print_report(report: DataReport, msg: Printer, *, verbose: bool = False, strict: bool = False) -> None:
    """Print one component's report: warn where the data is unusual, fail
    where training would fail (or, with `strict`, skip gold)."""
    msg.divider(f"binder_ner '{report.component}'")
    msg.info(
        f"spans_key '{report.spans_key}', max_span_width {report.max_span_width}, "
        f"max_segment_length {report.max_segment_length}"
    )
    msg.text(f"{report.train.n_docs} training docs, {report.dev.n_docs} evaluation docs")
    if not report.dev.n_docs:
        msg.fail("No evaluation docs")
    for error in report.errors:
        msg.fail(error)
    _print_labels(report, msg)
    _print_lengths(report, msg, verbose)
    _print_edges(report, msg)
    _print_overlaps(report, msg)
    _print_descriptions(report, msg)
    _print_skipped(report, msg, strict)


def _print_labels(report: DataReport, msg: Printer) -> None:
    msg.divider("Labels")
    labels = list(dict.fromkeys(report.labels + sorted(report.dev.label_counts)))
    rows = [
        (label, report.train.label_counts[label], report.dev.label_counts[label], report.train.docs_with_label[label])
        for label in labels
    ]
    msg.table(rows, header=("Label", "Train", "Dev", "Train docs with it"), divider=True)
    for label, n in report.low_count_labels.items():
        msg.warn(f"Low number of train mentions for label '{label}' ({n}, at most {LOW_COUNT_THRESHOLD})")
    if report.dev_labels_not_in_train:
        missing = Counter({label: report.dev.label_counts[label] for label in report.dev_labels_not_in_train})
        msg.warn(f"Dev labels not in the train data (never predicted): {_format_counts(missing)}")
    for label in report.labels_in_every_train_doc:
        msg.warn(f"No train docs WITHOUT label '{label}'")
    if not report.low_count_labels and not report.dev_labels_not_in_train:
        msg.good(f"Every label has more than {LOW_COUNT_THRESHOLD} train mentions, and every dev label is in train")


def _print_lengths(report: DataReport, msg: Printer, verbose: bool) -> None:
    msg.divider("Mention lengths (reference tokens)")
    for name, split in (("train", report.train), ("dev", report.dev)):
        rows = []
        for label, lengths in sorted(split.lengths.items()):
            rows.append(
                (label, min(lengths), length_percentile(lengths, 90), max(lengths), split.longer_than_max_span_width[label])
            )
        if rows:
            msg.text(f"{name}:")
            msg.table(rows, header=("Label", "Min", "90%", "Max", f"> {report.max_span_width}"), divider=True)
        if verbose:
            for label, lengths in sorted(split.lengths.items()):
                msg.text(f"{name} {label} lengths: " + ", ".join(f"{n}: {c}" for n, c in sorted(lengths.items())))
        n_long = sum(split.longer_than_max_span_width.values())
        if n_long:
            msg.warn(
                f"{n_long} {name} mention(s) longer than max_span_width "
                f"({report.max_span_width}), never predicted: {_format_counts(split.longer_than_max_span_width)}"
            )
    if not sum(report.train.longer_than_max_span_width.values()):
        msg.good(f"No train mention longer than max_span_width ({report.max_span_width})")


def _print_edges(report: DataReport, msg: Printer) -> None:
    msg.divider("Sentence boundaries and mention edges")
    for name, split in (("train", report.train), ("dev", report.dev)):
        checks = (
            (split.crossing_sentences, "crossing a sentence boundary of the reference"),
            (split.punctuation_edges, "starting or ending with punctuation"),
            (split.whitespace_edges, "starting or ending with whitespace"),
        )
        for per_label, what in checks:
            if sum(per_label.values()):
                msg.warn(f"{sum(per_label.values())} {name} mention(s) {what}: {_format_counts(per_label)}")
        if not split.has_sentences and split.n_docs:
            msg.info(f"The {name} reference docs have no sentence boundaries (segments come from spaCy's Sentencizer)")


def _print_overlaps(report: DataReport, msg: Printer) -> None:
    msg.divider("Nesting and overlap")
    for name, split in (("train", report.train), ("dev", report.dev)):
        for kind in OVERLAP_KINDS:
            per_label = split.overlaps[kind]
            if sum(per_label.values()):
                msg.info(f"{sum(per_label.values())} {name} mention(s) {kind}: {_format_counts(per_label)}")
    if sum(report.train.overlaps[INSIDE].values()):
        msg.text("binder_ner learns nested mentions; doc.ents keeps a non-overlapping subset.")
    if not any(sum(per_label.values()) for per_label in report.train.overlaps.values()):
        msg.good("No train mention overlaps another (a flat corpus)")


def _print_descriptions(report: DataReport, msg: Printer) -> None:
    msg.divider("Type descriptions")
    descriptions = report.descriptions
    if not descriptions.reads_descriptions:
        msg.info("The type encoder does not read descriptions (one learned vector per label)")
        return
    if descriptions.without_description:
        msg.warn(
            f"{len(descriptions.without_description)} label(s) without a description, "
            f"the component uses the label name: {', '.join(descriptions.without_description)}"
        )
    else:
        msg.good("Every label has a description")
    if descriptions.max_pieces is not None:
        msg.info(
            f"Description encoder '{descriptions.encoder_name}' reads at most "
            f"{descriptions.max_pieces} word pieces; longest description: "
            f"{max(descriptions.pieces.values(), default=0)}"
        )
        if not descriptions.too_long:
            msg.good("Every description fits the description encoder")


def _print_skipped(report: DataReport, msg: Printer, strict: bool) -> None:
    msg.divider("Gold left out of training")
    for name, split in (("train", report.train), ("dev", report.dev)):
        for reason, per_label in split.skipped.items():
            n = sum(per_label.values())
            if not n:
                continue
            text = f"{n} {name} gold mention(s) {reason}: {_format_counts(per_label)}"
            if name == "train" and strict:
                msg.fail(text)
            else:
                msg.warn(text)
        if not split.n_skipped:
            msg.good(f"No {name} gold mention is left out: each can be a candidate of its label")
    if report.train.n_skipped or report.dev.n_skipped:
        msg.text(
            "Train mentions listed here are left out of the loss; dev ones can never be "
            "predicted. Raise max_span_width for long ones, fix the "
            "tokenization or offsets of misaligned ones (or set gold_preproc), and check "
            "sentence boundaries or max_segment_length for those crossing a segment."
        )

"""`python -m spacy_binder convert`: a corpus in one of the reader formats to a
DocBin (.spacy), with the counts of what was read, repaired and dropped."""
import inspect
import re
from pathlib import Path
from typing import Any, Dict, Optional

import spacy
import typer
from spacy.tokens import DocBin
from wasabi import msg

from ..corpora import FORMATS
from . import app

# how a tab is written on a command line
DELIMITER_NAMES = {"tab": "\t", "\\t": "\t", "space": " "}
# --tag-columns: column numbers (negative: from the end), comma-separated
TAG_COLUMNS = re.compile(r" *-?\d+ *(, *-?\d+ *)*")


@app.command("convert")
def convert_cli(
    input_path: Path = typer.Argument(..., help="A file, or a folder of files of the format", exists=True),
    output_path: Path = typer.Argument(..., help="The .spacy file to write", dir_okay=False),
    input_format: str = typer.Option(..., "--format", "-f", help=f"One of: {', '.join(FORMATS)}"),
    lang: str = typer.Option("en", "--lang", help="spaCy language of the tokenizer and vocab"),
    spans_key: str = typer.Option("sc", "--spans-key", help="doc.spans key for all mentions"),
    pattern: Optional[str] = typer.Option(None, help="File names to read in a folder (a glob)"),
    token_column: Optional[int] = typer.Option(None, help="iob: column of the token (negative: from the end)"),
    tag_columns: Optional[str] = typer.Option(None, help="iob: tag columns, comma-separated, outermost first"),
    n_columns: Optional[int] = typer.Option(None, help="iob: columns every token line has"),
    delimiter: Optional[str] = typer.Option(None, help="iob: column separator ('tab'); default: spaces and tabs"),
    scheme: Optional[str] = typer.Option(None, help="iob: iob1, iob2 (default) or bioes"),
    comment_prefix: Optional[str] = typer.Option(
        None, help="iob: lines starting with it are skipped, unless they read as token lines"
    ),
    docstart: Optional[str] = typer.Option(None, help="iob: first field of document-start lines"),
    one_doc_per_sentence: bool = typer.Option(False, "--one-doc-per-sentence", help="iob: one Doc per sentence"),
    no_sentence_starts: bool = typer.Option(
        False, "--no-sentence-starts", help="iob, token-jsonl: leave sentence starts unset"
    ),
    tokens_field: Optional[str] = typer.Option(None, help="token-jsonl: field of the tokens"),
    mentions_field: Optional[str] = typer.Option(None, help="token-jsonl: field of the mentions"),
    text_field: Optional[str] = typer.Option(None, help="spans-jsonl: field of the text"),
    spans_field: Optional[str] = typer.Option(None, help="spans-jsonl: field of the mentions"),
    start_field: Optional[str] = typer.Option(None, help="jsonl: a mention's start field"),
    end_field: Optional[str] = typer.Option(None, help="jsonl: a mention's end field"),
    label_field: Optional[str] = typer.Option(None, help="jsonl: a mention's label field"),
    end_inclusive: bool = typer.Option(False, "--end-inclusive", help="token-jsonl: end is the last token"),
    answer_field: Optional[str] = typer.Option(None, help="spans-jsonl: records are read if it is 'accept'"),
    misaligned: Optional[str] = typer.Option(None, help="brat, spans-jsonl: split (default), expand or drop"),
) -> None:
    """Convert a corpus (layered IOB, token JSONL, brat, character-offset JSONL)
    to a DocBin: all mentions in doc.spans[spans_key], a flat view in doc.ents."""
    if input_format not in FORMATS:
        msg.fail(f"Unknown format {input_format!r}", f"Choose one of: {', '.join(FORMATS)}", exits=1)
    if tag_columns is not None and not TAG_COLUMNS.fullmatch(tag_columns):
        expected = "expected comma-separated column numbers, e.g. 2,3"
        msg.fail("Invalid --tag-columns", f"{tag_columns!r}: {expected}", exits=1)
    given: Dict[str, Any] = {
        "pattern": pattern, "token_column": token_column, "n_columns": n_columns,
        "delimiter": DELIMITER_NAMES.get(delimiter, delimiter) if delimiter else None,
        "tag_columns": [int(c) for c in tag_columns.split(",")] if tag_columns else None,
        "scheme": scheme, "comment_prefix": comment_prefix, "docstart": docstart,
        "one_doc_per_sentence": one_doc_per_sentence or None, "sentence_starts": False if no_sentence_starts else None,
        "tokens_field": tokens_field, "mentions_field": mentions_field, "text_field": text_field,
        "spans_field": spans_field, "start_field": start_field, "end_field": end_field,
        "label_field": label_field, "end_inclusive": end_inclusive or None, "answer_field": answer_field,
        "misaligned": misaligned,
    }
    options = {name: value for name, value in given.items() if value is not None}
    read, _, takes_nlp = FORMATS[input_format]
    accepted = inspect.signature(read).parameters
    foreign = [name for name in options if name not in accepted]
    if foreign:
        names = ", ".join("--" + name.replace("_", "-") for name in foreign)
        msg.fail(f"{names}: not an option of --format {input_format}", exits=1)
    nlp = spacy.blank(lang)
    try:
        docs, stats = read(input_path, nlp if takes_nlp else nlp.vocab, spans_key=spans_key, **options)
    except (ValueError, FileNotFoundError) as err:  # FormatError is a ValueError
        typer.echo(f"Error: {err}", err=True)  # unwrapped: the message names file and line
        raise typer.Exit(1)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    DocBin(docs=docs, store_user_data=False).to_disk(output_path)
    msg.good(f"Wrote {len(docs)} docs to {output_path}")
    for line in stats.lines():
        print(line)

"""Convert NCBI-disease BIO tsv (`token<TAB>tag`, IOB2) to a spaCy DocBin.

One Doc per sentence, gold mentions in `doc.ents` and `doc.spans[spans_key]`.
"""
from collections import Counter
from pathlib import Path
from typing import Any, Dict, List, Tuple

import spacy
import typer
from spacy.tokens import Doc, DocBin
from spacy.vocab import Vocab
from wasabi import msg

from bio import FormatError, check_tag, make_gold_doc, tags_to_spans


def convert_ncbi_file(
    path: Path, vocab: Vocab, spans_key: str = "sc"
) -> Tuple[List[Doc], Dict[str, Any]]:
    """Read an NCBI-disease IOB2 tsv file into one gold Doc per sentence.

    An `I-X` after `O` or after another type starts a new entity; these
    repairs are counted. A line that is not `token<TAB>tag` with a known tag
    raises FormatError naming the file and line.

    path (Path): The tsv file. Blank lines separate sentences.
    vocab (Vocab): The vocab for the Docs.
    spans_key (str): The `doc.spans` key that also receives the entities.
    RETURNS (Tuple[List[Doc], Dict[str, Any]]): The Docs, and stats with
        "sentences", "tokens", "entities" (Counter per type) and "repairs".
    """
    docs: List[Doc] = []
    stats: Dict[str, Any] = {"tokens": 0, "entities": Counter(), "repairs": 0}
    words: List[str] = []
    tags: List[str] = []

    def flush() -> None:
        if words:
            spans, repairs = tags_to_spans(tags)
            docs.append(make_gold_doc(vocab, words, spans, spans_key))
            stats["tokens"] += len(words)
            stats["entities"].update(label for _, _, label in spans)
            stats["repairs"] += repairs
            words.clear()
            tags.clear()

    with Path(path).open(encoding="utf8") as file_:
        for line_no, line in enumerate(file_, start=1):
            if not line.strip():
                flush()
                continue
            fields = line.rstrip("\r\n").split("\t")
            if len(fields) != 2 or not fields[0]:
                raise FormatError(path, line_no, f"expected 'token<TAB>tag', got {line!r}")
            words.append(fields[0])
            tags.append(check_tag(path, line_no, fields[1]))
    flush()
    stats["sentences"] = len(docs)
    return docs, stats


def main(
    input_path: Path = typer.Argument(..., help="NCBI-disease tsv", exists=True, dir_okay=False),
    output_path: Path = typer.Argument(..., help="Output .spacy file", dir_okay=False),
    spans_key: str = typer.Option("sc", "--spans-key", help="doc.spans key for the gold spans"),
) -> None:
    """Convert an NCBI-disease BIO tsv file to a spaCy DocBin."""
    try:
        docs, stats = convert_ncbi_file(input_path, spacy.blank("en").vocab, spans_key)
    except FormatError as err:
        typer.echo(f"Error: {err}", err=True)
        raise typer.Exit(1)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    DocBin(docs=docs, store_user_data=False).to_disk(output_path)
    msg.good(f"Wrote {len(docs)} docs to {output_path}")
    print(f"sentences: {stats['sentences']}\ntokens: {stats['tokens']}")
    print(f"entities: {sum(stats['entities'].values())}")
    for label, count in sorted(stats["entities"].items()):
        print(f"  {label}: {count}")
    print(f"I-X tags repaired into entity starts: {stats['repairs']}")


if __name__ == "__main__":
    typer.run(main)

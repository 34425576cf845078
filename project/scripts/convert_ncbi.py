"""Convert NCBI-disease BIO tsv (`token<TAB>tag`, IOB2) to a spaCy DocBin with
the library's IOB reader (spacy_binder.corpora.read_iob).

One Doc per sentence, gold mentions in `doc.ents` and `doc.spans[spans_key]`.
"""
from pathlib import Path
from typing import Any, Dict, List, Tuple

import spacy
import typer
from spacy.tokens import Doc, DocBin
from spacy.vocab import Vocab
from wasabi import msg

from spacy_binder.corpora import FormatError, read_iob


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
    docs, stats = read_iob(
        path, vocab, spans_key=spans_key, token_column=0, tag_columns=[1], n_columns=2,
        delimiter="\t", scheme="iob2", sentence_starts=False,  # the DocBins the results were measured on
    )
    repairs = sum(stats.repaired.values())
    return docs, {"sentences": stats.sentences, "tokens": stats.tokens, "entities": stats.mentions, "repairs": repairs}


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

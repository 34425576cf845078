"""Convert CoNLL-2003 (`token POS chunk NER`, IOB1 NER tags) to a spaCy DocBin
with the library's IOB reader (spacy_binder.corpora.read_iob).

One Doc per article (sentence boundaries set) or, with --sentences, one Doc
per sentence; gold entities in `doc.ents` and `doc.spans[spans_key]`.
"""
from pathlib import Path
from typing import Any, Dict, List, Tuple

import spacy
import typer
from spacy.tokens import Doc, DocBin
from spacy.vocab import Vocab
from wasabi import msg

from spacy_binder.corpora import FormatError, read_iob


def convert_conll_file(
    path: Path, vocab: Vocab, *, spans_key: str = "sc", one_doc_per_sentence: bool = False
) -> Tuple[List[Doc], Dict[str, Any]]:
    """Read a CoNLL-2003 file into gold Docs.

    Every `-DOCSTART-` line separates articles, wherever it appears; empty
    articles are skipped. A line without exactly 4 columns or with an
    unknown NER tag raises FormatError naming the file and line.

    path (Path): The CoNLL file. Blank lines separate sentences.
    vocab (Vocab): The vocab for the Docs.
    spans_key (str): The `doc.spans` key that also receives the entities.
    one_doc_per_sentence (bool): One Doc per sentence instead of per article.
    RETURNS (Tuple[List[Doc], Dict[str, Any]]): The Docs, and stats with
        "docs" (articles), "sentences", "tokens", "entities" (Counter per type).
    """
    docs, stats = read_iob(
        path, vocab, spans_key=spans_key, token_column=0, tag_columns=[3], n_columns=4,
        scheme="iob1", one_doc_per_sentence=one_doc_per_sentence,
    )
    return docs, {"docs": stats.documents, "sentences": stats.sentences, "tokens": stats.tokens,
                  "entities": stats.mentions}


def main(
    input_path: Path = typer.Argument(..., help="CoNLL-2003 file", exists=True, dir_okay=False),
    output_path: Path = typer.Argument(..., help="Output .spacy file", dir_okay=False),
    sentences: bool = typer.Option(False, "--sentences", help="One Doc per sentence"),
    spans_key: str = typer.Option("sc", "--spans-key", help="doc.spans key for the gold spans"),
) -> None:
    """Convert a CoNLL-2003 NER file to a spaCy DocBin."""
    vocab = spacy.blank("en").vocab
    try:
        docs, stats = convert_conll_file(
            input_path, vocab, spans_key=spans_key, one_doc_per_sentence=sentences
        )
    except FormatError as err:
        typer.echo(f"Error: {err}", err=True)
        raise typer.Exit(1)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    DocBin(docs=docs, store_user_data=False).to_disk(output_path)
    msg.good(f"Wrote {len(docs)} docs to {output_path}")
    for key in ("docs", "sentences", "tokens"):
        print(f"{key}: {stats[key]}")
    print(f"entities: {sum(stats['entities'].values())}")
    for label, count in sorted(stats["entities"].items()):
        print(f"  {label}: {count}")


if __name__ == "__main__":
    typer.run(main)

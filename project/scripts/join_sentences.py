"""Join consecutive sentence docs of a DocBin into documents of N sentences,
keeping the gold (doc.ents and every doc.spans group) and the sentence
boundaries, so that a model can be trained with document context."""
from pathlib import Path

import spacy
import typer
from spacy.tokens import Doc, DocBin
from wasabi import msg


def main(
    input_path: Path = typer.Argument(..., exists=True, dir_okay=False),
    output_path: Path = typer.Argument(..., dir_okay=False),
    sentences_per_doc: int = typer.Option(10, "--sentences-per-doc", min=1),
    lang: str = typer.Option("en", "--lang"),
) -> None:
    nlp = spacy.blank(lang)
    docs = list(DocBin().from_disk(input_path).get_docs(nlp.vocab))
    for doc in docs:
        for token in doc:
            token.is_sent_start = token.i == 0
    joined = [Doc.from_docs(docs[i : i + sentences_per_doc]) for i in range(0, len(docs), sentences_per_doc)]
    output_path.parent.mkdir(parents=True, exist_ok=True)
    DocBin(docs=joined, store_user_data=True).to_disk(output_path)
    msg.good(f"{len(docs)} sentences -> {len(joined)} docs of up to {sentences_per_doc} in {output_path}")


if __name__ == "__main__":
    typer.run(main)

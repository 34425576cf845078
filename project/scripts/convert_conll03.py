"""Convert CoNLL-2003 (`token POS chunk NER`, IOB1 NER tags) to a spaCy DocBin.

One Doc per article (sentence boundaries set) or, with --sentences, one Doc
per sentence; gold entities in `doc.ents` and `doc.spans[spans_key]`.
"""
from collections import Counter
from pathlib import Path
from typing import Any, Dict, List, Tuple

import spacy
import typer
from spacy.tokens import Doc, DocBin
from spacy.vocab import Vocab
from wasabi import msg

from bio import FormatError, SpanTuple, check_tag, make_gold_doc, tags_to_spans

DOCSTART = "-DOCSTART-"


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
    docs: List[Doc] = []
    stats: Dict[str, Any] = {"docs": 0, "sentences": 0, "tokens": 0, "entities": Counter()}
    article: List[Tuple[List[str], List[SpanTuple]]] = []
    words: List[str] = []
    tags: List[str] = []

    def end_sentence() -> None:
        if words:
            spans = tags_to_spans(tags)[0]
            article.append((list(words), spans))
            stats["sentences"] += 1
            stats["tokens"] += len(words)
            stats["entities"].update(label for _, _, label in spans)
            words.clear()
            tags.clear()

    def end_article() -> None:
        end_sentence()
        if not article:
            return
        stats["docs"] += 1
        groups = [[sent] for sent in article] if one_doc_per_sentence else [article]
        for group in groups:
            all_words: List[str] = []
            all_spans: List[SpanTuple] = []
            starts: List[bool] = []
            for sent_words, spans in group:
                offset = len(all_words)
                all_spans.extend((s + offset, e + offset, label) for s, e, label in spans)
                starts.extend([True] + [False] * (len(sent_words) - 1))
                all_words.extend(sent_words)
            docs.append(make_gold_doc(vocab, all_words, all_spans, spans_key, starts))
        article.clear()

    with Path(path).open(encoding="utf8") as file_:
        for line_no, line in enumerate(file_, start=1):
            fields = line.split()
            if not fields:
                end_sentence()
            elif fields[0] == DOCSTART:
                end_article()
            elif len(fields) != 4:
                raise FormatError(path, line_no, f"expected 4 columns 'token POS chunk NER', got {line!r}")
            else:
                words.append(fields[0])
                tags.append(check_tag(path, line_no, fields[3]))
    end_article()
    return docs, stats


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

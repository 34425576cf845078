"""Token-level JSON lines with nested mentions, as nested-NER repositories
ship them: `{"tokens": [...], "entity_mentions": [{"start": 0, "end": 2,
"type": "PER"}]}`, one record per line, `end` exclusive (or inclusive, by
option). The field names are options (`entities`, `label`, `entity_type`...);
a mention may also be a list `[start, end, label]`.
"""
from pathlib import Path
from typing import List, Tuple, Union

from spacy.tokens import Doc
from spacy.vocab import Vocab

from .core import FormatError, ReadStats, SpanTuple, corpus_files, doc_from_words, set_gold
from .jsonl import check_offsets, get_field, get_mention, read_records


def read_token_jsonl(
    path: Union[str, Path],
    vocab: Vocab,
    *,
    spans_key: str = "sc",
    tokens_field: str = "tokens",
    mentions_field: str = "entity_mentions",
    start_field: str = "start",
    end_field: str = "end",
    label_field: str = "type",
    end_inclusive: bool = False,
    sentence_starts: bool = True,
    pattern: str = "*.jsonl",
) -> Tuple[List[Doc], ReadStats]:
    """Read token-level JSONL files into one gold Doc per record.

    path (Union[str, Path]): A file, or a folder of files matching `pattern`.
    vocab (Vocab): The vocab for the Docs.
    spans_key (str): The `doc.spans` key for all mentions.
    tokens_field (str): The record's list of token strings.
    mentions_field (str): The record's list of mention objects.
    start_field (str): A mention's first token.
    end_field (str): A mention's end token: the one after its last, or with
        `end_inclusive` its last.
    label_field (str): A mention's label.
    end_inclusive (bool): Whether `end_field` is the mention's last token.
    sentence_starts (bool): Set each Doc's sentence starts: a record is one sentence.
    pattern (str): File names to read in a folder.
    RETURNS (Tuple[List[Doc], ReadStats]): The Docs and the counts. Records
        without tokens are skipped ("empty_record"). Raises FormatError for a
        line that is not such a record (a field missing or of the wrong type,
        an empty token, offsets outside the tokens).
    """
    stats = ReadStats()
    docs: List[Doc] = []
    for file_path in corpus_files(path, pattern):
        stats.files += 1
        for line_no, record in read_records(file_path):
            words = get_field(record, tokens_field, list, file_path, line_no)
            mentions = get_field(record, mentions_field, list, file_path, line_no)
            if any(not isinstance(word, str) or not word.strip() for word in words):
                raise FormatError(file_path, line_no, f"{tokens_field!r} must be non-blank strings")
            if not words:
                stats.skipped["empty_record"] += 1
                if mentions:
                    raise FormatError(file_path, line_no, f"a record without tokens has {mentions_field!r}")
                continue
            spans: List[SpanTuple] = []
            for mention in mentions:
                start, end, label = get_mention(mention, (start_field, end_field, label_field), file_path, line_no)
                check_offsets(start, end, len(words), file_path, line_no, "tokens", end_inclusive)
                spans.append((start, end + end_inclusive, label))
            starts = [True] + [False] * (len(words) - 1) if sentence_starts else None
            docs.append(set_gold(doc_from_words(vocab, words, starts), spans, spans_key, stats))
            stats.documents += 1
            stats.sentences += bool(sentence_starts)
    return docs, stats

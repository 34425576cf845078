"""Character-offset JSON lines, as Prodigy and spaCy write them:
`{"text": "...", "spans": [{"start": 0, "end": 5, "label": "PER"}]}`, one
record per line, `end` exclusive. A span may also be a list
`[start, end, label]` (spaCy's old training format, e.g. under "entities").
Records whose `answer` is not "accept" are skipped and counted per answer.
The text is tokenized with `nlp.make_doc`; whitespace at a mention's edges
and boundaries inside tokens are handled as in `core.doc_from_char_spans`.
"""
from pathlib import Path
from typing import List, Tuple, Union

from spacy.language import Language
from spacy.tokens import Doc

from .core import ReadStats, SpanTuple, corpus_files, doc_from_char_spans
from .jsonl import check_offsets, get_field, get_mention, read_records


def read_spans_jsonl(
    path: Union[str, Path],
    nlp: Language,
    *,
    spans_key: str = "sc",
    text_field: str = "text",
    spans_field: str = "spans",
    start_field: str = "start",
    end_field: str = "end",
    label_field: str = "label",
    answer_field: str = "answer",
    misaligned: str = "split",
    pattern: str = "*.jsonl",
) -> Tuple[List[Doc], ReadStats]:
    """Read character-offset JSONL files into one gold Doc per record.

    path (Union[str, Path]): A file, or a folder of files matching `pattern`.
    nlp (Language): Supplies the tokenizer and vocab.
    spans_key (str): The `doc.spans` key for all mentions.
    text_field (str): The record's text.
    spans_field (str): The record's list of mentions.
    start_field (str): A mention's first character.
    end_field (str): The character after a mention's last.
    label_field (str): A mention's label.
    answer_field (str): Records with this field are read only if it is "accept".
    misaligned (str): A mention boundary inside a token: "split" the token,
        "expand" the mention to whole tokens, or "drop" it.
    pattern (str): File names to read in a folder.
    RETURNS (Tuple[List[Doc], ReadStats]): The Docs and the counts. Records
        with a blank text and no mentions are skipped ("empty_record").
        Raises FormatError for a line that is not such a record (a field
        missing or of the wrong type, offsets outside the text).
    """
    stats = ReadStats()
    docs: List[Doc] = []
    for file_path in corpus_files(path, pattern):
        stats.files += 1
        for line_no, record in read_records(file_path):
            answer = record.get(answer_field, "accept")
            if answer != "accept":
                stats.skipped[f"answer_{answer}"] += 1
                continue
            text = get_field(record, text_field, str, file_path, line_no)
            spans: List[SpanTuple] = []
            for mention in get_field(record, spans_field, list, file_path, line_no):
                start, end, label = get_mention(mention, (start_field, end_field, label_field), file_path, line_no)
                check_offsets(start, end, len(text), file_path, line_no, "characters")
                spans.append((start, end, label))
            if not text.strip() and not spans:
                stats.skipped["empty_record"] += 1
                continue
            docs.append(doc_from_char_spans(nlp, text, spans, spans_key, stats, misaligned))
            stats.documents += 1
    return docs, stats

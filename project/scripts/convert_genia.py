"""Convert the GENIA term corpus 3.02 (GPML XML inside GENIAcorpus3.02.tgz) to
spaCy DocBins with nested mentions, split by the CNN_Nested_NER document lists.

One Doc per `<sentence>`. All mentions go to `doc.spans[spans_key]`; `doc.ents`
gets a flat view (the outermost mentions).
"""
import re
import tarfile
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path
from typing import Any, Dict, List, Optional, Set, Tuple

import spacy
import typer
from spacy.language import Language
from spacy.tokens import Doc, DocBin, Span
from wasabi import msg

from spacy_binder.corpora.core import split_tokens

SPLITS = ("train", "dev", "test")
SEM_RE = re.compile(r"G#(DNA|RNA|protein)_\S+|G#(cell_line|cell_type)")
DROP_REASONS = ("other_type", "compound", "fragment", "misaligned", "duplicate")
Mention = Tuple[int, int, Optional[str]]


def collapse_sem(sem: str) -> Optional[str]:
    """Map a simple `sem` term ("G#protein_molecule") to DNA, RNA, protein,
    cell_line or cell_type (the standard 5-type collapse), else None."""
    match = SEM_RE.fullmatch(sem)
    return (match.group(1) or match.group(2)) if match else None


def is_compound_5type(sem: str) -> bool:
    """Whether `sem` is a coordinated compound ("(AND G#x (OR G#y G#z))")
    whose terms all collapse to the 5 types."""
    terms = re.findall(r"G#[^\s()]+", sem)
    return sem.startswith("(") and bool(terms) and all(map(collapse_sem, terms))


def _walk(el: ET.Element, chunks: List[str], found: List[Mention], offset: int) -> int:
    """Append the text under `el` to `chunks` and each `cons` below it to
    `found` as (start_char, end_char, sem), in pre-order (container first).
    RETURNS (int): The character offset after `el`'s text."""
    chunks.append(el.text or "")
    offset += len(el.text or "")
    for child in el:
        index, start = len(found), offset
        offset = _walk(child, chunks, found, offset)
        if child.tag == "cons":
            found.insert(index, (start, offset, child.get("sem")))
        chunks.append(child.tail or "")
        offset += len(child.tail or "")
    return offset


def _tokenize(nlp: Language, text: str, cuts: Set[int]) -> Tuple[Doc, int]:
    """Tokenize `text` with nlp's tokenizer, then split tokens at every offset
    in `cuts`, so that all mention boundaries are token boundaries.
    RETURNS (Tuple[Doc, int]): The Doc and the number of extra splits."""
    doc = nlp.make_doc(text)
    split = split_tokens(doc, cuts)
    return split, len(split) - len(doc)


def sentence_to_doc(el: ET.Element, nlp: Language, spans_key: str, stats: Dict[str, Any]) -> Doc:
    """Convert one GPML `<sentence>` into a gold Doc, updating `stats`.

    el (ET.Element): The sentence, with inline (nested) `cons` mentions.
    nlp (Language): Supplies the tokenizer and vocab.
    spans_key (str): The `doc.spans` key that receives all mentions.
    stats (Dict[str, Any]): Updated in place (see `convert_genia`).
    RETURNS (Doc): All mentions in doc.spans[spans_key], outermost in doc.ents.
    """
    chunks: List[str] = []
    found: List[Mention] = []
    _walk(el, chunks, found, 0)
    stats["cons"] += len(found)
    typed: List[Tuple[int, int, str]] = []
    for start, end, sem in found:
        label = collapse_sem(sem) if sem else None
        if label:
            typed.append((start, end, label))
        elif sem is None:  # a part of a coordinated compound, e.g. "alpha-"
            stats["dropped"]["fragment"] += 1
        else:
            stats["dropped"]["compound" if is_compound_5type(sem) else "other_type"] += 1
    # in pre-order, an earlier cons that covers a later one is its XML ancestor
    for i, (start, end, _) in enumerate(typed):
        stats["nested_xml"] += any(a <= start and end <= b for a, b, _ in typed[:i])
    doc, cuts = _tokenize(nlp, "".join(chunks), {o for m in typed for o in m[:2]})
    stats["token_cuts"] += cuts
    spans: List[Span] = []
    for start, end, label in typed:
        span = doc.char_span(start, end, label=label, alignment_mode="strict")
        if span is None:
            stats["dropped"]["misaligned"] += 1
        elif span in spans:  # Span equality: same doc, tokens and label
            stats["dropped"]["duplicate"] += 1
        else:
            spans.append(span)
    ents: List[Span] = []  # longest first; equal extents keep the outer cons
    for span in sorted(spans, key=lambda s: (s.start - s.end, s.start)):
        if all(span.end <= e.start or span.start >= e.end for e in ents):
            ents.append(span)
        elif not any(e.start <= span.start and span.end <= e.end for e in ents):
            stats["ents_overlap"] += 1  # crosses a longer outermost mention
    doc.ents = sorted(ents, key=lambda s: s.start)
    doc.spans[spans_key] = sorted(spans, key=lambda s: (s.start, -s.end))
    inside = [any(o is not s and o.start <= s.start and s.end <= o.end for o in spans) for s in spans]
    stats["nested"] += sum(inside)
    stats["tokens"] += len(doc)
    stats["entities"].update(s.label_ for s in spans)
    return doc


def convert_genia(
    tgz_path: Path, splits_dir: Path, nlp: Language, spans_key: str = "sc"
) -> Dict[str, Tuple[List[Doc], Dict[str, Any]]]:
    """Convert GENIAcorpus3.02.tgz (read in place) to one Doc per sentence.

    Articles go to the split whose `{train,dev,test}.txt` lists their MEDLINE
    ID (both copies of the twice-included MEDLINE:97218353 go to train).
    Mentions of the 5 types are kept; the other `cons` are counted in
    stats["dropped"] by reason: other_type, compound (coordinated 5-type sem
    such as "(AND G#x G#y)"), fragment (`cons` without sem: parts of a
    compound), misaligned, duplicate (same tokens and label as a kept one).

    tgz_path (Path): The GENIA 3.02 tarball.
    splits_dir (Path): The folder with the train/dev/test ID lists.
    nlp (Language): Supplies the tokenizer and vocab.
    spans_key (str): The `doc.spans` key for all mentions.
    RETURNS (Dict[str, Tuple[List[Doc], Dict[str, Any]]]): Per split, the Docs
        and stats: articles, sentences, tokens, cons, entities (Counter per
        type), dropped (Counter per reason), nested (kept mentions inside
        another kept one), nested_xml (5-type cons inside a 5-type cons, before
        dedup), token_cuts (extra token splits at mention boundaries) and
        ents_overlap (outermost mentions left out of doc.ents).
    """
    id2split: Dict[str, str] = {}
    for split in SPLITS:
        for doc_id in (Path(splits_dir) / f"{split}.txt").read_text(encoding="utf8").split():
            if id2split.setdefault(doc_id, split) != split:
                raise ValueError(f"{doc_id} is listed in {id2split[doc_id]} and {split}")
    with tarfile.open(tgz_path, "r:gz") as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith("GENIAcorpus3.02.xml"))
        root = ET.parse(tar.extractfile(member)).getroot()  # type: ignore[arg-type]
    counts = ("articles", "sentences", "tokens", "cons", "nested", "nested_xml", "token_cuts", "ents_overlap")
    result: Dict[str, Tuple[List[Doc], Dict[str, Any]]] = {
        split: ([], {**dict.fromkeys(counts, 0), "entities": Counter(),
                     "dropped": Counter(dict.fromkeys(DROP_REASONS, 0))})  # fmt: skip
        for split in SPLITS
    }
    for article in root.iter("article"):
        doc_id = (article.findtext("articleinfo/bibliomisc") or "").strip()
        if doc_id not in id2split:
            raise ValueError(f"article {doc_id!r} is in no split list")
        docs, stats = result[id2split[doc_id]]
        stats["articles"] += 1
        for sentence in article.iter("sentence"):
            doc = sentence_to_doc(sentence, nlp, spans_key, stats)
            doc.user_data["doc_id"] = doc_id  # the article, for document-level scores
            docs.append(doc)
            stats["sentences"] += 1
    return result


def main(
    data_dir: Path = typer.Argument(..., help="The genia/ data folder", exists=True, file_okay=False),
    output_dir: Path = typer.Argument(..., help="Folder for {train,dev,test}.spacy", file_okay=False),
    spans_key: str = typer.Option("sc", "--spans-key", help="doc.spans key for the gold spans"),
) -> None:
    """Convert GENIA 3.02 (nested, 5 types) to train/dev/test .spacy files."""
    nlp = spacy.blank("en")
    result = convert_genia(data_dir / "GENIAcorpus3.02.tgz", data_dir / "splits", nlp, spans_key)
    output_dir.mkdir(parents=True, exist_ok=True)
    for split, (docs, stats) in result.items():
        DocBin(docs=docs, store_user_data=True).to_disk(output_dir / f"{split}.spacy")
        msg.divider(f"{split}: {len(docs)} docs -> {output_dir / f'{split}.spacy'}")
        print(f"articles: {stats['articles']}  sentences: {stats['sentences']}  tokens: {stats['tokens']}")
        print(f"entities: {sum(stats['entities'].values())}  nested: {stats['nested']}")
        print("  " + "  ".join(f"{label}: {n}" for label, n in sorted(stats["entities"].items())))
        print(f"cons elements: {stats['cons']}  dropped: {sum(stats['dropped'].values())}")
        print("  " + "  ".join(f"{reason}: {n}" for reason, n in stats["dropped"].items()))
        print(f"5-type cons inside a 5-type cons (XML, before dedup): {stats['nested_xml']}")
        print(f"extra token splits at mention boundaries: {stats['token_cuts']}")
        print(f"outermost mentions left out of doc.ents (crossing): {stats['ents_overlap']}")


if __name__ == "__main__":
    typer.run(main)

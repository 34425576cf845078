"""The synthetic nested NER corpus: gold structure, splits, stats and CLI."""
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest
import spacy
from spacy.tokens import Doc, DocBin, Span
from spacy.vocab import Vocab

from spacy_binder.toy_corpus import LABELS, corpus_stats, make_toy_docs

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def nlp():
    return spacy.blank("en")


@pytest.fixture(scope="module")
def splits(nlp):
    return {
        split: make_toy_docs(nlp, n, seed=0, split=split)
        for split, n in (("train", 300), ("dev", 100), ("test", 100))
    }


def signature(doc: Doc, key: str = "sc"):
    return (
        [t.text for t in doc],
        [t.whitespace_ for t in doc],
        [t.is_sent_start for t in doc],
        [(s.start, s.end, s.label_) for s in doc.spans[key]],
        [(e.start, e.end, e.label_) for e in doc.ents],
    )


def contains(outer: Span, inner: Span) -> bool:
    return (
        outer.start <= inner.start
        and inner.end <= outer.end
        and (outer.start, outer.end) != (inner.start, inner.end)
    )


def test_deterministic_for_a_seed(nlp):
    first = [signature(d) for d in make_toy_docs(nlp, 20, seed=3, split="train")]
    again = [signature(d) for d in make_toy_docs(nlp, 20, seed=3, split="train")]
    other = [signature(d) for d in make_toy_docs(nlp, 20, seed=4, split="train")]
    assert first == again
    assert first != other
    # A Vocab works as well as a Language, with the same result.
    from_vocab = [signature(d) for d in make_toy_docs(Vocab(), 20, seed=3, split="train")]
    assert from_vocab == first


def test_vocab_and_spans_key(nlp):
    docs = make_toy_docs(nlp, 5, seed=0, split="dev", spans_key="gold")
    assert all(doc.vocab is nlp.vocab for doc in docs)
    assert all("gold" in doc.spans and "sc" not in doc.spans for doc in docs)
    assert len(docs) == 5
    assert make_toy_docs(nlp, 0, seed=0) == []


def test_unknown_split_is_refused(nlp):
    with pytest.raises(ValueError):
        make_toy_docs(nlp, 1, seed=0, split="validation")


CUE_WORDS = {
    "January", "February", "March", "April", "May", "June", "July", "August", "September",
    "October", "November", "December", "University", "Bank", "City", "Council", "Institute",
    "Technology", "Foundation", "Center", "Studies", "International", "Airport", "Memorial",
    "Park", "Tower", "Group", "Corp", "Holdings", "Partners",
}


def test_eval_entity_strings_never_seen_in_train(splits):
    def strings(docs):
        return {span.text for doc in docs for span in doc.spans["sc"]}

    def names(docs):
        tokens = {t.text for doc in docs for span in doc.spans["sc"] for t in span}
        return {t for t in tokens if t.istitle() and t.isalpha() and t not in CUE_WORDS}

    train = strings(splits["train"])
    for split in ("dev", "test"):
        assert strings(splits[split]), split
        assert not train & strings(splits[split]), split
        # Names are split-specific; only cue and context words are shared.
        assert len(names(splits[split])) > 50
        assert not names(splits["train"]) & names(splits[split]), split
    assert not strings(splits["dev"]) & strings(splits["test"])
    assert not names(splits["dev"]) & names(splits["test"])


def test_string_dictionary_from_train_recalls_nothing_on_dev(splits):
    dictionary = {span.text: span.label_ for d in splits["train"] for span in d.spans["sc"]}
    dev = [(span.text, span.label_) for d in splits["dev"] for span in d.spans["sc"]]
    assert dev
    assert sum(dictionary.get(text) == label for text, label in dev) == 0


def test_type_depends_on_context(splits):
    labels_of_name = defaultdict(set)
    for doc in splits["train"]:
        for span in doc.spans["sc"]:
            if len(span) == 1 and span.label_ in ("PER", "LOC"):
                labels_of_name[span.text].add(span.label_)
    ambiguous = [name for name, labels in labels_of_name.items() if labels == {"PER", "LOC"}]
    assert len(ambiguous) >= 10


def test_nested_mentions_of_different_types(splits):
    for split, docs in splits.items():
        stats = corpus_stats(docs)
        assert set(stats["per_type"]) == set(LABELS)
        assert all(stats["per_type"][label]["mentions"] > 0 for label in LABELS)
        assert 1 / 3 - 0.05 <= stats["nested_fraction"] <= 0.5, (split, stats)
        assert stats["nested_cross_type"] > 0.5 * stats["nested"]
        assert stats["outermost_fraction"] == pytest.approx(1 - stats["nested_fraction"])
        assert stats["outermost_fraction"] <= stats["flat_recall_bound"] < 0.8
    cross = [
        (outer.label_, inner.label_)
        for doc in splits["train"]
        for inner in doc.spans["sc"]
        for outer in doc.spans["sc"]
        if contains(outer, inner) and outer.label_ != inner.label_
    ]
    assert {("ORG", "LOC"), ("ORG", "PER"), ("LOC", "PER")} <= set(cross)


def test_spans_are_aligned_sorted_and_in_sentences(splits):
    for docs in splits.values():
        for doc in docs:
            spans = list(doc.spans["sc"])
            assert spans
            assert [(s.start, s.end) for s in spans] == sorted((s.start, s.end) for s in spans)
            assert len({(s.start, s.end) for s in spans}) == len(spans)
            for span in spans:
                assert 0 <= span.start < span.end <= len(doc)
                assert span.label_ in LABELS
                assert span.text == span.text.strip()
                same = doc.char_span(span.start_char, span.end_char)
                assert same is not None and (same.start, same.end) == (span.start, span.end)
                assert span.sent == doc[span.start].sent == doc[span.end - 1].sent


def test_ents_are_the_outermost_spans(splits):
    for docs in splits.values():
        for doc in docs:
            spans = list(doc.spans["sc"])
            outermost = [s for s in spans if not any(contains(o, s) for o in spans)]
            ents = list(doc.ents)
            assert [(e.start, e.end, e.label_) for e in ents] == [
                (s.start, s.end, s.label_) for s in outermost
            ]
            for a, b in zip(ents, ents[1:]):
                assert a.end <= b.start
            # The two views differ exactly by the nested mentions.
            assert len(spans) - len(ents) == corpus_stats([doc])["nested"]


def test_sentence_boundaries(splits):
    for docs in splits.values():
        for doc in docs:
            assert doc.has_annotation("SENT_START")
            sents = list(doc.sents)
            assert 1 <= len(sents) <= 3
            for sent in sents:
                assert 10 <= len(sent) <= 30
                assert sent[-1].text == "."
                assert sent[0].is_sent_start
            assert doc.text == doc.text.strip()


def test_corpus_stats_on_a_hand_made_doc():
    words = "the University of Oslo at Bergen hired Anna Berg".split()
    doc = Doc(Vocab(), words=words)
    doc.spans["sc"] = [
        Span(doc, 1, 6, "ORG"), Span(doc, 3, 4, "LOC"), Span(doc, 5, 6, "LOC"),
        Span(doc, 7, 9, "PER"), Span(doc, 8, 9, "PER"),
    ]
    stats = corpus_stats([doc, Doc(Vocab(), words=["nothing"])])
    assert stats["docs"] == 2
    assert stats["mentions"] == 5
    assert stats["nested"] == 3
    assert stats["nested_cross_type"] == 2
    assert stats["outermost"] == 2
    assert stats["outermost_fraction"] == pytest.approx(2 / 5)
    # Flat output at best: Oslo, Bergen and one of the PER spans.
    assert stats["flat_recall_bound"] == pytest.approx(3 / 5)
    assert stats["per_type"]["LOC"] == {"mentions": 2, "nested": 2}
    assert stats["per_type"]["DATE"] == {"mentions": 0, "nested": 0}


def test_docbin_round_trip_keeps_spans_and_ents(nlp, splits):
    docs = splits["dev"][:20]
    data = DocBin(docs=docs, store_user_data=False).to_bytes()
    restored = list(DocBin().from_bytes(data).get_docs(nlp.vocab))
    assert [signature(d) for d in restored] == [signature(d) for d in docs]
    assert [d.text for d in restored] == [d.text for d in docs]


def test_cli_writes_three_corpora(tmp_path, nlp):
    out = tmp_path / "toy"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    args = [str(out), "--n-train", "7", "--n-dev", "4", "--n-test", "3", "--seed", "5",
            "--spans-key", "gold"]
    result = subprocess.run(
        [sys.executable, "-m", "spacy_binder.toy_corpus", *args],
        capture_output=True, text=True, env=env, cwd=str(REPO_ROOT), check=True,
    )
    for split, n in (("train", 7), ("dev", 4), ("test", 3)):
        path = out / f"{split}.spacy"
        assert path.exists()
        docs = list(DocBin().from_disk(path).get_docs(nlp.vocab))
        assert len(docs) == n
        expected = make_toy_docs(nlp, n, seed=5, split=split, spans_key="gold")
        assert [signature(d, "gold") for d in docs] == [signature(d, "gold") for d in expected]
        assert f"{split}: {n} docs" in result.stdout
    for label in LABELS:
        assert label in result.stdout

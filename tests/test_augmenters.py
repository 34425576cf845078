"""spacy-binder.with_sentences.v1: whole training docs plus their sentences alone."""
from pathlib import Path

import pytest
import spacy
from spacy import Config
from spacy.tokens import Doc, DocBin, Span
from spacy.training import Corpus, Example
from spacy.util import registry

WORDS = ["Smith", "visited", "New", "York", ".", "He", "met", "Acme", "Corp", "there", "."]
SENT_STARTS = [True] + [False] * 4 + [True] + [False] * 5


def make_augmenter(level=1.0):
    return registry.augmenters.get("spacy-binder.with_sentences.v1")(level=level)


def reference_doc(nlp, spans=((0, 1, "PER"), (2, 4, "LOC"), (7, 9, "ORG"), (2, 3, "LOC"))):
    doc = Doc(nlp.vocab, words=WORDS, sent_starts=SENT_STARTS)
    doc.ents = [Span(doc, 0, 1, "PER"), Span(doc, 2, 4, "LOC"), Span(doc, 7, 9, "ORG")]
    doc.spans["sc"] = [Span(doc, start, end, label) for start, end, label in spans]
    return doc


def as_tuples(spans):
    return sorted((span.text, span.label_) for span in spans)


def test_yields_the_doc_then_each_sentence_with_its_own_gold():
    nlp = spacy.blank("en")
    reference = reference_doc(nlp)
    example = Example(nlp.make_doc(reference.text), reference)
    augmenter = make_augmenter()
    examples = list(augmenter(nlp, example))
    assert examples[0] is example
    first, second = examples[1:]
    assert first.reference.text.strip() == "Smith visited New York ."
    assert second.reference.text.strip() == "He met Acme Corp there ."
    assert as_tuples(first.reference.ents) == [("New York", "LOC"), ("Smith", "PER")]
    assert as_tuples(second.reference.ents) == [("Acme Corp", "ORG")]
    # the nested "New" inside "New York" moves with its sentence
    assert as_tuples(first.reference.spans["sc"]) == [("New", "LOC"), ("New York", "LOC"), ("Smith", "PER")]
    assert as_tuples(second.reference.spans["sc"]) == [("Acme Corp", "ORG")]
    for sentence_example in (first, second):
        assert sentence_example.predicted.text == sentence_example.reference.text
        assert not sentence_example.predicted.ents  # nothing leaks into what the model reads
    assert (augmenter.sentences_given, augmenter.sentences_skipped) == (2, 0)


def test_keeps_the_readers_tokenization():
    nlp = spacy.blank("en")
    reference = reference_doc(nlp)
    # a predicted doc tokenized differently from the reference ("Acme Corp" one token)
    predicted = Doc(nlp.vocab, words=WORDS[:7] + ["Acme Corp"] + WORDS[9:])
    example = Example(predicted, reference)
    second = list(make_augmenter()(nlp, example))[2]
    assert [token.text for token in second.predicted] == ["He", "met", "Acme Corp", "there", "."]
    assert [span.text for span in second.get_aligned_spans_y2x(second.reference.ents)] == ["Acme Corp"]


def test_a_sentence_cut_through_a_gold_span_is_left_out_and_counted():
    nlp = spacy.blank("en")
    reference = reference_doc(nlp, spans=((0, 1, "PER"), (3, 7, "MISC")))  # "York . He met" crosses
    example = Example(nlp.make_doc(reference.text), reference)
    augmenter = make_augmenter()
    with pytest.warns(UserWarning, match="crosses a sentence boundary.*debug-data"):
        examples = list(augmenter(nlp, example))
    assert examples == [example]
    assert (augmenter.sentences_given, augmenter.sentences_skipped) == (0, 2)


def test_docs_without_sentence_boundaries_are_given_whole_with_a_warning():
    nlp = spacy.blank("en")
    reference = Doc(nlp.vocab, words=WORDS)
    example = Example(nlp.make_doc(reference.text), reference)
    augmenter = make_augmenter()
    with pytest.warns(UserWarning, match="no sentence boundaries"):
        assert list(augmenter(nlp, example)) == [example]
    assert augmenter.docs_without_sentences == 1


def test_level_is_the_share_of_docs_split():
    nlp = spacy.blank("en")
    reference = reference_doc(nlp)
    example = Example(nlp.make_doc(reference.text), reference)
    assert list(make_augmenter(0.0)(nlp, example)) == [example]
    with pytest.raises(ValueError, match="between 0 and 1"):
        make_augmenter(1.5)


def test_corpus_reader_gives_docs_and_sentences(tmp_path):
    nlp = spacy.blank("en")
    single = Doc(nlp.vocab, words=["Only", "one", "."], sent_starts=[True, False, False])
    DocBin(docs=[reference_doc(nlp), single], store_user_data=True).to_disk(tmp_path / "train.spacy")
    corpus = Corpus(tmp_path / "train.spacy", augmenter=make_augmenter())
    texts = [example.reference.text.strip() for example in corpus(nlp)]
    assert texts == [
        " ".join(WORDS),
        "Smith visited New York .",
        "He met Acme Corp there .",
        "Only one .",
    ]


def test_a_predicted_doc_with_other_whitespace_is_tokenized_again():
    nlp = spacy.blank("en")
    reference = reference_doc(nlp)
    # spaCy aligns docs whose texts differ in whitespace only; char offsets then differ
    example = Example(nlp.make_doc("Smith   visited New York . He met Acme Corp there . "), reference)
    first, second = list(make_augmenter()(nlp, example))[1:]
    for sentence_example in (first, second):
        assert sentence_example.predicted.text == sentence_example.reference.text
    assert [span.text for span in second.get_aligned_spans_y2x(second.reference.ents)] == ["Acme Corp"]


def test_the_conll03_config_trains_on_articles_and_their_lines(tmp_path):
    """configs/binder_conll03.cfg's training reader gives each article and
    then its lines; its dev reader gives the articles only."""
    nlp = spacy.blank("en")
    DocBin(docs=[reference_doc(nlp)]).to_disk(tmp_path / "articles.spacy")
    path = Path(__file__).parent.parent / "configs" / "binder_conll03.cfg"
    paths = {"paths.train": str(tmp_path / "articles.spacy"), "paths.dev": str(tmp_path / "articles.spacy")}
    config = Config().from_disk(path, overrides=paths)
    corpora = registry.resolve(config["corpora"])
    assert len(list(corpora["train"](nlp))) == 3
    assert len(list(corpora["dev"](nlp))) == 1

"""Documents, not sentences: a doc gets the entities its sentences get one
by one, with or without a sentence splitter, whatever its length.

The pipeline has the shape of the shipped configs: a transformer reading
binder_ner's segments (`spacy-binder.segment_spans.v1`), so that it sees
each sentence alone, as in training on sentence-per-Doc corpora, and running
them in length buckets (`LengthBucketedTransformer.v1`; small ones here, so
that a document is many buckets).
"""
import json
import subprocess

import numpy
import pytest
import spacy
from spacy.tokens import Span

from util import DESCRIPTIONS, NESTED_DATA, check_invariants, install_as_package, load_script, make_examples, offline_env
from util import train, transformer_pipeline

# Sentences as a user's text has them: with final punctuation.
SENTENCES = [text + " ." for text, _ in NESTED_DATA] + ["Anna Berg visited the Bank of Rome !"]
# Float noise of a transformer reading the same sentence in another batch
SCORE_TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def segment_pipeline(tiny_bert_path):
    nlp = transformer_pipeline(tiny_bert_path, segments=True, max_batch_pieces=64)
    data = [(text + " .", spans) for text, spans in NESTED_DATA]
    train(nlp, make_examples(nlp, data), 60, descriptions=DESCRIPTIONS)
    return nlp


def sentence_by_sentence(nlp, sentences):
    """Spans and scores of each sentence alone, shifted to document offsets."""
    spans, scores, offset = [], [], 0
    for doc in nlp.pipe(sentences):
        spans.extend((s.start + offset, s.end + offset, s.label_) for s in doc.spans["sc"])
        scores.extend(doc.spans["sc"].attrs["scores"].tolist())
        offset += len(doc)
    return spans, scores


def document_predictions(doc):
    return [(s.start, s.end, s.label_) for s in doc.spans["sc"]], doc.spans["sc"].attrs["scores"].tolist()


@pytest.mark.parametrize("n_sentences", [10, 2_500])
@pytest.mark.parametrize("splitter", [False, True], ids=["no-splitter", "sentencizer"])
def test_document_equals_its_sentences_one_by_one(segment_pipeline, n_sentences, splitter):
    nlp = segment_pipeline
    sentences = [SENTENCES[i % len(SENTENCES)] for i in range(n_sentences)]
    expected_spans, expected_scores = sentence_by_sentence(nlp, sentences)
    assert expected_spans  # the check below is about something
    if splitter:
        nlp.add_pipe("sentencizer", first=True)
    try:
        doc = nlp(" ".join(sentences))
    finally:
        if splitter:
            nlp.remove_pipe("sentencizer")
    assert doc.has_annotation("SENT_START") == splitter
    check_invariants(doc)
    spans, scores = document_predictions(doc)
    assert spans == expected_spans
    numpy.testing.assert_allclose(scores, expected_scores, atol=SCORE_TOLERANCE)


def test_strided_windows_do_not_give_that_guarantee(tiny_bert_path, segment_pipeline, tmp_path):
    """The same weights with the transformer reading 16-piece strided windows
    (the spacy-transformers default shape) see other context in a
    document: the predictions move. This is what segment_spans fixes."""
    segment_pipeline.to_disk(tmp_path / "m")
    strided = spacy.load(tmp_path / "m", config={"components": {"transformer": {"model": {"get_spans": {
        "@span_getters": "spacy-transformers.strided_spans.v1", "window": 16, "stride": 12}}}}})
    sentences = SENTENCES * 3
    expected_spans, expected_scores = sentence_by_sentence(strided, sentences)
    spans, scores = document_predictions(strided(" ".join(sentences)))
    assert spans != expected_spans or not numpy.allclose(scores, expected_scores, atol=SCORE_TOLERANCE)


def test_evaluate_documents_scores_both_views(segment_pipeline):
    """project/scripts/evaluate_documents.py: sentence docs become groups of
    3; with the segment pipeline both views get the same predictions, so
    the same scores."""
    script = load_script("evaluate_documents.py")
    nlp = segment_pipeline
    data = [(text + " .", spans) for text, spans in NESTED_DATA] * 2
    gold = [eg.reference for eg in make_examples(nlp, data)]
    rows = script.evaluate_documents(nlp, gold, dataset="toy", sentences_per_doc=3, spans_key="sc")
    assert [(r["view"], r["docs"]) for r in rows] == [("sentences", 8), ("documents", 3)]
    for metric in ("spans_f", "spans_p", "spans_r"):  # nested gold: no doc.ents to score
        assert rows[0][metric] is not None and rows[0][metric] == pytest.approx(rows[1][metric])


def test_evaluate_documents_views_of_articles_and_doc_ids():
    script = load_script("evaluate_documents.py")
    nlp = spacy.blank("en")
    article = nlp.make_doc("Anna Berg left. Oslo is big. Paris too.")
    for token in article:
        token.is_sent_start = token.i in (0, 4, 8)
    article.spans["sc"] = [Span(article, 0, 2, "PER"), Span(article, 4, 5, "LOC"), Span(article, 2, 6, "X")]
    sentences, crossing = script.split_sentences([article], "sc")
    assert [d.text.strip() for d in sentences] == ["Anna Berg left.", "Oslo is big.", "Paris too."]
    assert [[(s.start, s.end, s.label_) for s in d.spans["sc"]] for d in sentences] == [[(0, 2, "PER")], [(0, 1, "LOC")], []]
    assert crossing == 1  # "left . Oslo is" crosses a sentence boundary
    assert script.join_documents([article], 10) == ([article], "corpus documents")
    docs = [nlp.make_doc(t) for t in ("A one.", "A two.", "B one.")]
    for doc, doc_id in zip(docs, ("a", "a", "b")):
        doc.user_data["doc_id"] = doc_id
    joined, unit = script.join_documents(docs, 10)
    assert [d.text for d in joined] == ["A one. A two.", "B one."] and "doc_id" in unit


PREDICT = """
import json, sys, spacy
nlp = spacy.load(sys.argv[1])
doc = nlp(sys.argv[2])
print(json.dumps([[s.start, s.end, s.label_] for s in doc.spans["sc"]]))
print(json.dumps(doc.spans["sc"].attrs["scores"].tolist()))
"""


@pytest.mark.slow
def test_packaged_pipeline_keeps_the_guarantee(segment_pipeline, tmp_path):
    nlp = segment_pipeline
    python = install_as_package(nlp, "binder_documents", tmp_path)
    sentences = SENTENCES * 25
    expected_spans, expected_scores = sentence_by_sentence(nlp, sentences)
    out = subprocess.run([str(python), "-c", PREDICT, "en_binder_documents", " ".join(sentences)],
                         capture_output=True, text=True, env=offline_env(), timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    spans_line, scores_line = out.stdout.strip().splitlines()[-2:]
    assert [tuple(s) for s in json.loads(spans_line)] == expected_spans
    numpy.testing.assert_allclose(json.loads(scores_line), expected_scores, atol=SCORE_TOLERANCE)

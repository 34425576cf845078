"""A type added with add_label to a trained pipeline: scored from its
description, untrained until training has had gold of it, and never a
change to what the trained types predict."""
import numpy
import pytest
import spacy
import srsly
from spacy.tokens import Doc
from spacy.util import fix_random_seed

from spacy_binder.model import BinderOutput
from spacy_binder.spans import decode_spans, enumerate_candidates, greedy_flat
from spacy_binder.torch_binder import BinderScores
from util import DESCRIPTIONS, NESTED_DATA, make_examples, train, transformer_pipeline, update

TRAINED = ("LOC", "ORG", "PER")  # initialize's order: the data's labels, sorted
TEXT = "the University of Paris hired Anna Berg in May"
# 9 tokens, one segment, spans of at most 4 tokens: 6 * 4 + 3 + 2 + 1
N_CANDIDATES = 30
DATE = "A calendar date: a day, a month or a year."


@pytest.fixture(scope="module")
def saved(tiny_bert_path, tmp_path_factory):
    """A transformer pipeline trained on LOC, ORG and PER, saved."""
    fix_random_seed(0)
    nlp = transformer_pipeline(tiny_bert_path, segments=True, max_segment_length=16)
    train(nlp, make_examples(nlp, NESTED_DATA), 30, descriptions=DESCRIPTIONS)
    path = tmp_path_factory.mktemp("add_label") / "trained"
    nlp.to_disk(path)
    return path


def outputs(doc: Doc, labels) -> tuple:
    """doc.spans["sc"] as (start, end, label, score) and doc.ents as (start,
    end, label), of `labels` only."""
    group = doc.spans["sc"]
    spans = [(s.start, s.end, s.label_, score) for s, score in zip(group, group.attrs["scores"].tolist())]
    ents = [(e.start, e.end, e.label_) for e in doc.ents]
    return [s for s in spans if s[2] in labels], [e for e in ents if e[2] in labels]


def test_new_type_is_scored_and_the_trained_ones_do_not_change(saved):
    nlp = spacy.load(saved)
    binder = nlp.get_pipe("binder_ner")
    assert binder.labels == binder.trained_labels == TRAINED
    before = outputs(nlp(TEXT), TRAINED)
    assert before[0] and before[1]  # something to keep
    assert binder.add_label("DATE", description=DATE) == 1
    assert binder.labels == TRAINED + ("DATE",) and binder.trained_labels == TRAINED
    binder.untrained_threshold = 0.0  # DATE gets every candidate, with its score
    doc = nlp(TEXT)
    # bit for bit: spans, scores and ents of the trained types
    assert outputs(doc, TRAINED) == before
    dates, _ = outputs(doc, ("DATE",))
    assert len(dates) == N_CANDIDATES and all(0.0 < score < 1.0 for *_, score in dates)
    # a one-token DATE wherever nothing else is: doc.ents covers every token,
    # the trained types' ents included as they were
    assert sorted(i for ent in doc.ents for i in range(ent.start, ent.end)) == list(range(len(doc)))


def test_untrained_type_has_its_own_bar_and_only_fills_gaps(saved):
    """Hand-made scores against the anchor (margins): the untrained type
    scores above the trained one it overlaps, and still does not take it."""
    nlp = spacy.load(saved)
    binder = nlp.get_pipe("binder_ner")
    binder.add_label("DATE", description=DATE)
    per, date = binder.labels.index("PER"), binder.labels.index("DATE")
    doc = nlp.make_doc(TEXT)
    candidates = enumerate_candidates([doc], binder.max_span_width, binder.max_segment_length)
    assert len(candidates.span_starts) == N_CANDIDATES

    def annotate() -> tuple:
        span = numpy.full((N_CANDIDATES, 4), -5.0, dtype="float32")  # 0.007: nothing
        for (start, end), t, margin in (((5, 7), per, 1.0), ((4, 7), date, 3.0), ((8, 9), date, 2.0)):
            span[candidates.span_offsets[start] + end - 1 - start, t] = margin
        tokens = numpy.zeros((len(doc), 4), dtype="float32")
        scores = BinderScores(tokens, tokens, span, numpy.zeros((1, 3, 4), dtype="float32"))
        binder.set_annotations([doc], BinderOutput(candidates=candidates, scores=scores))
        return [(s.start, s.end, s.label_) for s in doc.spans["sc"]], [(e.start, e.end, e.label_) for e in doc.ents]

    # "Anna Berg" PER at sigmoid(1) = 0.73; DATE "hired Anna Berg" at 0.95
    # over it and "May" at 0.88: all above 0.5, and DATE fills only the gap
    assert annotate() == ([(4, 7, "DATE"), (5, 7, "PER"), (8, 9, "DATE")], [(5, 7, "PER"), (8, 9, "DATE")])
    binder.untrained_threshold = 0.9  # between the two DATE scores; PER keeps threshold 0.5
    assert annotate() == ([(4, 7, "DATE"), (5, 7, "PER")], [(5, 7, "PER")])
    binder.threshold = 0.8  # above PER's 0.73, whatever the untrained bar
    assert annotate() == ([(4, 7, "DATE")], [(4, 7, "DATE")])


def test_trained_status_is_saved_with_the_pipeline(saved, tmp_path):
    nlp = spacy.load(saved)
    binder = nlp.get_pipe("binder_ner")
    binder.add_label("DATE", description=DATE)
    binder.untrained_threshold = 0.0
    expected = outputs(nlp(TEXT), binder.labels)
    nlp.to_disk(tmp_path / "with_date")
    # a setter's value is not in config.cfg, whose value wins on load (as for threshold)
    overrides = {"components": {"binder_ner": {"untrained_threshold": 0.0}}}
    reloaded = spacy.load(tmp_path / "with_date", config=overrides)
    binder2 = reloaded.get_pipe("binder_ner")
    assert binder2.labels == TRAINED + ("DATE",) and binder2.trained_labels == TRAINED
    assert outputs(reloaded(TEXT), binder2.labels) == expected
    # a pipeline saved before trained labels were recorded: all its labels trained
    cfg_file = tmp_path / "with_date" / "binder_ner" / "cfg"
    srsly.write_json(cfg_file, {k: v for k, v in srsly.read_json(cfg_file).items() if k != "trained_labels"})
    old = spacy.load(tmp_path / "with_date", config=overrides).get_pipe("binder_ner")
    assert old.trained_labels == old.labels == TRAINED + ("DATE",)


def test_training_with_gold_of_the_new_type_makes_it_trained(saved):
    nlp = spacy.load(saved)
    binder = nlp.get_pipe("binder_ner")
    binder.add_label("DATE", description=DATE)
    optimizer = nlp.resume_training()
    # no DATE gold: DATE's anchor learns "no entity", DATE learns no mention
    update(nlp, make_examples(nlp, NESTED_DATA), optimizer)
    assert binder.trained_labels == TRAINED
    with_date = [(TEXT, [(1, 4, "ORG"), (3, 4, "LOC"), (5, 7, "PER"), (8, 9, "DATE")])]
    update(nlp, make_examples(nlp, with_date), optimizer)
    assert binder.trained_labels == TRAINED + ("DATE",)
    # trained: held to threshold, like the others
    binder.threshold, binder.untrained_threshold = 1.0, 0.0
    assert len(nlp(TEXT).spans["sc"]) == 0


def test_a_new_initialize_trains_every_label(saved):
    nlp = spacy.load(saved)
    binder = nlp.get_pipe("binder_ner")
    binder.add_label("DATE", description=DATE)
    nlp.initialize(lambda: make_examples(nlp, NESTED_DATA))  # no DATE gold: learned as "no entity"
    assert binder.trained_labels == binder.labels == TRAINED + ("DATE",)


def test_greedy_flat_places_fill_types_last():
    spans = [(0, 2, 0, 0.6), (1, 3, 1, 0.9), (3, 4, 1, 0.8)]
    assert greedy_flat(spans, 4) == [1, 2]  # by score, type 1 takes tokens 1-2
    assert greedy_flat(spans, 4, fill_types={1}) == [0, 2]


def test_decode_spans_takes_one_threshold_per_type():
    doc = Doc(spacy.blank("en").vocab, words=["a", "b"])
    batch = enumerate_candidates([doc], 2)
    margins = numpy.asarray([[1.0, 1.0], [-1.0, 3.0], [2.0, 2.0]], dtype="float32")  # (0,1) (0,2) (1,2)
    tokens = numpy.zeros((2, 2), dtype="float32")
    scores = BinderScores(tokens, tokens, margins, numpy.zeros((1, 3, 2), dtype="float32"))
    # type 0 above 0.5: margins > 0; type 1 above sigmoid(2.5) = 0.924: margin 3 only
    decoded = decode_spans(batch, scores, threshold=[0.5, 0.924])[0]
    assert [(s, e, t) for s, e, t, _ in decoded] == [(0, 1, 0), (0, 2, 1), (1, 2, 0)]
    with pytest.raises(ValueError, match="3 thresholds for 2 types"):
        decode_spans(batch, scores, threshold=[0.5, 0.5, 0.5])

"""The binder_ner component: construction, settings, odd docs, labels,
descriptions and serialization."""
import warnings

import numpy
import pytest
import spacy
import srsly
from spacy.tokens import Doc

from spacy_binder import BinderNER
from util import DESCRIPTIONS, NESTED_DATA, check_invariants, cnn_pipeline, make_examples, span_tuples, train
from util import transformer_pipeline, update


@pytest.fixture(scope="module")
def trained_cnn():
    nlp = cnn_pipeline()
    train(nlp, make_examples(nlp, NESTED_DATA), 40)
    return nlp


def test_add_pipe_defaults():
    nlp = spacy.blank("en")
    binder = nlp.add_pipe("binder_ner")
    assert isinstance(binder, BinderNER)
    cfg = nlp.config["components"]["binder_ner"]
    assert cfg["spans_key"] == "sc" and cfg["max_span_width"] == 30 and cfg["max_segment_length"] == 128
    assert cfg["threshold"] == 0.5 and cfg["threshold_offset"] is None and binder.threshold == 0.5
    assert cfg["set_ents"] and cfg["set_spans"]
    assert cfg["decision"] == "span" and binder.decision == "span"
    # a model of its own, as spancat's: no transformer component, no model download
    assert cfg["model"]["text_encoder"]["@architectures"] == "spacy.Tok2Vec.v2"
    assert cfg["model"]["text_encoder"]["embed"]["@architectures"] == "spacy.MultiHashEmbed.v2"
    assert cfg["model"]["text_encoder"]["encode"]["@architectures"] == "spacy.MaxoutWindowEncoder.v2"
    assert cfg["model"]["type_encoder"]["@architectures"] == "spacy-binder.LabelEmbeddingEncoder.v1"
    assert cfg["loss"] == {
        "@misc": "spacy-binder.BinderLoss.v2", "gold_weight": 0.5, "threshold_weight": 0.5,
        "start_weight": 0.2, "end_weight": 0.2, "span_weight": 0.6,
    }  # the weights of the paper
    weights = nlp.config["training"]["score_weights"]
    assert weights["spans_sc_f"] > 0
    assert binder.labels == ()


def test_default_model_learns_nested_spans_without_a_transformer():
    nlp = spacy.blank("en")
    nlp.add_pipe("binder_ner")
    examples = make_examples(nlp, NESTED_DATA)
    train(nlp, examples, 40)
    assert nlp.pipe_names == ["binder_ner"]
    # the training sentences, learned: nested ORG and LOC over "Paris" included
    assert nlp.evaluate(examples)["spans_sc_f"] == 1.0
    doc = nlp("the University of Paris hired Anna Berg")
    assert span_tuples(doc) == [(1, 4, "ORG"), (3, 4, "LOC"), (5, 7, "PER")]


def test_transformer_pipeline_listens():
    """The shipped shape, spelled out in the config (util.transformer_pipeline):
    the transformer finds the listener inside the BINDER model."""
    nlp = transformer_pipeline("unused-name")
    assert "binder_ner" in nlp.get_pipe("transformer").listener_map


def test_not_initialized_error():
    nlp = cnn_pipeline()
    with pytest.raises(ValueError, match="not initialized"):
        nlp("Anna Berg lives in Oslo")


@pytest.mark.parametrize(
    "config,message",
    [
        ({"max_span_width": 0}, "max_span_width"),
        ({"max_span_width": -3}, "max_span_width"),
        ({"set_ents": False, "set_spans": False}, "both outputs"),
        ({"spans_key": ""}, "spans_key"),
        ({"max_segment_length": 3}, r"max_segment_length must be an integer >= max_span_width \(4\), got 3"),
        ({"decision": "max"}, "decision must be one of 'span', 'joint', got 'max'"),
        ({"loss": {"@misc": "spacy-binder.BinderLoss.v2", "gold_weight": 0.0, "threshold_weight": 0.0}}, "sum to zero"),
    ],
)
def test_bad_settings_fail_at_construction(config, message):
    with pytest.raises(ValueError, match=message):
        cnn_pipeline(**config)


def test_bad_model_settings():
    with pytest.raises(ValueError, match="projection_size"):
        cnn_pipeline(model={
            "@architectures": "spacy-binder.BinderModel.v1", "projection_size": 0,
            "text_encoder": {"@architectures": "spacy.HashEmbedCNN.v2", "width": 8, "depth": 1,
                             "embed_size": 50, "window_size": 1, "maxout_pieces": 2,
                             "subword_features": False, "pretrained_vectors": None},
            "type_encoder": {"@architectures": "spacy-binder.LabelEmbeddingEncoder.v1"},
        })


def test_sentence_boundaries_limit_candidates(trained_cnn):
    words = "Anna Berg went home . Paris is big".split()
    doc = Doc(trained_cnn.vocab, words=words, sent_starts=[True, False, False, False, False, True, False, False])
    doc = trained_cnn(doc)
    check_invariants(doc)
    for span in doc.spans["sc"]:
        assert span.sent.start <= span.start and span.end <= span.sent.end


def test_outputs_can_be_switched_off():
    for setting, present in (("set_ents", "spans"), ("set_spans", "ents")):
        nlp = cnn_pipeline(**{setting: False})
        train(nlp, make_examples(nlp, NESTED_DATA), 30)
        doc = nlp("the University of Paris hired Anna Berg")
        if present == "spans":
            assert len(doc.spans["sc"]) > 0 and doc.ents == ()
            assert "ents_f" not in nlp.evaluate(make_examples(nlp, NESTED_DATA))
        else:
            assert "sc" not in doc.spans and len(doc.ents) > 0
            assert "spans_sc_f" not in nlp.evaluate(make_examples(nlp, NESTED_DATA))


def test_threshold_trades_recall_for_precision(trained_cnn):
    binder = trained_cnn.get_pipe("binder_ner")
    text = "the University of Paris hired Anna Berg"
    doc = trained_cnn(text)
    base = span_tuples(doc)
    scores = doc.spans["sc"].attrs["scores"]
    lowest, second = numpy.sort(scores)[:2]
    between = float(lowest + second) / 2
    try:
        binder.threshold = between
        strict = span_tuples(trained_cnn(text))
        binder.threshold = 0.0
        loose = span_tuples(trained_cnn(text))
    finally:
        binder.threshold = 0.5
    assert strict == [span for span, score in zip(base, scores) if score > between]
    assert len(strict) == len(base) - 1
    assert set(base) < set(loose)
    # at threshold 0 every candidate of every type is predicted
    n = len(doc)
    assert len(loose) == sum(min(4, n - i) for i in range(n)) * len(binder.labels)


def test_descriptions_dict_file_and_errors(tmp_path):
    nlp = cnn_pipeline()
    examples = make_examples(nlp, NESTED_DATA)
    path = tmp_path / "descriptions.json"
    srsly.write_json(path, DESCRIPTIONS)
    binder = nlp.get_pipe("binder_ner")
    binder.initialize(lambda: examples, nlp=nlp, descriptions=str(path))
    assert binder.descriptions == DESCRIPTIONS
    with pytest.raises(ValueError, match="'MISC'"):
        binder.initialize(lambda: examples, nlp=nlp, descriptions={**DESCRIPTIONS, "MISC": "Other things."})
    nlp = cnn_pipeline()
    binder = nlp.get_pipe("binder_ner")
    binder.initialize(lambda: examples, nlp=nlp, labels=["MISC"], descriptions={**DESCRIPTIONS, "MISC": "Other."})
    assert binder.labels[0] == "MISC" and set(binder.labels) == {"MISC", "PER", "ORG", "LOC"}
    assert binder.label_data == list(binder.labels)
    with pytest.raises(ValueError, match="empty"):
        binder.initialize(lambda: examples, nlp=nlp, descriptions={"PER": "  "})
    with pytest.raises(ValueError, match="does not exist"):
        binder.initialize(lambda: examples, nlp=nlp, descriptions=str(tmp_path / "nope.json"))


def test_descriptions_for_a_label_embedding_warn_that_they_are_unused():
    nlp = cnn_pipeline()
    examples = make_examples(nlp, NESTED_DATA)
    with pytest.warns(UserWarning, match="does not read them"):
        nlp.get_pipe("binder_ner").initialize(lambda: examples, nlp=nlp, descriptions=DESCRIPTIONS)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        nlp.get_pipe("binder_ner").initialize(lambda: examples, nlp=nlp)


def test_missing_descriptions_warn_for_description_encoder(tiny_bert_path):
    nlp = transformer_pipeline(tiny_bert_path)
    examples = make_examples(nlp, NESTED_DATA)
    with pytest.warns(UserWarning, match=r"No description for 1 label\(s\) \['PER'\]"):
        nlp.config["initialize"]["components"]["binder_ner"] = {
            "descriptions": {"ORG": DESCRIPTIONS["ORG"], "LOC": DESCRIPTIONS["LOC"]}
        }
        nlp.initialize(lambda: examples)
    assert nlp.get_pipe("binder_ner").descriptions["PER"] == "PER"


def test_no_entities_anywhere_is_an_error():
    nlp = cnn_pipeline()
    examples = make_examples(nlp, [("nothing here", [])])
    with pytest.raises(ValueError, match="found no entity"):
        nlp.initialize(lambda: examples)


def test_unlearnable_gold_is_counted_per_label():
    nlp = cnn_pipeline(max_span_width=2)
    examples = make_examples(nlp, NESTED_DATA)  # ORG spans of 3 tokens, twice
    with pytest.warns(UserWarning, match=r"3 are longer than max_span_width \(\{'ORG': 3\}\)"):
        nlp.initialize(lambda: examples)


def test_initialize_reads_the_training_data_once():
    """Labels and unlearnable gold come from one pass (a corpus on disk is
    deserialized at every pass); only a sample of 10 is read again."""
    nlp = cnn_pipeline(max_span_width=2)
    examples = make_examples(nlp, NESTED_DATA * 10)
    yielded = []

    def get_examples():
        for eg in examples:
            yielded.append(eg)
            yield eg

    with pytest.warns(UserWarning, match=r"30 are longer than max_span_width \(\{'ORG': 30\}\)"):
        nlp.get_pipe("binder_ner").initialize(get_examples, nlp=nlp)
    assert len(examples) < len(yielded) <= len(examples) + 10
    # and what is not an Example is still refused
    for bad, message in ((lambda: [], "invalid get_examples"), (lambda: examples[:3] + ["a text"], "list of Example")):
        with pytest.raises(TypeError, match=message):
            nlp.get_pipe("binder_ner").initialize(bad, nlp=nlp)


def test_custom_spans_key(tmp_path):
    nlp = cnn_pipeline(spans_key="nested")
    examples = make_examples(nlp, NESTED_DATA, spans_key="nested")
    with pytest.warns(UserWarning, match="spans_nested_f"):
        train(nlp, examples, 40)
    scores = nlp.evaluate(examples)
    assert scores["spans_nested_f"] == 1.0 and "spans_sc_f" not in scores
    assert "nested" in nlp("the University of Paris hired Anna Berg").spans


def test_decision_rules_read_the_right_scores(trained_cnn):
    binder = trained_cnn.get_pipe("binder_ner")
    text = "the University of Paris hired Anna Berg at Oslo"
    doc = trained_cnn.make_doc(text)
    for name, proc in trained_cnn.pipeline:
        if name != "binder_ner":
            doc = proc(doc)
    binder.decision = "joint"  # predicts every score; "span" skips the boundaries
    output = binder.predict([doc])
    c, scores = output.candidates, output.scores
    log_sig = lambda x: -numpy.logaddexp(0.0, -numpy.asarray(x, dtype="float64"))
    anchor = scores.anchor[0]  # one segment: rows start, end, span
    span_margin = scores.span - anchor[2]
    start_margin = scores.start[c.span_starts] - anchor[0]
    end_margin = scores.end[c.span_ends] - anchor[1]
    joint = (log_sig(span_margin) + log_sig(start_margin) + log_sig(end_margin)) / 3
    expected = {
        "span": {(int(c.span_starts[i]), int(c.span_ends[i]) + 1, binder.labels[t])
                 for i, t in zip(*numpy.nonzero(span_margin > 0))},
        "joint": {(int(c.span_starts[i]), int(c.span_ends[i]) + 1, binder.labels[t])
                  for i, t in zip(*numpy.nonzero(joint > numpy.log(0.5)))},
    }
    try:
        for decision in ("span", "joint"):
            binder.decision = decision
            binder.set_annotations([doc], output)
            got = {(s.start, s.end, s.label_) for s in doc.spans["sc"]}
            assert got == expected[decision], decision
    finally:
        binder.decision = "span"
    with pytest.raises(ValueError, match="decision must be one of"):
        binder.decision = "Joint"


def test_span_decision_skips_boundary_scores_and_joint_refuses_them(trained_cnn):
    binder = trained_cnn.get_pipe("binder_ner")
    doc = trained_cnn.make_doc("the University of Paris hired Anna Berg at Oslo")
    for name, proc in trained_cnn.pipeline:
        if name != "binder_ner":
            doc = proc(doc)
    try:
        binder.decision = "joint"
        full = binder.predict([doc])
        binder.decision = "span"
        lean = binder.predict([doc])
        # the same span and anchor scores, no start or end scores
        numpy.testing.assert_array_equal(lean.scores.span, full.scores.span)
        numpy.testing.assert_array_equal(lean.scores.anchor, full.scores.anchor)
        assert numpy.isnan(lean.scores.start).all() and numpy.isnan(lean.scores.end).all()
        assert not numpy.isnan(full.scores.start).any()
        # only predict skips them: the model called directly still gives them
        assert not numpy.isnan(binder.model.predict([doc]).scores.start).any()
        binder.set_annotations([doc], lean)
        spans = [(s.start, s.end, s.label_) for s in doc.spans["sc"]]
        binder.set_annotations([doc], full)
        assert spans == [(s.start, s.end, s.label_) for s in doc.spans["sc"]] and spans
        binder.decision = "joint"
        with pytest.raises(ValueError, match="predicted them with decision 'span'"):
            binder.set_annotations([doc], lean)
    finally:
        binder.decision = "span"


def test_serialization_keeps_labels_descriptions_settings(trained_cnn):
    nlp = trained_cnn
    binder = nlp.get_pipe("binder_ner")
    binder.cfg["descriptions"]["PER"] = "Somebody."
    data = nlp.to_bytes()
    nlp2 = cnn_pipeline()
    nlp2.from_bytes(data)
    binder2 = nlp2.get_pipe("binder_ner")
    assert binder2.labels == binder.labels
    assert binder2.descriptions["PER"] == "Somebody."
    assert binder2.max_span_width == binder.max_span_width == 4
    text = "Anna Berg Foundation gave money to Oslo"
    assert span_tuples(nlp(text)) == span_tuples(nlp2(text))


def test_load_time_override_of_settings_wins(trained_cnn, tmp_path):
    trained_cnn.to_disk(tmp_path / "m")
    nlp = spacy.load(tmp_path / "m", config={"components": {"binder_ner": {"threshold": 1.0}}})
    assert nlp.get_pipe("binder_ner").threshold == 1.0
    assert nlp.get_pipe("binder_ner").decision == "span"
    assert len(nlp("the University of Paris hired Anna Berg").spans["sc"]) == 0
    with pytest.raises(ValueError, match="at most 4"):
        spacy.load(tmp_path / "m", config={"components": {"binder_ner": {"max_span_width": 9}}})(
            "Anna Berg"
        )


def test_type_vectors_are_cached_at_inference_and_dropped_on_update(trained_cnn):
    nlp = trained_cnn
    binder = nlp.get_pipe("binder_ner")
    cache = binder.model.attrs["type_vector_cache"]
    nlp("Anna Berg")
    first = cache.vectors
    assert first is not None and cache.key == tuple(binder.model.attrs["descriptions"])
    nlp("Oslo")
    assert cache.vectors is first  # reused, not recomputed
    optimizer = nlp.resume_training()
    update(nlp, make_examples(nlp, NESTED_DATA[:1]), optimizer)
    assert cache.vectors is None


def test_add_label_after_training(tiny_bert_path, trained_cnn):
    with pytest.raises(ValueError, match="label embedding"):
        trained_cnn.get_pipe("binder_ner").add_label("DATE")
    nlp = transformer_pipeline(tiny_bert_path)
    train(nlp, make_examples(nlp, NESTED_DATA), 5, descriptions=DESCRIPTIONS)
    binder = nlp.get_pipe("binder_ner")
    assert binder.add_label("DATE", description="A calendar date or a month.") == 1
    assert binder.add_label("DATE") == 0
    assert binder.descriptions["DATE"] == "A calendar date or a month."
    binder.untrained_threshold = 0.0  # the bar of types not trained yet
    doc = nlp("Anna Berg left in May")
    assert "DATE" in {s.label_ for s in doc.spans["sc"]}  # scored zero-shot from its description


def test_overlong_description_is_an_error_not_a_truncation(tiny_bert_path):
    nlp = transformer_pipeline(tiny_bert_path)
    examples = make_examples(nlp, NESTED_DATA)
    long_text = " ".join(["a person who lives somewhere"] * 200)
    nlp.config["initialize"]["components"]["binder_ner"] = {
        "descriptions": {**DESCRIPTIONS, "PER": long_text}
    }
    with pytest.raises(ValueError, match=r"word pieces long.*at most 512"):
        nlp.initialize(lambda: examples)


def test_displacy_span_view(trained_pipeline):
    from spacy import displacy

    html = displacy.render(trained_pipeline("the University of Paris hired Anna Berg"), style="span")
    assert "ORG" in html and "LOC" in html


def test_unknown_label_during_training_is_counted_once():
    nlp = cnn_pipeline()
    examples = make_examples(nlp, NESTED_DATA)
    optimizer = nlp.initialize(lambda: examples)
    extra = make_examples(nlp, [("Anna Berg left in May", [(0, 2, "PER"), (4, 5, "DATE")])])
    with pytest.warns(UserWarning, match=r"1 have a label the component does not know \(\{'DATE': 1\}\)"):
        update(nlp, extra, optimizer)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        update(nlp, extra, optimizer)  # same label, same reason: no second warning


def test_config_that_does_not_match_the_weights(trained_cnn, tmp_path):
    trained_cnn.to_disk(tmp_path / "m")
    with pytest.raises(ValueError, match="projection_size = 32, but the config asks for 64"):
        spacy.load(tmp_path / "m", config={"components": {"binder_ner": {"model": {"projection_size": 64}}}})


def test_missing_description_encoder_folder(tmp_path):
    nlp = cnn_pipeline(model={
        "@architectures": "spacy-binder.BinderModel.v1",
        "text_encoder": {"@architectures": "spacy.HashEmbedCNN.v2", "width": 8, "depth": 1,
                         "embed_size": 50, "window_size": 1, "maxout_pieces": 2,
                         "subword_features": False, "pretrained_vectors": None},
        "type_encoder": {"@architectures": "spacy-binder.DescriptionEncoder.v1",
                         "name": str(tmp_path / "no_such_model")},
    })
    with pytest.raises(ValueError, match="could not load '.*no_such_model'"):
        nlp.initialize(lambda: make_examples(nlp, NESTED_DATA))


def test_labels_added_before_initialize_are_kept():
    nlp = cnn_pipeline()
    binder = nlp.get_pipe("binder_ner")
    assert binder.add_label("DATE", description="A date.") == 1
    nlp.initialize(lambda: make_examples(nlp, NESTED_DATA))
    assert binder.labels == ("DATE", "LOC", "ORG", "PER")
    assert binder.descriptions["DATE"] == "A date."


def test_custom_spans_key_selected_by_ents_is_not_warned_about():
    """Picking model-best by doc.ents F (a flat corpus) is a choice, not a
    forgotten spans_<key>_f score weight."""
    nlp = cnn_pipeline(spans_key="nested")
    nlp.config["training"]["score_weights"] = {"ents_f": 1.0}
    examples = make_examples(nlp, NESTED_DATA, spans_key="nested")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        nlp.initialize(lambda: examples)


def test_update_honours_drop():
    """`drop` (what `spacy train` passes from [training] dropout) reaches
    the model's dropout layers, as in spaCy's own components."""
    nlp = cnn_pipeline()
    examples = make_examples(nlp, NESTED_DATA)
    nlp.initialize(lambda: examples)
    binder = nlp.get_pipe("binder_ner")
    rates = lambda: {node.attrs["dropout_rate"] for node in binder.model.walk() if "dropout_rate" in node.attrs}
    assert rates() == {0.0}
    # without an optimizer the weights stay put: only dropout can change the loss
    loss = lambda drop: nlp.update(examples, drop=drop, sgd=False)["binder_ner"]
    plain = loss(0.0)
    assert loss(0.0) == plain
    assert loss(0.5) != plain and rates() == {0.5}
    assert loss(0.0) == plain and rates() == {0.0}

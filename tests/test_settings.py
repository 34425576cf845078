"""binder_ner's settings: one declaration (SETTINGS) gives cfg, the checks
at construction and in the setters, and what wins on load."""
import math
import warnings

import pytest
import spacy
import srsly

from spacy_binder import BinderNER
from spacy_binder.component import SETTINGS, _threshold_from_offset
from util import NESTED_DATA, cnn_pipeline, make_examples, train


def test_cfg_holds_the_declared_settings():
    binder = cnn_pipeline(threshold=1, decision="joint").get_pipe("binder_ner")
    assert list(binder.cfg) == ["labels", "trained_labels", "descriptions"] + [setting.name for setting in SETTINGS]
    # kept as cfg declares them: an int threshold becomes a float
    assert binder.cfg["threshold"] == 1.0 and isinstance(binder.cfg["threshold"], float)
    assert binder.cfg["decision"] == binder.decision == "joint"
    assert binder.cfg["max_span_width"] == binder.max_span_width == 4


@pytest.mark.parametrize(
    "settings,message",
    [
        ({"threshold": "0.5"}, r"threshold must be a probability in \[0, 1\] .*, got '0.5'"),
        ({"threshold": float("nan")}, r"threshold must be a probability in \[0, 1\] .*, got nan"),
        ({"threshold": True}, r"threshold must be a probability in \[0, 1\] .*, got True"),
        ({"threshold": -0.01}, r"threshold must be a probability in \[0, 1\] .*, got -0.01"),
        ({"threshold": 1.5}, r"threshold must be a probability in \[0, 1\] .*, got 1.5"),
        ({"threshold": None}, r"threshold must be a probability in \[0, 1\] .*, got None"),
        ({"untrained_threshold": 2}, r"untrained_threshold must be a probability in \[0, 1\] \(a span of an untrained type .*, got 2"),
        ({"max_span_width": True}, r"max_span_width must be a positive integer \(tokens\), got True"),
        ({"max_span_width": 2.0}, r"max_span_width must be a positive integer \(tokens\), got 2.0"),
        ({"max_segment_length": "9"}, r"max_segment_length must be an integer >= max_span_width \(30\)"),
        ({"spans_key": None}, "spans_key must be a non-empty string, got None"),
        ({"set_ents": "false"}, "set_ents must be true or false, got 'false'"),
        ({"set_ents": False, "set_spans": False}, "both outputs"),
        ({"free_transformer_output": 1}, "free_transformer_output must be true or false, got 1"),
        ({"decision": "max"}, r"decision must be one of 'span', 'joint', got 'max': 'joint' scores"),
    ],
)
def test_bad_settings_say_what_is_wrong(settings, message):
    """Constructed directly, past the config's type checks."""
    model = cnn_pipeline().get_pipe("binder_ner").model
    with pytest.raises(ValueError, match=message):
        BinderNER(spacy.blank("en").vocab, model, **settings)


def test_setters_check_and_leave_cfg_alone_on_error():
    binder = cnn_pipeline().get_pipe("binder_ner")
    binder.threshold = 0
    assert binder.threshold == 0.0 and isinstance(binder.cfg["threshold"], float)
    with pytest.raises(ValueError, match="threshold must be a probability"):
        binder.threshold = "high"
    with pytest.raises(ValueError, match="threshold must be a probability"):
        binder.threshold = 1.01
    with pytest.raises(ValueError, match="decision must be one of"):
        binder.decision = "Joint"
    assert binder.threshold == 0.0 and binder.decision == "span"


def test_threshold_written_into_cfg_is_checked_when_predicting():
    """spaCy's find-threshold sets cfg["threshold"] directly, past the
    setter: the value is read, and checked, on each call."""
    nlp = cnn_pipeline()
    train(nlp, make_examples(nlp, NESTED_DATA), 2)
    binder = nlp.get_pipe("binder_ner")
    binder.cfg["threshold"] = 1.0
    assert len(nlp("the University of Paris hired Anna Berg").spans["sc"]) == 0
    binder.cfg["threshold"] = 0.0  # every candidate: 22 spans of <= 4 of 7 tokens, 3 labels
    assert len(nlp("the University of Paris hired Anna Berg").spans["sc"]) == 22 * 3
    binder.cfg["threshold"] = 2.0
    with pytest.raises(ValueError, match=r"threshold must be a probability in \[0, 1\] .*, got 2.0"):
        nlp("Anna Berg")


def test_threshold_offset_still_loads_as_its_probability():
    """The deprecated logit offset becomes threshold = sigmoid(offset), with
    a warning that says what to write instead."""
    with pytest.warns(FutureWarning, match=r"replace threshold_offset = -3.0 by threshold = 0.0474259"):
        binder = cnn_pipeline(threshold_offset=-3.0).get_pipe("binder_ner")
    assert binder.threshold == pytest.approx(1 / (1 + math.exp(3.0)))
    assert "threshold_offset" not in binder.cfg
    # offsets far out give the ends, without overflow
    with pytest.warns(FutureWarning):
        assert cnn_pipeline(threshold_offset=-1000.0).get_pipe("binder_ner").threshold == 0.0
    with pytest.warns(FutureWarning):
        assert cnn_pipeline(threshold_offset=1000.0).get_pipe("binder_ner").threshold == 1.0
    # the attribute too: setting it must not create a dead attribute
    with pytest.warns(FutureWarning, match=r"set threshold = 0.731059 \(the probability for offset 1.0\)"):
        binder.threshold_offset = 1.0
    assert binder.threshold == pytest.approx(1 / (1 + math.exp(-1.0)))
    with pytest.raises(ValueError, match="must be a number, got None; set threshold instead"):
        binder.threshold_offset = None


def test_threshold_offset_errors():
    with pytest.raises(ValueError, match=r"both threshold = 0.7 and the deprecated threshold_offset = 1.0"):
        cnn_pipeline(threshold=0.7, threshold_offset=1.0)
    # values the config's type checks let through, or that come from code
    for value in (float("nan"), "high", True):
        with pytest.raises(ValueError, match=r"threshold_offset \(deprecated\) must be a number, got "):
            _threshold_from_offset(0.5, value)


def test_pipeline_saved_with_threshold_offset_loads(tmp_path):
    """A pipeline saved before threshold existed: threshold_offset in its
    config.cfg and in binder_ner's cfg file, no threshold."""
    nlp = cnn_pipeline()
    train(nlp, make_examples(nlp, NESTED_DATA), 2)
    nlp.to_disk(tmp_path / "m")
    config_file = tmp_path / "m" / "config.cfg"
    # saved before untrained types had a threshold, and labels a trained status, too
    config_text = config_file.read_text().replace("\nuntrained_threshold = 0.5\n", "\n")
    assert "\nthreshold = 0.5\nthreshold_offset = null\n" in config_text
    config_file.write_text(config_text.replace("threshold = 0.5\nthreshold_offset = null\n", "threshold_offset = 1.0\n"))
    cfg_file = tmp_path / "m" / "binder_ner" / "cfg"
    cfg = srsly.read_json(cfg_file)
    del cfg["threshold"], cfg["untrained_threshold"], cfg["trained_labels"]
    cfg["threshold_offset"] = 1.0
    srsly.write_json(cfg_file, cfg)
    with pytest.warns(FutureWarning, match="by threshold = 0.731059"):
        loaded = spacy.load(tmp_path / "m")
    binder = loaded.get_pipe("binder_ner")
    assert binder.threshold == pytest.approx(1 / (1 + math.exp(-1.0)))
    assert "threshold_offset" not in binder.cfg and binder.labels == nlp.get_pipe("binder_ner").labels
    assert binder.trained_labels == binder.labels and binder.untrained_threshold == 0.5
    # what find-threshold does to it: both set, an error that says what to remove
    with pytest.raises(ValueError, match=r"Remove threshold_offset from \[components.binder_ner\] \(in a saved pipeline, from its config.cfg"):
        spacy.load(tmp_path / "m", config={"components": {"binder_ner": {"threshold": 0.2}}})
    # the way the error names that needs no edit
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no deprecation warning: the offset is gone
        unset = spacy.load(tmp_path / "m", config={"components": {"binder_ner": {"threshold": 0.2, "threshold_offset": None}}})
    assert unset.get_pipe("binder_ner").threshold == 0.2
    # with the old default offset 0.0, which every older config.cfg holds, a
    # threshold that is set applies (find-threshold works on those pipelines)
    config_file.write_text(config_file.read_text().replace("threshold_offset = 1.0", "threshold_offset = 0.0"))
    with pytest.warns(FutureWarning, match=r"remove threshold_offset = 0.0 from \[components.binder_ner\] \(threshold = 0.2 applies\)"):
        loaded = spacy.load(tmp_path / "m", config={"components": {"binder_ner": {"threshold": 0.2}}})
    assert loaded.get_pipe("binder_ner").threshold == 0.2


def test_set_values_and_factory_values_win_over_saved_ones():
    nlp = cnn_pipeline()
    train(nlp, make_examples(nlp, NESTED_DATA), 2)
    binder = nlp.get_pipe("binder_ner")
    binder.threshold = 0.9
    data = nlp.to_bytes()
    # a value set on this component survives loading into it
    binder.decision = "joint"
    nlp.from_bytes(data)
    assert binder.decision == "joint" and binder.threshold == 0.9
    # a new component keeps its factory values, not the saved ones
    other = cnn_pipeline(decision="joint")
    other.from_bytes(data)
    loaded = other.get_pipe("binder_ner")
    assert loaded.threshold == 0.5 and loaded.decision == "joint"
    assert loaded.labels == binder.labels

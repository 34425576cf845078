"""binder_ner's settings: one declaration (SETTINGS) gives cfg, the checks
at construction and in the setters, and what wins on load."""
import pytest
import spacy

from spacy_binder import BinderNER
from spacy_binder.component import SETTINGS
from util import NESTED_DATA, cnn_pipeline, make_examples, train


def test_cfg_holds_the_declared_settings():
    binder = cnn_pipeline(threshold_offset=1, decision="joint").get_pipe("binder_ner")
    assert list(binder.cfg) == ["labels", "descriptions"] + [setting.name for setting in SETTINGS]
    # kept as cfg declares them: an int offset becomes a float
    assert binder.cfg["threshold_offset"] == 1.0 and isinstance(binder.cfg["threshold_offset"], float)
    assert binder.cfg["decision"] == binder.decision == "joint"
    assert binder.cfg["max_span_width"] == binder.max_span_width == 4


@pytest.mark.parametrize(
    "settings,message",
    [
        ({"threshold_offset": "1.5"}, r"threshold_offset must be a number .*, got '1.5'"),
        ({"threshold_offset": float("nan")}, r"threshold_offset must be a number .*, got nan"),
        ({"max_span_width": True}, r"max_span_width must be a positive integer \(tokens\), got True"),
        ({"max_span_width": 2.0}, r"max_span_width must be a positive integer \(tokens\), got 2.0"),
        ({"max_segment_length": "9"}, r"max_segment_length must be an integer >= max_span_width \(30\)"),
        ({"spans_key": None}, "spans_key must be a non-empty string, got None"),
        ({"set_ents": "false"}, "set_ents must be true or false, got 'false'"),
        ({"set_ents": False, "set_spans": False}, "both outputs"),
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
    binder.threshold_offset = 2
    assert binder.threshold_offset == 2.0 and isinstance(binder.cfg["threshold_offset"], float)
    with pytest.raises(ValueError, match="threshold_offset must be a number"):
        binder.threshold_offset = "high"
    with pytest.raises(ValueError, match="decision must be one of"):
        binder.decision = "Joint"
    assert binder.threshold_offset == 2.0 and binder.decision == "span"


def test_set_values_and_factory_values_win_over_saved_ones():
    nlp = cnn_pipeline()
    train(nlp, make_examples(nlp, NESTED_DATA), 2)
    binder = nlp.get_pipe("binder_ner")
    binder.threshold_offset = 3.0
    data = nlp.to_bytes()
    # a value set on this component survives loading into it
    binder.decision = "joint"
    nlp.from_bytes(data)
    assert binder.decision == "joint" and binder.threshold_offset == 3.0
    # a new component keeps its factory values, not the saved ones
    other = cnn_pipeline(decision="joint")
    other.from_bytes(data)
    loaded = other.get_pipe("binder_ner")
    assert loaded.threshold_offset == 0.0 and loaded.decision == "joint"
    assert loaded.labels == binder.labels

"""benchmarks/scripts/error_kinds.py: each wrong prediction and each missed
gold entity falls into exactly one kind."""
from util import load_script

error_kinds = load_script("error_kinds.py")


def test_each_error_gets_its_kind():
    gold = {(0, 4, "PER"), (10, 15, "ORG"), (20, 25, "LOC"), (30, 35, "MISC"), (52, 56, "LOC")}
    predicted = {
        (0, 4, "PER"),  # right
        (10, 13, "ORG"),  # too short: the ORG at 10-15 is missed by its boundary
        (20, 25, "ORG"),  # right extent, wrong label
        (40, 44, "LOC"),  # no gold near it
        (50, 60, "PER"),  # overlaps a LOC with another extent and label
    }
    counts = error_kinds.error_kinds(gold, predicted)
    assert dict(counts) == {
        "tp": 1,
        "fp_boundary": 1, "fp_label": 1, "fp_spurious": 1, "fp_other": 1,
        "fn_boundary": 1, "fn_label": 1, "fn_missed": 1, "fn_other": 1,
    }  # fmt: skip
    row = error_kinds.summary("x", counts)
    # 1 right of 5 predicted and of 5 gold
    assert (row["tp"], row["fp"], row["fn"], row["p"], row["r"], row["f"]) == (1, 4, 4, 20.0, 20.0, 20.0)

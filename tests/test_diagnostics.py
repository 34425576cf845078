"""`python -m spacy_binder debug-data` and spacy_binder.diagnostics on a corpus
with known defects."""
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import List, Optional, Tuple

import pytest
import spacy
from spacy.tokens import Doc, DocBin, Span
from thinc.api import Config

from spacy_binder.diagnostics import (
    CONTAINS,
    CROSSES,
    INSIDE,
    REPEATED,
    SAME_TOKENS_OTHER_LABEL,
    diagnose_config,
)
from spacy_binder.spans import (
    SKIP_CROSSES_SEGMENT,
    SKIP_MISALIGNED,
    SKIP_TOO_LONG,
    SKIP_UNKNOWN_LABEL,
    SKIP_WHITESPACE_EDGE,
)

from util import offline_env, tiny_config_with_description_encoder

CONFIGS = Path(__file__).parent.parent / "configs"
# binder_tiny.cfg's
MAX_SPAN_WIDTH = 8
# "word " * 600: 600 word pieces, [CLS] and [SEP]; MiniLM reads 512
TOO_LONG_DESCRIPTION = "word " * 600
TOO_LONG_PIECES = 602

Mention = Tuple[int, int, str]


def make_doc(
    nlp, words: List[str], spaces: List[bool], mentions: List[Mention], sent_starts: Optional[List[bool]] = None
) -> Doc:
    doc = Doc(nlp.vocab, words=words, spaces=spaces, sent_starts=sent_starts)
    doc.spans["sc"] = [Span(doc, start, end, label=label) for start, end, label in mentions]
    return doc


def train_docs(nlp) -> List[Doc]:
    """Nine docs, one or two defects each; all but the fourth tokenized as
    nlp.make_doc tokenizes their text."""
    return [
        # a nested pair: LOC inside ORG; two sentences, as the Sentencizer finds them
        make_doc(
            nlp,
            "Anna Berg left the University of Oslo . Bob Smith came .".split(),
            [True, True, True, True, True, True, False, True, True, True, False, False],
            [(0, 2, "PER"), (4, 7, "ORG"), (6, 7, "LOC"), (8, 10, "PER")],
            sent_starts=[True] + [False] * 7 + [True] + [False] * 3,
        ),
        # crosses the sentence boundary (the reference's and the Sentencizer's segment)
        make_doc(
            nlp,
            "Smith fell ill . Flu spread fast .".split(),
            [True, True, False, True, True, True, False, False],
            [(2, 5, "DISEASE")],
            sent_starts=[True, False, False, False, True, False, False, False],
        ),
        # 9 tokens, longer than max_span_width
        make_doc(
            nlp,
            "The acute severe chronic relapsing remitting inflammatory demyelinating autoimmune disease spread .".split(),
            [True] * 10 + [False, False],
            [(1, 10, "DISEASE")],
        ),
        # "IL" and "2" are one token for spaCy ("IL2"): "2 receptor" does not align
        make_doc(nlp, ["The", "IL", "2", "receptor", "binds", "."], [True, False, True, True, False, False], [(2, 4, "PROTEIN")]),
        # a crossing pair
        make_doc(
            nlp, "Heart attack risk rose .".split(), [True, True, True, False, False], [(0, 2, "DISEASE"), (1, 3, "RISK")]
        ),
        # the same tokens with two labels
        make_doc(nlp, "Paris Hilton smiled .".split(), [True, True, False, False], [(0, 2, "PER"), (0, 2, "ORG")]),
        # one mention annotated twice
        make_doc(nlp, "Oslo is cold .".split(), [True, True, False, False], [(0, 1, "LOC"), (0, 1, "LOC")]),
        # punctuation at both edges
        make_doc(nlp, ["(", "ACME", ")", "sued", "."], [False, False, True, False, False], [(0, 3, "ORG")]),
        # ends on a whitespace token
        make_doc(nlp, ["Bob", " ", "ran", "."], [True, False, False, False], [(0, 2, "PER")]),
    ]


def dev_docs(nlp) -> List[Doc]:
    return [
        make_doc(nlp, "Aspirin helps Anna .".split(), [True, True, False, False], [(0, 1, "CHEMICAL"), (2, 3, "PER")]),
        make_doc(nlp, "Flu hit Oslo .".split(), [True, True, False, False], [(0, 1, "DISEASE"), (2, 3, "LOC")]),
    ]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("defects")
    nlp = spacy.blank("en")
    DocBin(docs=train_docs(nlp), store_user_data=True).to_disk(folder / "train.spacy")
    DocBin(docs=dev_docs(nlp), store_user_data=True).to_disk(folder / "dev.spacy")
    # RISK has no description; PROTEIN's is too long for MiniLM
    descriptions = {
        "PER": "A person.",
        "ORG": "An organisation.",
        "LOC": "A place.",
        "DISEASE": "A disease.",
        "PROTEIN": TOO_LONG_DESCRIPTION,
    }
    (folder / "descriptions.json").write_text(json.dumps(descriptions), encoding="utf8")
    return folder


@pytest.fixture(scope="module")
def description_config(corpus, minilm_path) -> Path:
    """binder_tiny.cfg with a MiniLM description encoder as the type encoder."""
    return tiny_config_with_description_encoder(minilm_path, corpus / "binder_descriptions.cfg")


def path_overrides(corpus: Path) -> dict:
    return {
        "paths.train": str(corpus / "train.spacy"),
        "paths.dev": str(corpus / "dev.spacy"),
        "paths.descriptions": str(corpus / "descriptions.json"),
    }


def test_every_defect_is_counted_per_label(corpus, description_config):
    (report,) = diagnose_config(description_config, path_overrides(corpus))
    assert (report.component, report.spans_key, report.max_span_width) == ("binder_ner", "sc", MAX_SPAN_WIDTH)
    assert report.labels == ["DISEASE", "LOC", "ORG", "PER", "PROTEIN", "RISK"]
    train, dev = report.train, report.dev
    assert (train.n_docs, dev.n_docs) == (9, 2)
    assert train.label_counts == {"PER": 4, "ORG": 3, "LOC": 3, "DISEASE": 3, "PROTEIN": 1, "RISK": 1}
    assert dev.label_counts == {"CHEMICAL": 1, "PER": 1, "DISEASE": 1, "LOC": 1}
    assert report.dev_labels_not_in_train == ["CHEMICAL"]
    assert set(report.low_count_labels) == set(report.labels)  # at most 50 each
    assert report.train.docs_with_label["PER"] == 3
    assert report.labels_in_every_train_doc == []

    assert train.lengths["DISEASE"] == {3: 1, 9: 1, 2: 1}
    assert train.longer_than_max_span_width == {"DISEASE": 1}
    assert train.crossing_sentences == {"DISEASE": 1}
    assert train.punctuation_edges == {"ORG": 1}
    assert train.whitespace_edges == {"PER": 1}

    assert train.overlaps[INSIDE] == {"LOC": 1}
    assert train.overlaps[CONTAINS] == {"ORG": 1}
    assert train.overlaps[CROSSES] == {"DISEASE": 1, "RISK": 1}
    assert train.overlaps[SAME_TOKENS_OTHER_LABEL] == {"PER": 1, "ORG": 1}
    assert train.overlaps[REPEATED] == {"LOC": 1}
    assert not any(+counts for counts in dev.overlaps.values())

    assert {reason: +counts for reason, counts in train.skipped.items() if +counts} == {
        SKIP_MISALIGNED: {"PROTEIN": 1},
        SKIP_TOO_LONG: {"DISEASE": 1},
        SKIP_CROSSES_SEGMENT: {"DISEASE": 1},
        SKIP_WHITESPACE_EDGE: {"PER": 1},
    }
    assert {reason: +counts for reason, counts in dev.skipped.items() if +counts} == {
        SKIP_UNKNOWN_LABEL: {"CHEMICAL": 1}
    }

    descriptions = report.descriptions
    assert descriptions.reads_descriptions
    assert descriptions.without_description == ["RISK"]
    assert descriptions.for_unknown_labels == []
    assert descriptions.max_pieces == 512
    assert descriptions.too_long == {"PROTEIN": TOO_LONG_PIECES}
    assert len(report.errors) == 1 and "PROTEIN (602)" in report.errors[0]


def test_a_shared_description_encoder_is_checked_with_the_transformers_tokenizer(corpus, minilm_path, tmp_path):
    config = Config().from_disk(CONFIGS / "binder_minilm.cfg", interpolate=False)
    config["components"]["binder_ner"]["model"]["type_encoder"] = {"@architectures": "spacy-binder.SharedDescriptionEncoder.v1"}
    config.to_disk(tmp_path / "shared.cfg")
    (report,) = diagnose_config(tmp_path / "shared.cfg", {**path_overrides(corpus), "paths.encoder": minilm_path})
    descriptions = report.descriptions
    assert descriptions.encoder_name == minilm_path and descriptions.max_pieces == 512
    assert descriptions.too_long == {"PROTEIN": TOO_LONG_PIECES}


def test_the_label_embedding_reads_no_descriptions(corpus):
    (report,) = diagnose_config(CONFIGS / "binder_tiny.cfg", path_overrides(corpus))
    assert not report.descriptions.reads_descriptions
    assert report.descriptions.too_long == {}
    assert report.errors == []


def test_a_config_relying_on_spacys_training_defaults(corpus, tmp_path):
    """spacy train fills [training] defaults (train_corpus = "corpora.train"),
    so a config may leave them out; debug-data reads it the same way."""
    config = Config().from_disk(CONFIGS / "binder_tiny.cfg", interpolate=False)
    del config["training"]["train_corpus"], config["training"]["dev_corpus"]
    config.to_disk(tmp_path / "defaults.cfg")
    (report,) = diagnose_config(tmp_path / "defaults.cfg", path_overrides(corpus))
    assert (report.train.n_docs, report.dev.n_docs) == (9, 2)


def test_a_description_of_a_label_not_in_train_is_an_error(corpus, tmp_path):
    descriptions = tmp_path / "descriptions.json"
    descriptions.write_text(json.dumps({"PER": "A person.", "CHEMICAL": "A drug."}), encoding="utf8")
    overrides = {**path_overrides(corpus), "paths.descriptions": str(descriptions)}
    (report,) = diagnose_config(CONFIGS / "binder_tiny.cfg", overrides)
    assert report.descriptions.for_unknown_labels == ["CHEMICAL"]
    assert len(report.errors) == 1 and "CHEMICAL" in report.errors[0]


def debug_data(config: Path, corpus: Path, *options: str) -> subprocess.CompletedProcess:
    overrides = [arg for name, value in path_overrides(corpus).items() for arg in (f"--{name}", value)]
    return subprocess.run(
        # --no-format: one line per message, no icons or colours
        [sys.executable, "-m", "spacy_binder", "debug-data", str(config), *overrides, "--no-format", *options],
        capture_output=True,
        text=True,
        env=offline_env(),
        timeout=600,
    )


def lines_with(output: str, pattern: str) -> List[str]:
    return [line for line in output.splitlines() if re.search(pattern, line)]


def test_the_command_prints_each_defect_and_fails_on_a_too_long_description(corpus, description_config):
    result = debug_data(description_config, corpus)
    out = result.stdout
    assert result.returncode == 1, out + result.stderr
    expected = [
        r"1 train mention\(s\) longer than max_span_width \(8\), never predicted: DISEASE 1$",
        r"1 train mention\(s\) crossing a sentence boundary of the reference: DISEASE 1$",
        r"1 train mention\(s\) starting or ending with punctuation: ORG 1$",
        r"1 train mention\(s\) starting or ending with whitespace: PER 1$",
        rf"1 train mention\(s\) {INSIDE}: LOC 1$",
        rf"1 train mention\(s\) {CONTAINS}: ORG 1$",
        rf"2 train mention\(s\) {CROSSES}: DISEASE 1, RISK 1$",
        rf"2 train mention\(s\) {SAME_TOKENS_OTHER_LABEL}: ORG 1, PER 1$",
        rf"1 train mention\(s\) {re.escape(REPEATED)}: LOC 1$",
        rf"1 train gold mention\(s\) {SKIP_MISALIGNED}: PROTEIN 1$",
        rf"1 train gold mention\(s\) {SKIP_TOO_LONG}: DISEASE 1$",
        rf"1 train gold mention\(s\) {re.escape(SKIP_CROSSES_SEGMENT)}: DISEASE 1$",
        rf"1 train gold mention\(s\) {SKIP_WHITESPACE_EDGE}: PER 1$",
        rf"1 dev gold mention\(s\) {SKIP_UNKNOWN_LABEL}: CHEMICAL 1$",
        r"Dev labels not in the train data \(never predicted\): CHEMICAL 1$",
        r"1 label\(s\) without a description, the component uses the label name: RISK$",
        r"longer than the 512 word pieces .*: PROTEIN \(602\)\.$",
        r"reads at most 512 word pieces; longest description: 602$",
    ]
    for pattern in expected:
        assert len(lines_with(out, pattern)) == 1, (pattern, out)
    assert len(lines_with(out, r"Low number of train mentions for label")) == 6
    assert lines_with(out, r"PER\s+4\s+1\s+3")  # the label table: train, dev, train docs


def test_the_command_exits_0_on_warnings_and_1_with_strict_and_verbose_prints_lengths(corpus):
    config = CONFIGS / "binder_tiny.cfg"
    result = debug_data(config, corpus, "--verbose")
    assert result.returncode == 0, result.stdout + result.stderr
    assert lines_with(result.stdout, r"does not read descriptions")
    assert lines_with(result.stdout, r"^train DISEASE lengths: 2: 1, 3: 1, 9: 1$")
    strict = debug_data(config, corpus, "--strict")
    assert strict.returncode == 1, strict.stdout + strict.stderr
    # the four train skip reasons become errors
    assert lines_with(strict.stdout, r"^4 error\(s\)$")

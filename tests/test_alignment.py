"""`spacy_binder.alignment.align_by_offsets` gives exactly the alignment of
spacy-transformers' `get_alignment_via_offset_mapping` (the reference it
replaces at inference) on texts made to stress it: runs of spaces, newlines
and tabs (spaCy's whitespace tokens), tokens glued without spaces, accents,
emoji, apostrophes, and overlapping windows that repeat tokens."""
import random

import numpy
import pytest
import spacy
from spacy_transformers.align import get_alignment_via_offset_mapping
from spacy_transformers.layers.transformer_model import huggingface_tokenize
from spacy_transformers.span_getters import configure_get_sent_spans, configure_strided_spans
from transformers import AutoTokenizer

from spacy_binder.alignment import align_by_offsets

PIECES = ["IL-2", "receptor", "(", "alpha", ")", "naïve", "T-cells", "Über", "x", ".", "don't", "😀", "résumé", "1,000", "NF-kappaB", "a"]
GAPS = ["", " ", " ", "  ", "\n", "\n\n", "\t", " \n "]


def _random_text(rng: random.Random) -> str:
    return "".join(rng.choice(PIECES) + rng.choice(GAPS) for _ in range(rng.randint(0, 50)))


def _assert_same(spans, tokenizer):
    encoding = huggingface_tokenize(tokenizer, [span.text for span in spans])
    want = get_alignment_via_offset_mapping(spans, encoding["offset_mapping"])
    got = align_by_offsets(spans, encoding["offset_mapping"])
    assert got.lengths.dtype == want.lengths.dtype and got.dataXd.dtype == want.dataXd.dtype
    numpy.testing.assert_array_equal(got.lengths, want.lengths)
    numpy.testing.assert_array_equal(got.dataXd, want.dataXd)


@pytest.fixture(scope="module")
def tokenizer(tiny_bert_path):
    return AutoTokenizer.from_pretrained(tiny_bert_path)


@pytest.mark.parametrize("window,stride", [(3, 2), (8, 6), (20, 20), (40, 16)])
def test_same_alignment_as_spacy_transformers_on_strided_windows(tokenizer, window, stride):
    nlp = spacy.blank("en")
    rng = random.Random(window * 100 + stride)
    get_spans = configure_strided_spans(window, stride)
    checked = 0
    for _ in range(60):
        docs = [nlp(_random_text(rng)) for _ in range(rng.randint(1, 4))]
        spans = [span for doc_spans in get_spans(docs) for span in doc_spans if len(span)]
        if spans:
            _assert_same(spans, tokenizer)
            checked += 1
    assert checked > 40


def test_same_alignment_on_sentences_of_several_docs(tokenizer):
    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer")
    rng = random.Random(7)
    docs = [nlp(" ".join(_random_text(rng) + " ." for _ in range(5))) for _ in range(6)]
    spans = [span for doc_spans in configure_get_sent_spans()(docs) for span in doc_spans]
    assert len(spans) > len(docs)
    _assert_same(spans, tokenizer)


def test_tokens_outside_every_span_get_no_pieces(tokenizer):
    nlp = spacy.blank("en")
    doc = nlp("alpha receptor binds NF-kappaB in T-cells")
    spans = [doc[1:3], doc[5:7]]
    _assert_same(spans, tokenizer)
    encoding = huggingface_tokenize(tokenizer, [span.text for span in spans])
    lengths = align_by_offsets(spans, encoding["offset_mapping"]).lengths
    assert len(lengths) == len(doc)
    assert lengths[0] == 0 and lengths[3] == 0 and lengths[4] == 0
    assert all(lengths[i] > 0 for i in (1, 2, 5, 6))


def test_mismatched_batch_is_an_error(tokenizer):
    doc = spacy.blank("en")("a b c")
    encoding = huggingface_tokenize(tokenizer, ["a b c", "a"])
    with pytest.raises(ValueError, match="Cannot align 1 spans with 2 rows"):
        align_by_offsets([doc[:]], encoding["offset_mapping"])

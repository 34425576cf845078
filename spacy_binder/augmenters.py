"""Training-data augmenters in spaCy's `registry.augmenters`, for a corpus
reader's `augmenter` setting."""
import random
import warnings
from typing import Callable, Iterator, Optional

from spacy.language import Language
from spacy.tokens import Span
from spacy.training import Example
from spacy.util import registry

from .spans import sentence_gold_doc

NO_SENTENCES_WARNING = (
    "spacy-binder.with_sentences.v1: a training doc has no sentence boundaries in its "
    "reference, so it is given whole only. Set sentence starts when converting the "
    "corpus (token.is_sent_start) to train on its sentences alone too."
)
CROSSING_WARNING = (
    "spacy-binder.with_sentences.v1: a gold entity or span crosses a sentence boundary, "
    "so the sentences it overlaps are not given alone (the whole doc still is). "
    "`python -m spacy_binder debug-data CONFIG` counts such mentions per label."
)


class SentenceAugmenter:
    """Yields each training example as it is and then, for a `level` share of
    the docs with more than one sentence, every sentence of it as an example
    of its own. A model trained on whole documents then also sees their
    sentences without the context around them, which is what it gets when
    users give it lines or sentences one by one.

    A sentence is never cut through a gold mention: one that a gold entity
    or span crosses is left out (counted in `sentences_skipped`, with a
    warning); the whole doc keeps it.
    """

    def __init__(self, level: float = 1.0):
        if not 0.0 <= level <= 1.0:
            raise ValueError(f"with_sentences level must be between 0 and 1, got {level}.")
        self.level = level
        self.sentences_given = 0
        self.sentences_skipped = 0
        self.docs_without_sentences = 0

    def __call__(self, nlp: Language, example: Example) -> Iterator[Example]:
        yield example
        reference = example.reference
        if len(reference) == 0 or random.random() >= self.level:
            return
        if not reference.has_annotation("SENT_START"):
            self.docs_without_sentences += 1
            warnings.warn(NO_SENTENCES_WARNING)
            return
        sentences = list(reference.sents)
        if len(sentences) < 2:
            return
        for sentence in sentences:
            sentence_example = self._sentence_example(nlp, example, sentence)
            if sentence_example is None:
                self.sentences_skipped += 1
                warnings.warn(CROSSING_WARNING)
                continue
            self.sentences_given += 1
            yield sentence_example

    @staticmethod
    def _sentence_example(nlp: Language, example: Example, sentence: Span) -> Optional[Example]:
        sentence_reference, cut = sentence_gold_doc(sentence)
        if cut:
            return None
        # Keep the example's own tokenization (re-tokenized or gold) where it
        # splits at the sentence's edges; else tokenize as the corpus reader does.
        predicted_span = example.predicted.char_span(sentence.start_char, sentence.end_char)
        if predicted_span is not None and predicted_span.text == sentence.text:
            predicted = predicted_span.as_doc()
        else:
            predicted = nlp.make_doc(sentence_reference.text)
        return Example(predicted, sentence_reference)


@registry.augmenters("spacy-binder.with_sentences.v1")
def create_sentence_augmenter(level: float = 1.0) -> Callable[[Language, Example], Iterator[Example]]:
    """Give the model every multi-sentence training doc whole and, for a
    `level` share of them, each of its sentences alone as well."""
    return SentenceAugmenter(level)

"""Small pipelines and hand-made corpora shared by the tests."""
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy
import pytest

import spacy
from spacy.language import Language
from spacy.tokens import Doc, Span
from spacy.training import Example


def gpu_available() -> bool:
    """A CUDA GPU that both cupy (thinc's ops) and torch can use."""
    import torch
    from thinc.util import has_cupy_gpu

    return bool(has_cupy_gpu) and torch.cuda.is_available()


# CI machines have no GPU; these tests run where one is visible.
requires_gpu = pytest.mark.skipif(not gpu_available(), reason="needs a CUDA GPU visible to cupy and torch")

CNN_TEXT_ENCODER = {
    "@architectures": "spacy.HashEmbedCNN.v2",
    "width": 48,
    "depth": 2,
    "embed_size": 300,
    "window_size": 1,
    "maxout_pieces": 2,
    "subword_features": True,
    "pretrained_vectors": None,
}

# (words, [(start, end, label)]): overlapping mentions of different types
NESTED_DATA: List[Tuple[str, List[Tuple[int, int, str]]]] = [
    ("the University of Paris hired Anna Berg", [(1, 4, "ORG"), (3, 4, "LOC"), (5, 7, "PER")]),
    ("Anna Berg Foundation gave money to Oslo", [(0, 3, "ORG"), (0, 2, "PER"), (6, 7, "LOC")]),
    ("she moved from Oslo to the Bank of Rome", [(3, 4, "LOC"), (6, 9, "ORG"), (8, 9, "LOC")]),
    ("nothing to see here today", []),
]
FLAT_DATA: List[Tuple[str, List[Tuple[int, int, str]]]] = [
    ("Mark Olsen visited Berlin in May", [(0, 2, "PER"), (3, 4, "LOC")]),
    ("Berlin hosted Mark Olsen", [(0, 1, "LOC"), (2, 4, "PER")]),
    ("a quiet day", []),
]
DESCRIPTIONS = {
    "PER": "A person, named by a first and a last name.",
    "ORG": "An organisation such as a university, a bank or a foundation.",
    "LOC": "A place: a city, a country or a region.",
}


def make_examples(
    nlp: Language, data, *, spans_key: Optional[str] = "sc"
) -> List[Example]:
    """Examples whose gold is in reference.spans[spans_key], or in
    reference.ents when spans_key is None."""
    examples = []
    for text, spans in data:
        words = text.split()
        reference = Doc(nlp.vocab, words=words)
        gold = [Span(reference, s, e, label=label) for s, e, label in spans]
        if spans_key is None:
            reference.ents = gold
        else:
            reference.spans[spans_key] = gold
        examples.append(Example(Doc(nlp.vocab, words=words), reference))
    return examples


def cnn_pipeline(**component_config) -> Language:
    """A blank pipeline with binder_ner over an inline CNN and label embeddings."""
    nlp = spacy.blank("en")
    config = {
        "max_span_width": 4,
        "model": {
            "@architectures": "spacy-binder.BinderModel.v1",
            "projection_size": 32,
            "width_embedding_size": 16,
            "dropout": 0.0,
            "text_encoder": CNN_TEXT_ENCODER,
            "type_encoder": {"@architectures": "spacy-binder.LabelEmbeddingEncoder.v1", "width": 32},
        },
    }
    config.update(component_config)
    nlp.add_pipe("binder_ner", config=config)
    return nlp


def transformer_pipeline(model_path: str, *, window: int = 16, stride: int = 12, **component_config) -> Language:
    """transformer + binder_ner listening to it, with a description encoder
    that starts from the same checkpoint."""
    nlp = spacy.blank("en")
    nlp.add_pipe(
        "transformer",
        config={
            "model": {
                "name": model_path,
                "get_spans": {
                    "@span_getters": "spacy-transformers.strided_spans.v1",
                    "window": window,
                    "stride": stride,
                },
            }
        },
    )
    config = {"max_span_width": 4, "model": {"projection_size": 32, "width_embedding_size": 16, "dropout": 0.0}}
    config.update(component_config)
    nlp.add_pipe("binder_ner", config=config)
    return nlp


def train(nlp: Language, examples: List[Example], n_updates: int, **init_settings) -> Dict[str, float]:
    """Initialize (with `init_settings` for binder_ner, e.g. descriptions)
    and update on `examples` n_updates times."""
    if init_settings:
        nlp.config["initialize"]["components"]["binder_ner"] = init_settings
    optimizer = nlp.initialize(lambda: examples)
    optimizer.learn_rate = 0.01 if "transformer" not in nlp.pipe_names else 0.003
    losses: Dict[str, float] = {}
    for _ in range(n_updates):
        losses = update(nlp, examples, optimizer)
    return losses


def update(nlp: Language, examples: List[Example], optimizer) -> Dict[str, float]:
    """One step as `spacy train` takes it: every component backpropagates
    first, then every component applies its gradient (a transformer gets its
    gradient from its listeners only after its own update returned)."""
    losses = nlp.update(examples, sgd=False)
    for _, proc in nlp.pipeline:
        if getattr(proc, "is_trainable", False):
            proc.finish_update(optimizer)
    return losses


def span_tuples(doc: Doc, key: str = "sc"):
    return [(s.start, s.end, s.label_) for s in doc.spans[key]]


def predictions(nlp: Language, texts: List[str], key: str = "sc") -> List[dict]:
    """{"spans": [(start, end, label)], "scores": [...]} of doc.spans[key] per text."""
    return [
        {"spans": span_tuples(doc, key), "scores": doc.spans[key].attrs["scores"].tolist()}
        for doc in nlp.pipe(texts)
    ]


PREDICT_SCRIPT = """
import json, sys, spacy
if sys.argv[3] == "gpu":
    spacy.require_gpu(0)
nlp = spacy.load(sys.argv[1])
out = [
    {"spans": [[s.start, s.end, s.label_] for s in d.spans["sc"]], "scores": d.spans["sc"].attrs["scores"].tolist()}
    for d in nlp.pipe(json.loads(sys.argv[2]))
]
print(json.dumps(out))
"""


def predictions_in_subprocess(path: Path, texts: List[str], device: str = "default") -> List[dict]:
    """`predictions` of the saved pipeline at `path` (doc.spans["sc"]), loaded
    in a fresh process with the hub offline. device: 'default' (thinc's
    default, the CPU), 'cpu' (no GPU visible at all) or 'gpu'."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    if device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
    result = subprocess.run(
        [sys.executable, "-c", PREDICT_SCRIPT, str(path), json.dumps(texts), device],
        capture_output=True, text=True, env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def check_invariants(doc: Doc, key: str = "sc") -> None:
    """The output contract of binder_ner on one doc."""
    group = doc.spans[key]
    scores = group.attrs["scores"]
    assert len(scores) == len(group)
    assert numpy.all((scores > 0) & (scores < 1))
    keys = [(s.start, s.end, s.label_) for s in group]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)
    assert all(0 <= s.start < s.end <= len(doc) for s in group)
    if doc.has_annotation("SENT_START"):
        assert all(s.start >= s.sent.start and s.end <= s.sent.end for s in group)
    ents = list(doc.ents)
    assert all(a.end <= b.start for a, b in zip(ents, ents[1:]))
    assert {(e.start, e.end, e.label_) for e in ents} <= set(keys)

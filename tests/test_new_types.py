"""Adding types to a trained pipeline with spacy train: docs annotated for
some labels only train only those labels' "no entity here" rows, and
configs/binder_add_types.cfg fine-tunes a trained pipeline with new types."""
import subprocess
import sys
from pathlib import Path

import numpy
import pytest
import spacy
import srsly
import torch
from spacy.tokens import Doc, DocBin, Span
from spacy.training import Example
from spacy.util import fix_random_seed

from spacy_binder.new_types import (
    ANNOTATED_LABELS, MISSING_LABELS, annotated_label_set, create_new_types_corpus, label_old_types,
    make_add_types_callback, make_freeze_lower_layers_callback,
)  # fmt: skip
from spacy_binder.spans import align_gold, enumerate_candidates
from spacy_binder.torch_binder import BinderScores, LossWeights, binder_loss
from util import DESCRIPTIONS, NESTED_DATA, cnn_pipeline, make_examples, offline_env, train, transformer_pipeline

CONFIG = Path(__file__).parent.parent / "configs" / "binder_add_types.cfg"
LABELS = ["LOC", "ORG", "PER"]
DATE = "A calendar date: a day, a month or a year."
# (words, gold): a sentence with a date, the date its only annotation
DATE_DATA = [
    ("Anna Berg came to Oslo in May 2020", [(5, 6, "DATE"), (6, 7, "DATE")]),
    ("the Bank of Rome opened on 4 June", [(5, 7, "DATE")]),
    ("in 1999 the University of Paris hired her", [(1, 2, "DATE")]),
]


def docs_with_sentences(vocab, sentences) -> Doc:
    words = [w for s in sentences for w in s.split()]
    doc = Doc(vocab, words=words, sent_starts=[i == 0 for s in sentences for i, _ in enumerate(s.split())])
    return doc


def test_a_doc_says_which_labels_it_is_annotated_for():
    vocab = spacy.blank("en").vocab
    doc = Doc(vocab, words=["a", "b"])
    assert annotated_label_set(doc, LABELS) is None
    doc.user_data[ANNOTATED_LABELS] = ["PER", "DATE"]  # DATE: not a label of this component
    assert annotated_label_set(doc, LABELS) == {"PER"}
    del doc.user_data[ANNOTATED_LABELS]
    doc.user_data[MISSING_LABELS] = ["PER"]
    assert annotated_label_set(doc, LABELS) == {"LOC", "ORG"}
    doc.user_data[ANNOTATED_LABELS] = ["PER"]
    with pytest.raises(ValueError, match="both"):
        annotated_label_set(doc, LABELS)
    doc = Doc(vocab, words=["a"], user_data={MISSING_LABELS: "PER"})
    with pytest.raises(ValueError, match="list of labels"):
        annotated_label_set(doc, LABELS)


def test_alignment_marks_the_rows_of_each_docs_segments():
    nlp = spacy.blank("en")
    # doc 0: two sentences (two segments), annotated for PER only;
    # doc 1: one sentence, no mark; doc 2: empty; doc 3: missing ORG
    docs = [
        docs_with_sentences(nlp.vocab, ["Anna Berg left .", "She came back ."]),
        docs_with_sentences(nlp.vocab, ["Oslo is cold ."]),
        Doc(nlp.vocab, words=[]),
        docs_with_sentences(nlp.vocab, ["the Bank of Rome ."]),
    ]
    references = [doc.copy() for doc in docs]
    references[0].user_data[ANNOTATED_LABELS] = ["PER"]
    references[3].user_data[MISSING_LABELS] = ["ORG"]
    examples = [Example(doc, ref) for doc, ref in zip(docs, references)]
    batch = enumerate_candidates(docs, max_span_width=3)
    assert batch.n_segments == 4
    gold = align_gold(examples, batch, {label: i for i, label in enumerate(LABELS)}, "sc", 3)
    expected = numpy.array(
        [[False, False, True], [False, False, True], [True, True, True], [True, False, True]]
    )
    numpy.testing.assert_array_equal(gold.annotated, expected)
    unmarked = [Example(doc, doc.copy()) for doc in docs]
    assert align_gold(unmarked, batch, {label: i for i, label in enumerate(LABELS)}, "sc", 3).annotated is None
    # sentences cut at 2 tokens: each 4-token sentence gives 2 segments,
    # doc 3's 5 tokens give 3
    cut = enumerate_candidates(docs, max_span_width=2, max_segment_length=2)
    assert cut.n_segments == 9
    gold = align_gold(examples, cut, {label: i for i, label in enumerate(LABELS)}, "sc", 2)
    numpy.testing.assert_array_equal(gold.annotated, numpy.repeat(expected, [2, 2, 2, 3], axis=0))


def test_unannotated_rows_give_their_items_no_gradient():
    """Two segments, two types: type 1 is not annotated in segment 0, so no
    item of segment 0 gets a gradient in type 1's column, while every other
    (segment, type) still trains; with every row annotated, they all do. A
    gold mention of type 1 in segment 0 trains its own score and the anchor,
    not the unlabelled items next to it."""
    generator = torch.Generator().manual_seed(0)
    n_tokens, n_types = 6, 2
    token_segments = torch.tensor([0, 0, 0, 1, 1, 1])
    starts = torch.tensor([0, 0, 1, 3, 3, 4])
    ends = torch.tensor([0, 1, 1, 3, 4, 4])
    span_segments = token_segments[starts]

    def gradients(annotated, gold_spans=(1,), gold_types=(0,)):
        scores = BinderScores(
            start=torch.randn(n_tokens, n_types, generator=generator).requires_grad_(),
            end=torch.randn(n_tokens, n_types, generator=generator).requires_grad_(),
            span=torch.randn(len(starts), n_types, generator=generator).requires_grad_(),
            anchor=torch.randn(2, 3, n_types, generator=generator).requires_grad_(),
        )
        loss, _ = binder_loss(
            scores, token_segments=token_segments, span_starts=starts, span_ends=ends, span_segments=span_segments,
            gold_spans=torch.tensor(gold_spans), gold_types=torch.tensor(gold_types), weights=LossWeights(), annotated=annotated,
        )  # fmt: skip
        loss.backward()
        return scores

    masked = gradients(torch.tensor([[True, False], [True, True]]))
    assert torch.all(masked.span.grad[:3, 1] == 0) and torch.all(masked.start.grad[:3, 1] == 0)
    assert torch.all(masked.anchor.grad[0, :, 1] == 0)
    assert torch.all(masked.span.grad[3:, 1] != 0) and torch.all(masked.span.grad[:, 0] != 0)
    full = gradients(None)
    assert torch.all(full.span.grad[:3, 1] != 0)
    # gold (span 2, type 1) in the masked row: only span 2 and the anchor move
    gold_in_masked = gradients(torch.tensor([[True, False], [True, True]]), (1, 2), (0, 1))
    assert gold_in_masked.span.grad[2, 1] < 0 and gold_in_masked.anchor.grad[0, 2, 1] > 0
    assert torch.all(gold_in_masked.span.grad[:2, 1] == 0)
    assert torch.all(gold_in_masked.start.grad[:3, 1][torch.tensor([True, False, True])] == 0)


def test_the_component_leaves_the_unannotated_columns_of_a_marked_doc_untrained():
    """Through BinderNER.get_loss: doc 0 is marked as annotated for PER only,
    doc 1 is not marked. Doc 0's candidates get no gradient in the LOC and
    ORG columns and some in PER's; doc 1's get some in every column."""
    fix_random_seed(0)
    nlp = cnn_pipeline()
    nlp.initialize(lambda: make_examples(nlp, NESTED_DATA))
    binder = nlp.get_pipe("binder_ner")
    assert list(binder.labels) == LABELS
    # doc 0 as new-type data has it: its PER gold only
    (text, gold), other = NESTED_DATA[0], NESTED_DATA[1]
    examples = make_examples(nlp, [(text, [g for g in gold if g[2] == "PER"]), other])
    examples[0].reference.user_data[ANNOTATED_LABELS] = ["PER"]
    output, _ = binder.model.begin_update([eg.predicted for eg in examples])
    _, d_output = binder.get_loss(examples, output)
    span_doc = output.candidates.span_docs(output.candidates.span_starts)
    d_span = binder.model.ops.to_numpy(d_output.scores.span)
    assert numpy.all(d_span[span_doc == 0][:, :2] == 0) and numpy.any(d_span[span_doc == 0][:, 2] != 0)
    assert numpy.all(numpy.any(d_span[span_doc == 1] != 0, axis=0))


def write_docbin(nlp, data, path: Path, spans_key="sc") -> Path:
    docs = [eg.reference for eg in make_examples(nlp, data, spans_key=spans_key)]
    DocBin(docs=docs, store_user_data=True).to_disk(path)
    return path


@pytest.fixture
def new_types_files(tmp_path):
    """A blank nlp, new_types.json (DATE), new DATE examples and old nested ones."""
    nlp = spacy.blank("en")
    new_types = tmp_path / "new_types.json"
    srsly.write_json(new_types, {"DATE": DATE})
    new = write_docbin(nlp, DATE_DATA, tmp_path / "new.spacy")
    old = write_docbin(nlp, NESTED_DATA, tmp_path / "old.spacy")
    return nlp, new_types, new, old


def test_new_types_corpus_marks_new_and_rehearsal_examples(new_types_files, tmp_path):
    nlp, new_types, new, old = new_types_files
    examples = list(create_new_types_corpus(new, new_types, rehearsal_path=old, rehearsal_limit=2)(nlp))
    assert len(examples) == len(DATE_DATA) + 2
    for eg in examples[: len(DATE_DATA)]:
        assert eg.reference.user_data[ANNOTATED_LABELS] == ["DATE"]
        assert annotated_label_set(eg.reference, LABELS + ["DATE"]) == {"DATE"}
    for eg in examples[len(DATE_DATA) :]:
        assert annotated_label_set(eg.reference, LABELS + ["DATE"]) == set(LABELS)
    assert len(list(create_new_types_corpus(new, new_types, rehearsal_path=old)(nlp))) == len(DATE_DATA) + len(NESTED_DATA)
    with pytest.raises(ValueError, match="new_types"):
        create_new_types_corpus(new, None)
    empty = tmp_path / "empty.spacy"
    DocBin().to_disk(empty)
    with pytest.raises(ValueError, match="no examples"):
        list(create_new_types_corpus(empty, new_types)(nlp))


def test_new_repeats_reads_each_new_example_again_as_a_copy(new_types_files):
    """new_repeats=3: every new example three times (its own Docs each
    time, same words, gold and marks), the rehearsal docs once."""
    nlp, new_types, new, old = new_types_files
    examples = list(create_new_types_corpus(new, new_types, rehearsal_path=old, new_repeats=3)(nlp))
    assert len(examples) == 3 * len(DATE_DATA) + len(NESTED_DATA)

    def content(eg):
        gold = tuple((s.start, s.end, s.label_) for s in eg.reference.spans["sc"])
        starts = tuple(t.is_sent_start for t in eg.reference)
        marks = tuple(eg.reference.user_data[ANNOTATED_LABELS])
        return eg.predicted.text, eg.reference.text, gold, starts, marks

    firsts = examples[: len(DATE_DATA)]
    for repeat in range(1, 3):
        copies = examples[repeat * len(DATE_DATA) : (repeat + 1) * len(DATE_DATA)]
        assert [content(eg) for eg in copies] == [content(eg) for eg in firsts]
        assert all(c.reference is not f.reference and c.predicted is not f.predicted for c, f in zip(copies, firsts))
    assert [len(eg.reference.spans["sc"]) for eg in firsts] == [len(gold) for _, gold in DATE_DATA]
    with pytest.raises(ValueError, match="new_repeats"):
        create_new_types_corpus(new, new_types, new_repeats=0)


@pytest.fixture(scope="module")
def trained(tiny_bert_path, tmp_path_factory):
    """A transformer pipeline (the shipped shape) trained on LOC, ORG and
    PER, saved, with a folder of corpora for adding DATE."""
    fix_random_seed(0)
    nlp = transformer_pipeline(tiny_bert_path, segments=True, max_segment_length=16, shared_descriptions=True)
    train(nlp, make_examples(nlp, NESTED_DATA), 20, descriptions=DESCRIPTIONS)
    folder = tmp_path_factory.mktemp("add_types")
    nlp.to_disk(folder / "trained")
    srsly.write_json(folder / "new_types.json", {"DATE": DATE})
    write_docbin(nlp, DATE_DATA, folder / "new.spacy")
    write_docbin(nlp, NESTED_DATA, folder / "old.spacy")
    write_docbin(nlp, NESTED_DATA + DATE_DATA, folder / "dev.spacy")
    return folder


def old_type_predictions(nlp, words: list) -> set:
    """What the trained pipeline predicts on these tokens, nested output."""
    doc = nlp(Doc(nlp.vocab, words=words))
    return {(s.start, s.end, s.label_) for s in doc.spans["sc"]}


def test_new_examples_get_the_old_types_the_pipeline_predicts(trained):
    """old_types_from: each DATE-only example gets the trained pipeline's
    own LOC/ORG/PER spans on its tokens next to its DATE gold, and is then
    annotated for all four labels. A prediction on the tokens of a DATE
    mention is left out: the gold wins."""
    nlp = spacy.blank("en")
    texts = [NESTED_DATA[2][0], NESTED_DATA[0][0], NESTED_DATA[1][0]]
    pipeline = spacy.load(trained / "trained")
    expected = [old_type_predictions(pipeline, text.split()) for text in texts]
    assert len(expected[0]) >= 2, "the trained pipeline should predict old types on its own training text"
    # a DATE gold mention (made up) on the tokens of one prediction
    clash = sorted(expected[0])[0]
    data = [(texts[0], [(clash[0], clash[1], "DATE")])] + [(text, []) for text in texts[1:]]
    new = write_docbin(nlp, data, trained / "new_clash.spacy")
    read = create_new_types_corpus(new, trained / "new_types.json", old_types_from=trained / "trained")
    examples = list(read(nlp))
    assert len(examples) == 3
    for eg, predicted, (_, gold) in zip(examples, expected, data):
        got = {(s.start, s.end, s.label_) for s in eg.reference.spans["sc"]}
        assert got == {g for g in predicted if (g[0], g[1]) not in {(s, e) for s, e, _ in gold}} | set(gold)
        assert annotated_label_set(eg.reference, LABELS + ["DATE"]) == set(LABELS + ["DATE"])
    assert clash not in {(s.start, s.end, s.label_) for s in examples[0].reference.spans["sc"]}
    assert len(examples[0].reference.spans["sc"]) == len(expected[0])  # the DATE instead of the clash


def test_flat_new_examples_get_old_ents_that_do_not_overlap_gold(trained):
    """A flat reference (gold in doc.ents) gets the pipeline's doc.ents of the
    old types; one overlapping a DATE mention is left out and counted, and
    the DATE mention stays."""
    pipeline = spacy.load(trained / "trained")
    words = NESTED_DATA[2][0].split()
    predicted = pipeline(Doc(pipeline.vocab, words=words))
    assert len(predicted.ents) >= 2, "the trained pipeline should predict on its own training text"
    first = predicted.ents[0]
    reference = Doc(pipeline.vocab, words=words)
    reference.ents = [Span(reference, first.start, first.start + 1, label="DATE")]
    counts = label_old_types(pipeline, [reference], ["DATE"])
    others = [(e.start, e.end, e.label_) for e in predicted.ents[1:]]
    assert [(e.start, e.end, e.label_) for e in reference.ents] == [(first.start, first.start + 1, "DATE")] + others
    assert counts["left out"] == 1 and sum(v for k, v in counts.items() if k != "left out") == len(others)
    assert reference.user_data[ANNOTATED_LABELS] == sorted(LABELS + ["DATE"])
    with pytest.raises(ValueError, match="already has the new types"):
        label_old_types(pipeline, [Doc(pipeline.vocab, words=["a"])], ["PER"])


def test_a_pipeline_without_span_output_labels_nested_references_with_its_ents(trained):
    pipeline = spacy.load(trained / "trained", config={"components": {"binder_ner": {"set_spans": False}}})
    words = NESTED_DATA[2][0].split()
    ents = {(e.start, e.end, e.label_) for e in pipeline(Doc(pipeline.vocab, words=words)).ents}
    assert ents, "the trained pipeline should predict on its own training text"
    reference = Doc(pipeline.vocab, words=words)
    reference.spans["sc"] = []
    label_old_types(pipeline, [reference], ["DATE"])
    assert {(s.start, s.end, s.label_) for s in reference.spans["sc"]} == ents


def test_add_types_callback_adds_the_new_types_only(trained):
    nlp = spacy.load(trained / "trained")
    add_types = make_add_types_callback(trained / "new_types.json")
    add_types(nlp)
    binder = nlp.get_pipe("binder_ner")
    assert list(binder.labels) == LABELS + ["DATE"]
    assert binder.descriptions["DATE"] == DATE
    assert "DATE" not in binder.trained_labels
    with pytest.raises(ValueError, match="already types"):
        add_types(nlp)
    with pytest.raises(ValueError, match="no component 'ner'"):
        make_add_types_callback(trained / "new_types.json", component="ner")(spacy.load(trained / "trained"))


def test_add_types_links_the_descriptions_to_the_new_pipelines_transformer(trained):
    """binder_ner sourced from one loaded copy, the transformer from another
    (as spacy train sources them, the pipelines they came from then gone):
    after the callback the descriptions are read by this pipeline's
    transformer, not by the one binder_ner was loaded with."""
    nlp = spacy.blank("en")
    nlp.add_pipe("transformer", source=spacy.load(trained / "trained"))
    nlp.add_pipe("binder_ner", source=spacy.load(trained / "trained"))
    type_encoder = nlp.get_pipe("binder_ner").model.get_ref("type_encoder")
    make_add_types_callback(trained / "new_types.json")(nlp)
    assert type_encoder.attrs["transformer"] is nlp.get_pipe("transformer").model


@pytest.mark.slow
@pytest.mark.parametrize("label_old_types", [False, True])
def test_spacy_train_adds_a_type_and_the_result_reloads(trained, tmp_path, tiny_bert_path, label_old_types):
    """configs/binder_add_types.cfg as documented: both components sourced,
    DATE added by its description, trained on DATE-only docs with the old
    data rehearsed (and the old types labelled in them by the pipeline, or
    not); the saved pipeline has the old and the new labels, DATE trained,
    and predicts after a reload in a fresh process."""
    output = tmp_path / "added"
    # the default labels them with paths.pipeline
    labelling = [] if label_old_types else ["--corpora.train.old_types_from", "null"]
    result = subprocess.run(
        [
            sys.executable, "-m", "spacy", "train", str(CONFIG), "--output", str(output),
            "--paths.pipeline", str(trained / "trained"), "--paths.new_types", str(trained / "new_types.json"),
            "--paths.train", str(trained / "new.spacy"), "--paths.dev", str(trained / "dev.spacy"),
            "--paths.rehearsal", str(trained / "old.spacy"), *labelling,
            "--training.max_steps", "6", "--training.eval_frequency", "3", "--training.batcher.size", "200",
        ],
        capture_output=True, text=True, env=offline_env(), timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert ("Old types labelled by" in result.stdout) == label_old_types, result.stdout[-3000:]
    script = (
        "import json, sys, spacy\n"
        "nlp = spacy.load(sys.argv[1])\n"
        "binder = nlp.get_pipe('binder_ner')\n"
        "doc = nlp('Anna Berg came to Oslo in May 2020')\n"
        "print(json.dumps({'labels': list(binder.labels), 'trained': list(binder.trained_labels),\n"
        "    'date': binder.descriptions['DATE'], 'scores': len(doc.spans['sc'].attrs['scores']) == len(doc.spans['sc'])}))\n"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", script, str(output / "model-last")], capture_output=True, text=True, env=offline_env()
    )
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    state = srsly.json_loads(loaded.stdout.strip().splitlines()[-1])
    assert state == {"labels": LABELS + ["DATE"], "trained": LABELS + ["DATE"], "date": DATE, "scores": True}


def test_freezing_lower_layers_keeps_them_through_updates(trained):
    """freeze_lower_layers.v1 with layers=1 on the 2-layer tiny BERT: the
    embeddings and layer 0 are exactly as before after updates, layer 1
    moves."""
    nlp = spacy.load(trained / "trained")
    make_freeze_lower_layers_callback(layers=1)(nlp)
    (bert,) = [shim._model for node in nlp.get_pipe("transformer").model.walk() for shim in node.shims]
    before = {name: param.detach().clone() for name, param in bert.named_parameters()}
    examples = make_examples(nlp, NESTED_DATA)
    optimizer = nlp.resume_training()
    optimizer.learn_rate = 0.003
    for _ in range(3):
        nlp.update(examples, sgd=optimizer)
    moved = {name for name, param in bert.named_parameters() if not torch.equal(param, before[name])}
    frozen = {name for name in before if name.startswith(("embeddings.", "encoder.layer.0."))}
    assert frozen and not moved & frozen
    assert any(name.startswith("encoder.layer.1.") for name in moved)


def test_freezing_more_layers_than_the_model_has_is_an_error(trained):
    nlp = spacy.load(trained / "trained")
    for layers in (2, 3):  # all of them would leave the transformer's output without a gradient
        with pytest.raises(ValueError, match="has 2 layers"):
            make_freeze_lower_layers_callback(layers=layers)(nlp)
    with pytest.raises(ValueError, match="set `component` to the transformer"):
        make_freeze_lower_layers_callback(component="binder_ner", layers=1)(nlp)
    with pytest.raises(ValueError, match="no component 'encoder'"):
        make_freeze_lower_layers_callback(component="encoder", layers=1)(nlp)

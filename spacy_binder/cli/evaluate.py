"""`python -m spacy_binder evaluate`: `spacy evaluate`, with binder_ner's
output rendered. spaCy's --displacy-path renders components of its own
`ner`, `parser` and `spancat` factories only, so for binder_ner it writes
nothing; this command scores with spaCy's `evaluate` and writes the
entity view and the span view (each span's score after its label)."""
from pathlib import Path
from typing import List, Optional

import typer
from spacy import displacy, util
from spacy.cli._util import import_code, setup_gpu
from spacy.cli.evaluate import evaluate
from spacy.tokens import Doc, DocBin
from wasabi import msg

from ..display import span_view_with_scores
from . import app


def render_binder_views(docs: List[Doc], output_dir: Path, spans_key: str = "sc") -> List[Path]:
    """Write displaCy's entity view (`entities.html`, doc.ents) and span view
    (`spans.html`, doc.spans[spans_key] with scores), the file names of
    `spacy evaluate --displacy-path`.

    docs (List[Doc]): predicted docs.
    output_dir (Path): an existing folder.
    spans_key (str): the span group to show.
    RETURNS (List[Path]): the files written.
    """
    entities = output_dir / "entities.html"
    entities.write_text(displacy.render(docs, style="ent", page=True, jupyter=False), encoding="utf8")
    spans = output_dir / "spans.html"
    views = [span_view_with_scores(doc, spans_key) for doc in docs]
    spans.write_text(
        displacy.render(views, style="span", manual=True, page=True, jupyter=False, options={"spans_key": spans_key}),
        encoding="utf8",
    )
    return [entities, spans]


def _reference_tokens(reference: Doc) -> Doc:
    """A doc with the reference's tokens and nothing else."""
    return Doc(reference.vocab, words=[t.text for t in reference], spaces=[bool(t.whitespace_) for t in reference])


@app.command("evaluate")
def evaluate_cli(
    # fmt: off
    model: str = typer.Argument(..., help="Pipeline name or path"),
    data_path: Path = typer.Argument(..., help="Evaluation data (.spacy)", exists=True, dir_okay=False),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Output JSON file for metrics", dir_okay=False),
    code_path: Optional[Path] = typer.Option(None, "--code", "-c", help="Python file with additional code to import"),
    use_gpu: int = typer.Option(-1, "--gpu-id", "-g", help="GPU ID or -1 for CPU"),
    gold_preproc: bool = typer.Option(False, "--gold-preproc", "-G", help="Use gold preprocessing"),
    displacy_path: Optional[Path] = typer.Option(None, "--displacy-path", "-dp", help="Folder for entities.html and spans.html", exists=True, file_okay=False),
    displacy_limit: int = typer.Option(25, "--displacy-limit", "-dl", help="Number of docs to render"),
    per_component: bool = typer.Option(False, "--per-component", "-P", help="Scores per component (with --output)"),
    spans_key: str = typer.Option("sc", "--spans-key", "-sk", help="Spans key to score and show"),
    # fmt: on
) -> None:
    """Score a pipeline as `spacy evaluate` does (same options), and with
    --displacy-path render its doc.ents and its doc.spans with scores."""
    import_code(code_path)
    evaluate(
        model,
        data_path,
        output=output,
        use_gpu=use_gpu,
        gold_preproc=gold_preproc,
        per_component=per_component,
        silent=False,
        spans_key=spans_key,
    )
    if displacy_path is not None:
        setup_gpu(use_gpu, silent=True)
        nlp = util.load_model(model)
        references = list(DocBin().from_disk(data_path).get_docs(nlp.vocab))[:displacy_limit]
        if not references:
            msg.fail(f"No docs to render in {data_path}", exits=1)
        # the docs as they were scored: the reference's tokens with --gold-preproc
        inputs = [_reference_tokens(ref) if gold_preproc else ref.text for ref in references]
        written = render_binder_views(list(nlp.pipe(inputs)), displacy_path, spans_key)
        msg.good(f"Rendered {len(references)} docs", ", ".join(str(path) for path in written))

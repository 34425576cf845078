"""`python -m spacy_binder quantize`: a trained pipeline with int8 transformers,
for faster CPU inference (see `spacy_binder.int8`)."""
from itertools import islice
from pathlib import Path
from typing import Optional

import spacy
import typer
from spacy.cli._util import import_code
from spacy.tokens import DocBin
from wasabi import msg

from ..int8 import DEFAULT_SMOOTHING, folder_mb, full_range_activations, quantize_pipeline
from . import app


@app.command("quantize")
def quantize_cli(
    # fmt: off
    pipeline: str = typer.Argument(..., help="Trained pipeline: folder or installed package name"),
    output_path: Path = typer.Argument(..., help="Folder for the int8 pipeline", file_okay=False),
    calibration_path: Optional[Path] = typer.Option(None, "--calibration", help="Docs (.spacy) like those the pipeline will see, e.g. its training data: their texts calibrate the smoothing of each layer's inputs (recommended)", exists=True, dir_okay=False),
    calibration_docs: int = typer.Option(300, "--calibration-docs", help="How many docs of --calibration to read (the first ones)", min=1),
    smoothing: float = typer.Option(DEFAULT_SMOOTHING, "--smoothing", help="SmoothQuant's alpha in [0, 1], with --calibration", min=0.0, max=1.0),
    code_path: Optional[Path] = typer.Option(None, "--code", "-c", help="Python file with additional code to import", exists=True, dir_okay=False),
    # fmt: on
) -> None:
    """Quantize the pipeline's transformers (the text encoder and binder_ner's
    description encoder) to int8 with PyTorch dynamic quantization and save
    it. With --calibration, each layer's inputs are smoothed first
    (SmoothQuant), which wins back most of what 7-bit activations lose on
    CPUs without AVX512-VNNI. The result loads
    with spacy.load and packages with spacy package; it runs on the CPU only
    and cannot be trained further."""
    import_code(code_path)
    if output_path.exists() and any(output_path.iterdir()):
        msg.fail(f"{output_path} exists and is not empty: give a new folder.", exits=1)
    nlp = spacy.load(pipeline)
    texts = None
    if calibration_path is not None:
        docs = DocBin().from_disk(calibration_path).get_docs(nlp.vocab)
        texts = [doc.text for doc in islice(docs, calibration_docs)]
    elif not full_range_activations():
        msg.warn("This CPU has no AVX512-VNNI, so int8 layers quantize their inputs to 7 bits, which "
                 "cost about 1 F on NCBI-disease; --calibration docs (e.g. the training data) win most of it back.")
    try:
        count = quantize_pipeline(nlp, texts, smoothing)
    except ValueError as error:
        msg.fail(str(error), exits=1)
    nlp.to_disk(output_path)
    smoothed = f", smoothed on {len(texts)} calibration texts" if texts is not None else ""
    msg.good(f"Saved the int8 pipeline ({count} transformer(s) quantized{smoothed}, {folder_mb(output_path):.0f} MB) to {output_path}")

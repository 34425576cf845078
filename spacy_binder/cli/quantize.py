"""`python -m spacy_binder quantize`: a trained pipeline with int8 transformers,
for faster CPU inference (see `spacy_binder.int8`)."""
from pathlib import Path
from typing import Optional

import spacy
import typer
from spacy.cli._util import import_code
from wasabi import msg

from ..int8 import folder_mb, quantize_pipeline
from . import app


@app.command("quantize")
def quantize_cli(
    # fmt: off
    pipeline: str = typer.Argument(..., help="Trained pipeline: folder or installed package name"),
    output_path: Path = typer.Argument(..., help="Folder for the int8 pipeline", file_okay=False),
    code_path: Optional[Path] = typer.Option(None, "--code", "-c", help="Python file with additional code to import", exists=True, dir_okay=False),
    # fmt: on
) -> None:
    """Quantize the pipeline's transformers (the text encoder and binder_ner's
    description encoder) to int8 with PyTorch dynamic quantization and save
    it. The result loads with spacy.load and packages with spacy package; it
    runs on the CPU only and cannot be trained further."""
    import_code(code_path)
    if output_path.exists() and any(output_path.iterdir()):
        msg.fail(f"{output_path} exists and is not empty: give a new folder.", exits=1)
    nlp = spacy.load(pipeline)
    try:
        count = quantize_pipeline(nlp)
    except ValueError as error:
        msg.fail(str(error), exits=1)
    nlp.to_disk(output_path)
    msg.good(f"Saved the int8 pipeline ({count} transformer(s) quantized, {folder_mb(output_path):.0f} MB) to {output_path}")

"""`python -m spacy_binder annotate`: a pipeline over a corpus of any size,
on Ray Data (local by default, a cluster with --address)."""
from pathlib import Path
from typing import Optional

import typer
from wasabi import msg

from . import app


@app.command("annotate")
def annotate_cli(
    # fmt: off
    pipeline: str = typer.Argument(..., help="Pipeline folder or installed package name"),
    input_path: Path = typer.Argument(..., help="A .jsonl/.ndjson or .parquet file, or a folder of them", exists=True),
    output_path: Path = typer.Argument(..., help="Output folder named *.jsonl or *.parquet (re-run: resumes)"),
    id_field: str = typer.Option("id", "--id-field", help="Input field with the document id"),
    text_field: str = typer.Option("text", "--text-field", help="Input field with the text"),
    spans_key: Optional[str] = typer.Option(None, "--spans-key", help="Span group to write (default: binder_ner's)"),
    actors: int = typer.Option(1, "--actors", "-n", help="Number of actors, each with its own copy of the pipeline"),
    cpus_per_actor: float = typer.Option(1, "--cpus-per-actor", help="CPUs per actor (torch threads)"),
    gpus_per_actor: float = typer.Option(0, "--gpus-per-actor", help="GPUs per actor (0: CPU)"),
    batch_size: int = typer.Option(64, "--batch-size", "-b", help="Documents per actor call"),
    part_size: int = typer.Option(10_000, "--part-size", help="Records per output part file"),
    address: Optional[str] = typer.Option(None, "--address", help="Ray cluster address (default: RAY_ADDRESS, else local)"),
    code_path: Optional[Path] = typer.Option(None, "--code", "-c", help="Python file each actor imports (custom components)", exists=True, dir_okay=False),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show documents annotated and docs/s"),
    # fmt: on
) -> None:
    """Annotate every document of INPUT_PATH with PIPELINE and write one
    record per document to OUTPUT_PATH: id, ents and nested spans with
    character offsets, labels and scores, and an error (null, or why the
    document could not be annotated)."""
    from ..annotation import annotate

    try:
        stats = annotate(
            pipeline, input_path, output_path, id_field=id_field, text_field=text_field, spans_key=spans_key,
            actors=actors, cpus_per_actor=cpus_per_actor, gpus_per_actor=gpus_per_actor, batch_size=batch_size,
            part_size=part_size, address=address, code_path=code_path, progress=progress,
        )
    except (ValueError, FileNotFoundError) as err:
        msg.fail(str(err), exits=1)
    msg.good(
        f"Wrote {stats.written} records to {output_path} ({stats.errors} with an error) in "
        f"{stats.seconds:.1f} s, {stats.docs_per_second:.1f} docs/s"
        + (f"; {stats.resumed} ids were already written by an earlier run" if stats.resumed else "")
    )

"""Convert one of the project's corpora to train/dev/test .spacy files by
running its converter (convert_ncbi.py, convert_conll03.py, convert_genia.py)
with the right arguments, in this process (one spaCy import, not three).
"""
import runpy
import sys
from pathlib import Path
from typing import Dict, List, Tuple

import typer
from wasabi import msg

SCRIPTS = Path(__file__).parent
# corpus -> (converter, asset folder, {split: input file}); an empty mapping
# means the converter takes the whole folder and writes all three splits.
CORPORA: Dict[str, Tuple[str, str, Dict[str, str]]] = {
    "ncbi_disease": ("convert_ncbi.py", "ncbi_disease", {"train": "train.tsv", "dev": "devel.tsv", "test": "test.tsv"}),
    "conll03": ("convert_conll03.py", "conll2003", {"train": "eng.train", "dev": "eng.testa", "test": "eng.testb"}),
    "genia": ("convert_genia.py", "genia", {}),
}


def converter_commands(corpus: str, assets_dir: Path, output_dir: Path, spans_key: str) -> List[List[str]]:
    """The converter command lines for a corpus.

    corpus (str): A key of CORPORA.
    assets_dir (Path): The project's assets/ folder.
    output_dir (Path): The folder for {train,dev,test}.spacy.
    spans_key (str): The doc.spans key for the gold spans.
    RETURNS (List[List[str]]): One argv (script path first) per converter run.
    """
    script, folder, files = CORPORA[corpus]
    base = [str(SCRIPTS / script)]
    options = ["--spans-key", spans_key]
    if not files:
        return [base + [str(assets_dir / folder), str(output_dir)] + options]
    return [
        base + [str(assets_dir / folder / name), str(output_dir / f"{split}.spacy")] + options
        for split, name in files.items()
    ]


def main(
    corpus: str = typer.Argument(..., help=f"One of: {', '.join(CORPORA)}"),
    assets_dir: Path = typer.Argument(..., help="The assets/ folder", exists=True, file_okay=False),
    output_dir: Path = typer.Argument(..., help="Folder for {train,dev,test}.spacy", file_okay=False),
    spans_key: str = typer.Option("sc", "--spans-key", help="doc.spans key for the gold spans"),
) -> None:
    """Convert a corpus (ncbi_disease, conll03 or genia) to .spacy files."""
    if corpus not in CORPORA:
        msg.fail(f"Unknown corpus {corpus!r}", f"Choose one of: {', '.join(CORPORA)}", exits=1)
    output_dir.mkdir(parents=True, exist_ok=True)
    for argv in converter_commands(corpus, assets_dir, output_dir, spans_key):
        msg.info(" ".join([Path(argv[0]).name, *argv[1:]]))
        sys.argv = argv
        try:
            runpy.run_path(argv[0], run_name="__main__")
        except SystemExit as err:  # typer exits when done
            if err.code not in (0, None):
                msg.fail("Conversion failed", " ".join(argv), exits=1)


if __name__ == "__main__":
    typer.run(main)

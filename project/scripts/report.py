"""Print the end of a workflow run: test precision, recall and F1 (nested spans
and flat entities) and where the trained pipeline, metrics, package and
visualization went. Fails if an output the workflow should have made is
missing, so a broken run cannot look like a finished one.
"""
from pathlib import Path
from typing import Any, Dict, List, Tuple

import srsly
import typer
from wasabi import msg


def test_scores(metrics: Dict[str, Any], spans_key: str = "sc") -> List[Tuple[str, float, float, float]]:
    """Total P/R/F (in percent) per view found in `spacy evaluate` metrics.

    metrics (Dict[str, Any]): The `spacy evaluate --output` JSON.
    spans_key (str): The spans key of the nested output.
    RETURNS (List[Tuple[str, float, float, float]]): (view, P, R, F) rows.
    """
    rows = []
    views = [(f"spans_{spans_key}", f'nested doc.spans["{spans_key}"]'), ("ents", "flat doc.ents")]
    for prefix, name in views:
        if metrics.get(f"{prefix}_f") is None:
            continue
        p, r, f = (100 * float(metrics[f"{prefix}_{k}"]) for k in ("p", "r", "f"))
        rows.append((name, p, r, f))
    return rows


def main(
    corpus: str = typer.Argument(..., help="Corpus name (as in the output paths)"),
    model_path: Path = typer.Option(..., "--model", help="Trained pipeline folder"),
    metrics_path: Path = typer.Option(..., "--metrics", help="`spacy evaluate` JSON"),
    table_path: Path = typer.Option(..., "--table", help="Per-type markdown table"),
    package_path: Path = typer.Option(..., "--package", help="Wheel built by `spacy package`"),
    html_path: Path = typer.Option(..., "--html", help="displaCy page"),
    spans_key: str = typer.Option("sc", "--spans-key", help="Spans key of the nested scores"),
) -> None:
    """Print test P/R/F and the output locations of a finished workflow."""
    outputs = [
        ("Trained pipeline", model_path),
        ("Test metrics", metrics_path),
        ("Per-type table", table_path),
        ("Package (wheel)", package_path),
        ("Visualization", html_path),
    ]
    missing = [f"{name}: {path}" for name, path in outputs if not path.exists()]
    if missing:
        msg.fail(f"{len(missing)} output(s) of the {corpus} workflow are missing")
        for line in missing:
            print(f"  {line}")
        raise SystemExit(1)
    rows = test_scores(srsly.read_json(metrics_path), spans_key)
    if not rows:
        msg.fail(f"No spans_{spans_key}_* or ents_* scores in {metrics_path}", exits=1)
    msg.divider(f"BINDER on {corpus}: test set")
    msg.table(
        [(name, f"{p:.2f}", f"{r:.2f}", f"{f:.2f}") for name, p, r, f in rows],
        header=("Output", "P", "R", "F"),
        aligns=("l", "r", "r", "r"),
    )
    for name, path in outputs:
        print(f"{name + ':':<18} {path.resolve()}")
    print(f'Load with spacy.load("{model_path.resolve()}"), or pip install the wheel.')


if __name__ == "__main__":
    typer.run(main)

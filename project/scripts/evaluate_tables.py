"""Turn the metrics JSON written by `spacy evaluate --output` into markdown
tables: precision, recall and F1 per type and in total, for the nested spans
(`spans_<key>_*`) and for the flat entities (`ents_*`).
"""
from pathlib import Path
from typing import Any, Dict, List, Optional

import srsly
import typer
from wasabi import msg


def _pct(value: Optional[float]) -> str:
    return "-" if value is None else f"{100 * value:.2f}"


def prf_table(totals: Dict[str, Optional[float]], per_type: Dict[str, Dict[str, float]]) -> List[str]:
    """A markdown table with one row per type (sorted) and a total row.

    totals (Dict[str, Optional[float]]): "p", "r" and "f" over all types (0-1).
    per_type (Dict[str, Dict[str, float]]): type -> {"p", "r", "f"} (0-1).
    RETURNS (List[str]): The table's lines; scores in percent.
    """
    lines = ["| Type | P | R | F |", "| --- | ---: | ---: | ---: |"]
    for label in sorted(per_type):
        scores = per_type[label]
        lines.append(f"| {label} | {_pct(scores.get('p'))} | {_pct(scores.get('r'))} | {_pct(scores.get('f'))} |")
    lines.append(
        f"| **total (micro)** | **{_pct(totals['p'])}** | **{_pct(totals['r'])}** | **{_pct(totals['f'])}** |"
    )
    return lines


def metrics_to_markdown(metrics: Dict[str, Any], spans_key: str = "sc", title: str = "Test results") -> str:
    """Render the P/R/F tables for nested spans and flat entities.

    metrics (Dict[str, Any]): The `spacy evaluate` output.
    spans_key (str): The spans key of the nested scores.
    title (str): The heading.
    RETURNS (str): The markdown text. A view without scores is left out.
    """
    parts = [f"# {title}", ""]
    views = [
        (f"spans_{spans_key}", f'Nested spans (`doc.spans["{spans_key}"]`)'),
        ("ents", "Flat entities (`doc.ents`)"),
    ]
    for prefix, heading in views:
        if f"{prefix}_f" not in metrics:
            continue
        totals = {k: metrics.get(f"{prefix}_{k}") for k in ("p", "r", "f")}
        per_type = metrics.get(f"{prefix}_per_type") or {}
        parts += [f"## {heading}", "", *prf_table(totals, per_type), ""]
    if "speed" in metrics:
        parts += [f"Speed: {metrics['speed']:.0f} words/s", ""]
    return "\n".join(parts)


def main(
    metrics_path: Path = typer.Argument(..., help="JSON from `spacy evaluate --output`", exists=True, dir_okay=False),
    output_path: Path = typer.Argument(..., help="Markdown file to write", dir_okay=False),
    spans_key: str = typer.Option("sc", "--spans-key", help="Spans key of the nested scores"),
    title: str = typer.Option("Test results", "--title", help="Heading of the markdown file"),
) -> None:
    """Write per-type P/R/F markdown tables from `spacy evaluate` metrics."""
    metrics = srsly.read_json(metrics_path)
    if f"spans_{spans_key}_f" not in metrics and "ents_f" not in metrics:
        msg.fail(f"No spans_{spans_key}_* or ents_* scores in {metrics_path}", exits=1)
    text = metrics_to_markdown(metrics, spans_key, title)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    output_path.write_text(text, encoding="utf8")
    print(text)
    msg.good(f"Saved tables to {output_path}")


if __name__ == "__main__":
    typer.run(main)

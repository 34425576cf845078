"""`python -m spacy_binder`: the package's own commands. Each command lives in
a module of this folder that adds itself to `app`; importing it here makes
the command appear."""
import typer

app = typer.Typer(
    name="spacy_binder",
    help="spacy-binder's commands (see each command's --help).",
    no_args_is_help=True,
    add_completion=False,
)


@app.callback()
def main() -> None:
    """spacy-binder's commands (see each command's --help)."""

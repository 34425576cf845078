"""`python -m spacy_binder`: the package's own commands. Each command lives in
a module of this folder that adds itself to `app` (`@app.command(...)`);
every module here is imported, so a new command needs no other edit."""
import importlib
import pkgutil

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


for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

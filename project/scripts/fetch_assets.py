"""Copy the project's corpus files (the `assets` of project.yml) from a local
mirror folder, for machines that cannot download them. With `--corpus`, only
that corpus's files (those under its asset folder) are fetched and checked.

The mirror is laid out like `assets/`: `assets/ncbi_disease/train.tsv` is read
from `MIRROR/ncbi_disease/train.tsv`. Without a mirror, only check that the
files are already there (`python -m spacy project assets` downloads them).
"""
import filecmp
import hashlib
import shutil
import sys
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import srsly
import typer
from wasabi import msg

from convert import CORPORA

ASSETS_DIR = "assets"
TRUE_VALUES = ("true", "1", "yes")
FALSE_VALUES = ("false", "0", "no")


def md5_file(path: Path) -> str:
    """The MD5 hex digest of a file, as in project.yml `checksum` fields.

    path (Path): The file.
    RETURNS (str): The digest.
    """
    digest = hashlib.md5()
    with path.open("rb") as file_:
        for chunk in iter(lambda: file_.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_assets(project_dir: Path, corpus: Optional[str] = None) -> List[Dict[str, str]]:
    """Read the file assets (those with a `dest`) listed in project.yml.

    project_dir (Path): The folder with project.yml.
    corpus (Optional[str]): Only the assets of this corpus (a key of
        convert.CORPORA: the files under its asset folder); None for all.
    RETURNS (List[Dict[str, str]]): The assets, each with `dest` and, where
        given, `checksum` and `url`.
    """
    config = srsly.read_yaml(project_dir / "project.yml")
    assets = [asset for asset in config.get("assets", []) if "dest" in asset]
    if corpus is None:
        return assets
    if corpus not in CORPORA:
        raise ValueError(f"Unknown corpus {corpus!r}: choose one of {', '.join(CORPORA)}")
    folder = Path(ASSETS_DIR) / CORPORA[corpus][1]
    return [asset for asset in assets if folder in Path(asset["dest"]).parents]


def mirror_path(mirror: Path, dest: str) -> Path:
    """Where an asset lies in the mirror: its `dest` without the leading
    `assets/`.

    mirror (Path): The mirror folder.
    dest (str): The asset's `dest`, relative to the project folder.
    RETURNS (Path): The file in the mirror.
    """
    parts = Path(dest).parts
    return mirror.joinpath(*(parts[1:] if parts[0] == ASSETS_DIR else parts))


def fetch_assets(
    project_dir: Path, mirror: Optional[Path], verify: bool = True, corpus: Optional[str] = None
) -> Tuple[List[str], List[str]]:
    """Copy every file asset of project.yml from the mirror (or, without a
    mirror, check that it is present) and compare its MD5 with the checksum.

    Files already in place (same bytes as in the mirror) are not copied again.

    project_dir (Path): The folder with project.yml.
    mirror (Optional[Path]): The mirror folder, or None.
    verify (bool): Whether to check the MD5 checksums.
    corpus (Optional[str]): Only this corpus's assets; None for all.
    RETURNS (Tuple[List[str], List[str]]): The assets copied, and one error
        message per missing or corrupt file (empty when all is well).
    """
    copied: List[str] = []
    errors: List[str] = []
    for asset in read_assets(project_dir, corpus):
        dest = project_dir / asset["dest"]
        checksum = asset.get("checksum") if verify else None
        if mirror is None:
            if not dest.exists():
                errors.append(f"missing: {asset['dest']}")
            elif checksum and md5_file(dest) != checksum:
                errors.append(f"checksum mismatch: {asset['dest']} (expected MD5 {checksum})")
            continue
        source = mirror_path(mirror, asset["dest"])
        if not source.is_file():
            errors.append(f"missing: {asset['dest']} (looked for {source})")
            continue
        if checksum and md5_file(source) != checksum:
            errors.append(f"checksum mismatch: {source} (expected MD5 {checksum} for {asset['dest']})")
            continue
        if dest.is_file() and filecmp.cmp(source, dest, shallow=False):
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, dest)
        copied.append(asset["dest"])
    return copied, errors


def parse_bool(value: str) -> bool:
    """Read a project.yml boolean as interpolated into a command ("true")."""
    if value.lower() in TRUE_VALUES:
        return True
    if value.lower() in FALSE_VALUES:
        return False
    raise typer.BadParameter(f"expected true or false, got {value!r}")


def main(
    mirror: str = typer.Option("", "--mirror", help="Mirror folder laid out like assets/ ('' = none)"),
    verify: str = typer.Option("true", "--verify", help="Check MD5 checksums: true or false"),
    project_dir: Path = typer.Option(Path("."), "--project-dir", help="Folder with project.yml", file_okay=False),
    corpus: str = typer.Option("", "--corpus", help=f"Only this corpus's files ({', '.join(CORPORA)}); '' = all"),
) -> None:
    """Copy the corpus files listed in project.yml from a local mirror folder
    (BINDER_DATA_MIRROR) into assets/, checking their MD5 checksums."""
    mirror_dir = Path(mirror) if mirror.strip() else None
    if mirror_dir is not None and not mirror_dir.is_dir():
        msg.fail(f"BINDER_DATA_MIRROR is not a folder: {mirror_dir}", exits=1)
    chosen = corpus or None
    try:
        copied, errors = fetch_assets(project_dir, mirror_dir, verify=parse_bool(verify), corpus=chosen)
    except ValueError as err:  # an unknown corpus, named by read_assets
        msg.fail(str(err), exits=1)
    if errors:
        where = f"from {mirror_dir}" if mirror_dir else "(no mirror set: BINDER_DATA_MIRROR is empty)"
        msg.fail(f"{len(errors)} corpus file(s) could not be fetched {where}")
        for error in errors:
            print(f"  {error}")
        if mirror_dir is None:
            print(
                "Run `python -m spacy project assets` to download them, or set "
                "BINDER_DATA_MIRROR to a folder laid out like assets/ "
                "(ncbi_disease/, conll2003/, genia/...) and run this again."
            )
        sys.exit(1)
    source = f"from {mirror_dir}" if mirror_dir else "(already downloaded)"
    what = f"{corpus} assets" if corpus else "assets"
    msg.good(f"Copied {len(copied)} file(s); all {len(read_assets(project_dir, chosen))} {what} in place {source}")


if __name__ == "__main__":
    typer.run(main)

"""Reading and validating entity type descriptions."""
import warnings
from pathlib import Path
from typing import Dict, Mapping, Optional, Sequence, Union

import srsly

DescriptionsT = Union[Mapping[str, str], str, Path]


def read_descriptions(source: DescriptionsT) -> Dict[str, str]:
    """A label -> description mapping from a dict or a JSON file path."""
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.exists():
            raise ValueError(
                f"The descriptions file '{path}' does not exist. Give a JSON "
                "object that maps each label to a plain-language description."
            )
        data = srsly.read_json(path)
        origin = f"the descriptions file '{path}'"
    else:
        data = source
        origin = "the descriptions"
    if not isinstance(data, Mapping):
        raise ValueError(
            f"Expected {origin} to be a JSON object (label -> description), "
            f"got {type(data).__name__}."
        )
    result = {}
    for label, text in data.items():
        if not isinstance(label, str) or not isinstance(text, str):
            raise ValueError(
                f"In {origin}, every label and description must be a string; "
                f"got {label!r}: {text!r}."
            )
        normalized = " ".join(text.split())
        if not normalized:
            raise ValueError(
                f"In {origin}, the description of '{label}' is empty. Write one "
                "or two sentences that say what the type covers, or leave the "
                "label out to fall back to its name."
            )
        result[label] = normalized
    return result


def resolve_descriptions(
    labels: Sequence[str],
    descriptions: Optional[DescriptionsT],
    *,
    warn_missing: bool = True,
) -> Dict[str, str]:
    """One description per label, in label order.

    A label without a description falls back to its own name, with a
    warning (unless `warn_missing` is False, for type encoders that do not
    read descriptions); a description for a label not in `labels` is an error.
    """
    given = read_descriptions(descriptions) if descriptions is not None else {}
    unknown = [label for label in given if label not in labels]
    if unknown:
        raise ValueError(
            f"Descriptions were given for labels that are neither in the "
            f"training data nor in `labels`: {unknown}. Known labels: "
            f"{list(labels)}. Fix the label names, or pass the extra labels "
            "in `labels` to learn them."
        )
    missing = [label for label in labels if label not in given]
    if missing and given and warn_missing:
        warnings.warn(
            f"[binder_ner] No description for {len(missing)} label(s) "
            f"{missing}: using the label name as the description."
        )
    elif missing and warn_missing:
        warnings.warn(
            "[binder_ner] No type descriptions were given: using the label names "
            "as descriptions. Pass `descriptions` in [initialize.components] for "
            "better accuracy."
        )
    return {label: given.get(label, label) for label in labels}

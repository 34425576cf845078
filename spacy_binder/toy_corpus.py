"""A synthetic English corpus with nested, context-typed entities, for demos and tests.

Needs only spaCy and the standard library. Docs are built from the generator's
own words (`Doc(vocab, words=..., spaces=...)`, no tokenizer), hold one to three
sentences of 10 to 30 tokens with sentence starts set, and mention PER, ORG, LOC
and DATE. All mentions, nested ones included, go to `doc.spans[spans_key]`;
`doc.ents` holds the flat view, the outermost mentions only.

* Nesting: ORG "University of <LOC>", "<PER> Foundation", "<LOC> City Council",
  "<PER> Center for <LOC> Studies", LOC "<PER> Memorial Park", "<ORG> Tower"
  (and one same-type form, LOC "<LOC> International Airport"). About a third
  of all mentions lie inside another mention.
* Context decides the type: person and place names come from ONE pool of
  pseudo-names, so a name is PER in "Mr. Valdor said", LOC in "flew to Valdor"
  and no entity at all in "Valdor Group".
* Generalisation: names are capitalised pseudo-words made from syllables; one
  fixed list is cut into disjoint train / dev / test pools, and the years that
  every DATE holds are split by `year % 4`. Only cue and context words are
  shared, so (a) a string dictionary built from train recalls nothing on dev
  or test.
* (b) A flat tagger trained on `doc.ents` can recover at most the outermost
  mentions: its recall on all mentions is at most `outermost / total`. No flat
  (non-overlapping) output at all can beat `flat_recall_bound`, the largest set
  of pairwise non-overlapping gold mentions over the total. `corpus_stats`
  reports both: the bar a nested model has to pass.

CLI: python -m spacy_binder.toy_corpus OUTPUT_DIR [--n-train 300] [--n-dev 100] [--n-test 100]
[--seed 0] [--spans-key sc] writes OUTPUT_DIR/{train,dev,test}.spacy and prints the stats.
"""
import argparse
import random
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Tuple, Union

import spacy
from spacy.language import Language
from spacy.tokens import Doc, DocBin, Span
from spacy.vocab import Vocab

LABELS = ("PER", "ORG", "LOC", "DATE")
SPLITS = ("train", "dev", "test")
POOL_SLICES = {"train": slice(0, 600), "dev": slice(600, 800), "test": slice(800, 1000)}
NO_SPACE_BEFORE = {".", ","}
MONTHS = (
    "January February March April May June July August September October November December"
).split()

# Entity forms by slot. "{PER}", "{LOC}", "{ORG}" hold a nested flat mention,
# "<N>" is a bare (unlabelled) name, "<M>" a month, "<D>" a day, "<Y>" a year.
FLAT = {
    "PER": ["<N>", "<N> <N>"],
    "LOC": ["<N>", "<N>", "<N> <N>"],
    "ORG": ["<N> Group", "<N> Corp", "<N> Holdings", "<N> <N> Partners"],
    "DATE": ["<M> <Y>", "<M> <Y>", "spring <Y>", "autumn <Y>"],
    "DAY": ["<M> <D> , <Y>", "<D> <M> <Y>"],  # a DATE that follows "on"
}
NESTED = {
    "ORG": [
        "University of {LOC}", "University of {LOC} at {LOC}", "Bank of {LOC}",
        "{LOC} City Council", "{LOC} Institute of Technology", "{PER} Foundation",
        "{PER} Institute", "{PER} Center for {LOC} Studies",
    ],
    "LOC": ["{LOC} International Airport", "{PER} Memorial Park", "{ORG} Tower"],
}
P_NESTED = {"ORG": 0.9, "LOC": 0.6}
YEAR_MODS = {"train": (0, 1), "dev": (2,), "test": (3,)}  # year % 4 -> split
TEMPLATES = [
    "Dr. {PER} said on {DAY} that {ORG} will open a new office in {LOC} .",
    "{ORG} announced in {DATE} that {PER} would lead its team in {LOC} .",
    "Mr. {PER} flew to {LOC} to meet officials from {ORG} .",
    "On {DAY} , Ms. {PER} joined {ORG} as its chief economist .",
    "The delegation traveled from {LOC} to {LOC} on {DAY} .",
    "{PER} told reporters that {ORG} and {ORG} signed the agreement .",
    "Officials at {ORG} said the project near {LOC} would finish by {DATE} .",
    "Residents of {LOC} protested outside the offices of {ORG} last week .",
    "According to {PER} , the talks in {LOC} collapsed in {DATE} .",
    "{ORG} hired Professor {PER} after a long search .",
    "Heavy rain closed roads around {LOC} , said a spokesperson for {ORG} .",
    "The report , published by {ORG} in {DATE} , praised the mayor of {LOC} .",
    "Senator {PER} visited {LOC} and met {PER} of {ORG} .",
    "Her family moved to {LOC} in {DATE} , where she studied at {ORG} .",
    "{PER} , a researcher at {ORG} , was born in {LOC} .",
    "Flights between {LOC} and {LOC} resumed on {DAY} .",
    "Shares of {ORG} fell after {PER} resigned on {DAY} .",
    "{PER} left {ORG} in {DATE} to join {ORG} in {LOC} .",
    "{ORG} and {ORG} agreed to merge their offices in {LOC} .",
]
Mention = Tuple[int, int, str]


def _name_pool(split: str) -> List[str]:
    """The split's capitalised pseudo-names: the same on every run, disjoint across splits."""
    rng = random.Random("spacy-binder-toy-names")
    onsets = "b d f g k l m n p r s t v z br dr kr st tr".split()
    vowels = "a e i o u ai ou".split()
    codas = ["", "", "", "n", "r", "l", "s"]
    texts = TEMPLATES + [form for forms in [*FLAT.values(), *NESTED.values()] for form in forms]
    seen = {word.lower() for text in texts for word in text.split()}  # never a cue word
    names: List[str] = []
    while len(names) < POOL_SLICES["test"].stop:
        syllables = rng.choice([2, 2, 2, 3])
        name = "".join(
            rng.choice(onsets) + rng.choice(vowels) + rng.choice(codas) for _ in range(syllables)
        )
        if name not in seen:
            seen.add(name)
            names.append(name.capitalize())
    return names[POOL_SLICES[split]]


def _fill(
    text: str, rng: random.Random, names: List[str], years: List[int], top: bool
) -> Tuple[List[str], List[Mention]]:
    """Words of a template (top=True) or entity form, and its mentions (offsets into
    the words). Only mentions filled at the top level may get a nested form."""
    fillers = {"<N>": lambda: rng.choice(names), "<M>": lambda: rng.choice(MONTHS),
               "<D>": lambda: str(rng.randint(1, 28)), "<Y>": lambda: str(rng.choice(years))}
    words: List[str] = []
    mentions: List[Mention] = []
    for token in text.split():
        if token.startswith("{"):
            slot = token[1:-1]
            nested = top and slot in NESTED and rng.random() < P_NESTED[slot]
            form = rng.choice((NESTED if nested else FLAT)[slot])
            sub_words, sub_mentions = _fill(form, rng, names, years, False)
            start = len(words)
            mentions.append((start, start + len(sub_words), "DATE" if slot == "DAY" else slot))
            mentions.extend((start + s, start + e, label) for s, e, label in sub_mentions)
            words.extend(sub_words)
        else:
            words.append(fillers[token]() if token in fillers else token)
    return words, mentions


def make_toy_docs(
    vocab_or_nlp: Union[Vocab, Language], n_docs: int, *, seed: int, split: str = "train",
    spans_key: str = "sc",
) -> List[Doc]:
    """Generate synthetic docs with nested gold mentions.

    vocab_or_nlp (Union[Vocab, Language]): The vocab, or a pipeline whose vocab to use.
    n_docs (int): How many docs to make.
    seed (int): Random seed; the same seed and split give the same docs.
    split (str): "train", "dev" or "test"; the splits use disjoint names and years.
    spans_key (str): Key of `doc.spans` that receives all mentions.
    RETURNS (List[Doc]): Docs with `doc.spans[spans_key]` (all mentions, sorted by
        start and end), `doc.ents` (outermost mentions) and sentence starts set.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, not {split!r}")
    vocab = vocab_or_nlp.vocab if isinstance(vocab_or_nlp, Language) else vocab_or_nlp
    names = _name_pool(split)
    years = [year for year in range(1900, 2030) if year % 4 in YEAR_MODS[split]]
    rng = random.Random(f"{split}:{seed}")
    docs = []
    for _ in range(n_docs):
        # Each template is one sentence of 10 to 30 words, ending in "." (tests check it).
        text = " ".join(rng.choice(TEMPLATES) for _ in range(rng.randint(1, 3)))
        words, mentions = _fill(text, rng, names, years, True)
        sent_starts = [i == 0 or words[i - 1] == "." for i in range(len(words))]
        spaces = [next_ not in NO_SPACE_BEFORE for next_ in words[1:]] + [False]
        doc = Doc(vocab, words=words, spaces=spaces, sent_starts=sent_starts)
        spans = [Span(doc, s, e, label=label) for s, e, label in sorted(mentions)]
        doc.spans[spans_key] = spans
        doc.ents = [span for span in spans if not any(_contains(other, span) for other in spans)]
        docs.append(doc)
    return docs


def _contains(outer: Span, inner: Span) -> bool:
    """Whether `inner` lies inside `outer` and is a different mention."""
    inside = outer.start <= inner.start and inner.end <= outer.end
    return inside and (outer.start, outer.end) != (inner.start, inner.end)


def corpus_stats(docs: Iterable[Doc], spans_key: str = "sc") -> Dict[str, Any]:
    """Count mentions per type and how many are nested.

    docs (Iterable[Doc]): Docs with gold mentions in `doc.spans[spans_key]`.
    spans_key (str): The spans key to read.
    RETURNS (Dict[str, Any]): "docs"; "mentions"; "nested" (inside another mention);
        "nested_cross_type" (inside a mention of another type); "outermost";
        "nested_fraction"; "outermost_fraction" (outermost / mentions: the recall
        ceiling of a flat tagger trained on `doc.ents`); "flat_recall_bound" (most
        pairwise non-overlapping mentions / mentions: the ceiling of any flat output);
        "per_type" (label -> {"mentions": int, "nested": int}).
    """
    per_type = {label: {"mentions": 0, "nested": 0} for label in LABELS}
    n_docs = total = nested = cross = flat_max = 0
    for doc in docs:
        n_docs += 1
        spans = list(doc.spans[spans_key]) if spans_key in doc.spans else []
        for span in spans:
            counts = per_type.setdefault(span.label_, {"mentions": 0, "nested": 0})
            containers = [other.label_ for other in spans if _contains(other, span)]
            counts["mentions"] += 1
            counts["nested"] += bool(containers)
            total, nested = total + 1, nested + bool(containers)
            cross += any(label != span.label_ for label in containers)
        last_end = -1  # interval scheduling, earliest end first: most non-overlapping
        for span in sorted(spans, key=lambda span: (span.end, span.start)):
            if span.start >= last_end:
                flat_max, last_end = flat_max + 1, span.end
    return {
        "docs": n_docs,
        "mentions": total,
        "nested": nested,
        "nested_cross_type": cross,
        "outermost": total - nested,
        "nested_fraction": nested / max(total, 1),
        "outermost_fraction": (total - nested) / max(total, 1),
        "flat_recall_bound": flat_max / max(total, 1),
        "per_type": per_type,
    }


def main(argv: Optional[List[str]] = None) -> None:
    """Write train.spacy, dev.spacy and test.spacy to an output folder."""
    description = "Write a synthetic nested NER corpus: train.spacy, dev.spacy, test.spacy."
    parser = argparse.ArgumentParser("python -m spacy_binder.toy_corpus", description=description)
    parser.add_argument("output_dir", type=Path)
    parser.add_argument("--n-train", type=int, default=300)
    parser.add_argument("--n-dev", type=int, default=100)
    parser.add_argument("--n-test", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--spans-key", default="sc")
    args = parser.parse_args(argv)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    nlp = spacy.blank("en")
    for split in SPLITS:
        n_docs = getattr(args, f"n_{split}")
        docs = make_toy_docs(nlp, n_docs, seed=args.seed, split=split, spans_key=args.spans_key)
        DocBin(docs=docs, store_user_data=False).to_disk(args.output_dir / f"{split}.spacy")
        stats = corpus_stats(docs, args.spans_key)
        print(
            f"{split}: {stats['docs']} docs, {stats['mentions']} mentions, "
            f"{stats['nested']} nested ({stats['nested_fraction']:.1%}); "
            f"outermost/total {stats['outermost_fraction']:.3f}, "
            f"flat recall bound {stats['flat_recall_bound']:.3f}"
        )
        for label, counts in stats["per_type"].items():
            print(f"  {label:<5} {counts['mentions']:>5} mentions, {counts['nested']:>4} nested")
    print(f"Wrote {args.output_dir}/{{train,dev,test}}.spacy")


if __name__ == "__main__":
    main()

"""Feed random batches of odd texts through a pipeline and report failures.

    python tests/fuzz_pipeline.py PIPELINE [--batches 150] [--seed 0] [--threshold P]

PIPELINE is a folder or the name of an installed pipeline package. A batch
fails when `nlp.pipe` raises, when a doc breaks binder_ner's output
contract, or when a doc's spans, scores or ents differ from those it gets
alone (`nlp(text)`). Prints one JSON line with the counts and the failures;
exits 1 if there is any. A low --threshold (0.05) makes a briefly
trained pipeline predict many spans, so that decoding and annotation are
exercised too.
"""
import argparse
import json
import random
import sys

import spacy

from util import ODD_TEXTS, assert_same_outputs, check_invariants, doc_outputs


def fuzz(nlp, n_batches: int, seed: int) -> dict:
    rng = random.Random(seed)
    alone = {text: doc_outputs([nlp(text)])[0] for text in ODD_TEXTS}
    failures, n_texts, n_spans = [], 0, 0
    for i in range(n_batches):
        batch = [rng.choice(ODD_TEXTS) for _ in range(rng.randint(1, 6))]
        n_texts += len(batch)
        try:
            docs = list(nlp.pipe(batch, batch_size=len(batch)))
            for doc in docs:
                check_invariants(doc)
                n_spans += len(doc.spans["sc"])
            assert_same_outputs(doc_outputs(docs), [alone[text] for text in batch])
        except Exception as error:  # every failure is reported, not just the first
            failures.append({"batch": i, "texts": [t[:40] for t in batch], "error": f"{type(error).__name__}: {str(error)[:300]}"})
    return {"batches": n_batches, "texts": n_texts, "spans": n_spans, "failures": failures}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("pipeline")
    parser.add_argument("--batches", type=int, default=150)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threshold", type=float, default=None)
    args = parser.parse_args()
    overrides = {}
    if args.threshold is not None:
        overrides = {"components": {"binder_ner": {"threshold": args.threshold}}}
    report = fuzz(spacy.load(args.pipeline, config=overrides), args.batches, args.seed)
    print(json.dumps(report, ensure_ascii=True))
    return 1 if report["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())

"""Does a model obey a tag of its data's own? The tagger reads a tag it knows from faces asked for it.

    python benchmarks/own_tag_check.py WEIGHTS --tag my_ribbon --reads ribbon [--n 400] [--tagger T]

A model trained with ``--vocabulary auto`` has conditions the app's tagger cannot read by
name. When the data's own tag stands for something the tagger does know (the sketchbook's
``ribbon`` renamed ``my_ribbon`` in the sidecars), the tagger can say whether the tag is
obeyed: ``--n`` noise vectors with random attributes (the own tags and ``--reads`` off) are
drawn with ``--tag`` off and on, and the share of faces the tagger reads as ``--reads`` is
printed for both, next to the model's own ``--reads`` slot asked for (what a learned tag
does in the same model).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mangagan_app.core.attributes import OWN_TAGS_GROUP  # noqa: E402
from mangagan_app.core.face_recipe import random_attributes  # noqa: E402
from mangagan_app.ml.checkpoint import card_vocabulary, load_generator, read_card  # noqa: E402
from mangagan_app.ml.evaluation import render  # noqa: E402
from mangagan_app.ml.sampling import complete_condition  # noqa: E402
from mangagan_app.ml.tagger import decide, load_tagger  # noqa: E402


def read_share(tagger, images: np.ndarray, tag: str) -> float:
    readings = decide(tagger.read(images)[1], tagger.vocabulary)
    return float(readings[:, tagger.vocabulary.slot_names().index(tag)].mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("weights", type=Path)
    ap.add_argument("--tag", required=True, help="the data's own tag, as the card spells it")
    ap.add_argument("--reads", required=True, help="the tagger's tag that --tag stands for")
    ap.add_argument("--n", type=int, default=400)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tagger", type=Path, help="tagger .safetensors (default: the shipped one)")
    args = ap.parse_args()
    torch.set_num_threads(1)

    generator, _ = load_generator(args.weights)
    vocabulary = card_vocabulary(read_card(args.weights), args.weights)
    tagger = load_tagger(args.tagger)
    own = vocabulary.group(OWN_TAGS_GROUP).values
    if args.tag not in own:
        raise SystemExit(f"{args.weights}: {args.tag} is not one of the model's own tags ({', '.join(own)})")
    rng = np.random.default_rng(args.seed)
    off = []
    for _ in range(args.n):
        attrs = random_attributes(vocabulary, rng)
        attrs.tags -= {*own, args.reads}
        off.append(complete_condition(attrs, rng, vocabulary))
    off = torch.from_numpy(np.stack(off))
    slots = vocabulary.slot_names()
    rows = {"asked for neither": off}
    for name in (args.tag, args.reads):
        on = off.clone()
        on[:, slots.index(name)] = 1.0
        rows[f"asked for {name}"] = on
    print(f"{args.weights.name}: {args.n} faces, the same noise in every row; tagger reads {args.reads!r}")
    for label, cond in rows.items():
        share = read_share(tagger, render(generator, cond, args.seed + 1, 100), args.reads)
        print(f"  {label:<28} read as {args.reads}: {100 * share:5.1f} %")


if __name__ == "__main__":
    main()

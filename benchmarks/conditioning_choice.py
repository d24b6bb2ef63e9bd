"""Which discriminator conditioning makes the generator obey its attributes best?

Trains the GAN with each conditioning (projection / ACGAN head / both) for the same
number of steps on the same sketchbook folder, then asks an independent attribute
classifier — trained here on the real faces' exact labels, held-out accuracy
printed — how often generated faces show the requested hair colour, eye colour,
hair style and free tags.

    python benchmarks/conditioning_choice.py DATA --steps 800 --width 32

Prints a table; writes ``conditioning_choice.json`` in the output folder.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from mangagan_app.config import TrainingConfig
from mangagan_app.core.attributes import VOCABULARY, Attributes
from mangagan_app.ml import losses
from mangagan_app.ml.dataset import FaceSet, load_face_folder
from mangagan_app.ml.networks import Architecture, Discriminator, Generator
from mangagan_app.ml.sampling import complete_condition, noise
from mangagan_app.ml.trainer import load_resume_state, train


def subset(faces: FaceSet, rows: slice) -> FaceSet:
    return FaceSet(faces.images[rows], faces.cond[rows], faces.mask[rows], source=faces.source)


def train_tagger(faces: FaceSet, steps: int, width: int, seed: int = 0) -> Discriminator:
    """A classifier with the discriminator's body and an attribute head, trained on labels only."""
    torch.manual_seed(seed)
    arch = Architecture(faces.resolution, width, 128, VOCABULARY.dim, "acgan")
    net = Discriminator(arch)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randint(len(faces), (64,), generator=g)
        x, c, m = faces.batch(idx, torch.rand(64, generator=g) < 0.5)
        _, aux = net(x, c, m)
        loss = losses.attribute_loss(aux, c, m, VOCABULARY)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net.eval()


@torch.no_grad()
def scores(tagger: Discriminator, images: torch.Tensor) -> torch.Tensor:
    return torch.cat([tagger(images[i:i + 256], torch.zeros(len(images[i:i + 256]), VOCABULARY.dim))[1]
                      for i in range(0, len(images), 256)])


def accuracy(pred: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
    """Per exclusive group: share of argmax hits; free tags: recall on requested tags and
    false-positive rate on tags not requested."""
    out: dict[str, float] = {}
    start = 0
    for group in VOCABULARY.groups:
        n = len(group.values)
        p, t = pred[:, start:start + n], target[:, start:start + n]
        if group.exclusive:
            out[group.name] = float((p.argmax(1) == t.argmax(1)).float().mean())
        else:
            present = t > 0.5
            said = p > 0
            out["tag_recall"] = float(said[present].float().mean())
            out["tag_false_pos"] = float(said[~present].float().mean())
            out["worst_tag_recall"] = min(
                float(said[:, i][present[:, i]].float().mean()) for i in range(n) if present[:, i].any())
        start += n
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data")
    ap.add_argument("--out", default="/tmp/conditioning_choice")
    ap.add_argument("--steps", type=int, default=800)
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--tagger-steps", type=int, default=600)
    ap.add_argument("--choices", default="projection,acgan,both")
    ap.add_argument("--loss", default="dcgan")
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (0: all)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    faces = load_face_folder(args.data, 64)
    held = len(faces) // 6
    train_part, test_part = subset(faces, slice(0, len(faces) - held)), subset(faces, slice(len(faces) - held, None))
    t0 = time.perf_counter()
    tagger = train_tagger(train_part, args.tagger_steps, 32)
    real_acc = accuracy(scores(tagger, test_part.batch(torch.arange(len(test_part)),
                                                        torch.zeros(len(test_part), dtype=torch.bool))[0]),
                        test_part.cond)
    print(f"tagger on {held} unseen real faces ({time.perf_counter() - t0:.0f} s): "
          + ", ".join(f"{k} {v:.3f}" for k, v in real_acc.items()))

    rng = np.random.default_rng(123)
    hair = VOCABULARY.group("hair_colour").values
    conds = torch.from_numpy(np.stack([
        complete_condition(Attributes({"hair_colour": hair[i % len(hair)]},
                                      {t for t in VOCABULARY.free_tags if rng.random() < 0.2}), rng)
        for i in range(1300)]))
    # "looking_up" and "looking_down" together is not a face the data has.
    up, down = VOCABULARY.offset("tags") + np.array([VOCABULARY.free_tags.index(t) for t in ("looking_up",
                                                                                         "looking_down")])
    conds[conds[:, up] * conds[:, down] > 0, down] = 0
    z = noise(len(conds), 128, 99)

    results = {"tagger_on_real": real_acc, "steps": args.steps, "width": args.width, "runs": {}}
    for choice in args.choices.split(","):
        cfg = TrainingConfig(data=args.data, width=args.width, conditioning=choice, loss=args.loss,
                             epochs=1000, preview_steps=10**9, checkpoint_minutes=10**6,
                             threads=args.threads)
        run = out / f"{choice}-{args.loss}-w{args.width}"
        step = {"n": 0}

        def count(p, step=step):
            step["n"] = p.step if p.phase == "training" else 0

        t0 = time.perf_counter()
        train(cfg, run, progress=count, should_stop=lambda step=step: step["n"] >= args.steps, faces=train_part,
              resume=(run / "checkpoint.pt").exists())
        seconds = time.perf_counter() - t0
        state = load_resume_state(run)
        g = Generator(Architecture.from_dict(state["architecture"]))
        g.load_state_dict(state["G_ema"])
        g.eval()
        with torch.no_grad():
            images = torch.cat([g(z[i:i + 256], conds[i:i + 256]) for i in range(0, len(z), 256)])
        acc = accuracy(scores(tagger, images), conds)
        results["runs"][choice] = {"accuracy": acc, "seconds": seconds, "img_per_sec": args.steps * 64 / seconds}
        print(f"{choice:<11} {args.steps} steps in {seconds:.0f} s ({args.steps * 64 / seconds:.0f} img/s): "
              + ", ".join(f"{k} {v:.3f}" for k, v in acc.items()), flush=True)
    (out / "conditioning_choice.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

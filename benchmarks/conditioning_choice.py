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
from mangagan_app.ml.resume_state import load_resume_state
from mangagan_app.ml.sampling import complete_condition, noise
from mangagan_app.ml.trainer import train


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
    return torch.cat(
        [
            tagger(images[i : i + 256], torch.zeros(len(images[i : i + 256]), VOCABULARY.dim))[1]
            for i in range(0, len(images), 256)
        ]
    )


def accuracy(pred: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
    """Per exclusive group: share of argmax hits; free tags: recall on requested tags and
    false-positive rate on tags not requested."""
    out: dict[str, float] = {}
    start = 0
    for group in VOCABULARY.groups:
        n = len(group.values)
        p, t = pred[:, start : start + n], target[:, start : start + n]
        if group.exclusive:
            out[group.name] = float((p.argmax(1) == t.argmax(1)).float().mean())
        else:
            present = t > 0.5
            said = p > 0
            out["tag_recall"] = float(said[present].float().mean())
            out["tag_false_pos"] = float(said[~present].float().mean())
            out["worst_tag_recall"] = min(
                float(said[:, i][present[:, i]].float().mean()) for i in range(n) if present[:, i].any()
            )
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
    ap.add_argument("--tagger-cache", help="file to keep the trained tagger in (shared by parallel runs)")
    ap.add_argument("--tagger-width", type=int, default=32)
    ap.add_argument("--precision", default="fp32", choices=("auto", "bf16", "fp32"))
    ap.add_argument(
        "--wait-for-tagger",
        action="store_true",
        help="wait for --tagger-cache to appear instead of training the tagger here",
    )
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    faces = load_face_folder(args.data, 64)
    held = len(faces) // 6
    train_part, test_part = subset(faces, slice(0, len(faces) - held)), subset(faces, slice(len(faces) - held, None))
    tagger_cache = Path(args.tagger_cache) if args.tagger_cache else None
    tagger_box: list[Discriminator] = []
    results: dict = {"steps": args.steps, "width": args.width, "loss": args.loss, "runs": {}}

    def tagger() -> Discriminator:
        """Trained once (the same seed and data give the same tagger) and cached on disk."""
        if not tagger_box:
            t0 = time.perf_counter()
            while args.wait_for_tagger and not tagger_cache.exists():
                time.sleep(5)  # another process is training it
            if tagger_cache and tagger_cache.exists():
                net = Discriminator(Architecture(64, args.tagger_width, 128, VOCABULARY.dim, "acgan"))
                net.load_state_dict(torch.load(tagger_cache, weights_only=True))
                net.eval()
            else:
                net = train_tagger(train_part, args.tagger_steps, args.tagger_width)
                if tagger_cache:
                    torch.save(net.state_dict(), tagger_cache.with_suffix(".tmp"))
                    tagger_cache.with_suffix(".tmp").replace(tagger_cache)
            x_test = test_part.batch(torch.arange(len(test_part)), torch.zeros(len(test_part), dtype=torch.bool))[0]
            results["tagger_on_real"] = accuracy(scores(net, x_test), test_part.cond)
            print(
                f"tagger on {held} unseen real faces ({time.perf_counter() - t0:.0f} s): "
                + ", ".join(f"{k} {v:.3f}" for k, v in results["tagger_on_real"].items()),
                flush=True,
            )
            tagger_box.append(net)
        return tagger_box[0]

    rng = np.random.default_rng(123)
    hair = VOCABULARY.group("hair_colour").values
    conds = torch.from_numpy(
        np.stack(
            [
                complete_condition(
                    Attributes(
                        {"hair_colour": hair[i % len(hair)]}, {t for t in VOCABULARY.free_tags if rng.random() < 0.2}
                    ),
                    rng,
                )
                for i in range(1300)
            ]
        )
    )
    # "looking_up" and "looking_down" together is not a face the data has.
    up, down = VOCABULARY.offset("tags") + np.array(
        [VOCABULARY.free_tags.index(t) for t in ("looking_up", "looking_down")]
    )
    conds[conds[:, up] * conds[:, down] > 0, down] = 0
    z = noise(len(conds), 128, 99)

    if not args.choices:
        tagger()
    for choice in filter(None, args.choices.split(",")):
        cfg = TrainingConfig(
            data=args.data,
            width=args.width,
            conditioning=choice,
            loss=args.loss,
            epochs=1000,
            preview_steps=10**9,
            checkpoint_minutes=10**6,
            threads=args.threads,
            precision=args.precision,
        )
        run = (
            out / f"{choice}-{args.loss}-w{args.width}"
            if args.precision == "fp32"
            else out / f"{choice}-{args.loss}-w{args.width}-{args.precision}"
        )
        resume = (run / "checkpoint.pt").exists()
        done = [load_resume_state(run)["step"] if resume else 0]

        def budget_spent(done=done) -> bool:  # polled once before each step
            if done[0] >= args.steps:
                return True
            done[0] += 1
            return False

        t0 = time.perf_counter()
        train(cfg, run, should_stop=budget_spent, faces=train_part, resume=resume)
        seconds = time.perf_counter() - t0
        state = load_resume_state(run)
        row = {"seconds": seconds, "trained_steps_this_call": state["step"]}
        for key in ("G", "G_ema"):
            g = Generator(Architecture.from_dict(state["architecture"]))
            g.load_state_dict(state[key])
            g.eval()
            with torch.no_grad():
                images = torch.cat([g(z[i : i + 256], conds[i : i + 256]) for i in range(0, len(z), 256)])
            row[key] = accuracy(scores(tagger(), images), conds)
            print(
                f"{choice:<11} {key:<5} {state['step']} steps: "
                + ", ".join(f"{k} {v:.3f}" for k, v in row[key].items()),
                flush=True,
            )
        results["runs"][choice] = row
    (out / "conditioning_choice.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

"""How good are these generators? The evaluation of ``mangagan evaluate`` for one or
more models on the same training folder, with a side-by-side summary (e.g. the
DCGAN vs DRAGAN runs of the same budget).

    python benchmarks/quality.py A.safetensors B.safetensors --data DATA [--unseen-dir DIR] --json quality.json

Every model is measured with the same seeds, the same tagger and the same unseen
faces, so the columns compare. Prints each full table, then the summary.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from mangagan_app.core.files import atomic_write_text
from mangagan_app.ml.evaluation import EvaluationSettings, evaluate, format_report
from mangagan_app.ml.tagger import load_tagger


def summary_rows(results: list[dict]) -> list[tuple[str, list[str]]]:
    """(label, one cell per model) rows of the comparison."""

    def pct(x: float) -> str:
        return f"{100 * x:.1f}%"

    rows = [
        ("model", [r["model"]["name"] for r in results]),
        ("training steps", [str(r["model"]["training_steps"]) for r in results]),
    ]
    for group in ("hair_colour", "eye_colour", "hair_style", "tags"):
        rows.append(
            (
                f"{group} mean / worst",
                [
                    f"{pct(r['attributes']['groups'][group]['mean'])} / "
                    f"{pct(r['attributes']['groups'][group]['worst'])}"
                    for r in results
                ],
            )
        )
    rows.append(
        (
            "Fréchet (tagger) gen / floor",
            [f"{r['fidelity']['generated_vs_real']:.3f} / {r['fidelity']['real_vs_real_floor']:.3f}" for r in results],
        )
    )
    rows.append(
        (
            "memorisation (both / px / feat)",
            [
                f"{pct(r['originality']['memorisation_rate'])} / "
                f"{pct(r['originality']['pixels']['memorisation_rate'])} / "
                f"{pct(r['originality']['features']['memorisation_rate'])}"
                for r in results
            ],
        )
    )
    rows.append(("detectability ratio", [f"{r['detectability']['ratio']:.3f}" for r in results]))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("weights", nargs="+", help="NAME.safetensors files (cards beside them)")
    parser.add_argument("--data", required=True, help="the training folder they share")
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--per-value", type=int, default=100)
    parser.add_argument("--detect", type=int, default=500)
    parser.add_argument("--unseen", type=int, default=2000)
    parser.add_argument("--unseen-dir", help="folder of unseen real faces (default: sketchbook, seed + 1)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1)")
    parser.add_argument("--json", default="quality.json", help="where to write all reports (quality.json)")
    args = parser.parse_args()
    settings = EvaluationSettings(
        n=args.n, per_value=args.per_value, detect=args.detect, unseen=args.unseen, threads=args.threads
    )
    tagger = load_tagger()
    results = []
    for weights in args.weights:

        def show(stage: str, done: int, total: int, name: str = Path(weights).stem) -> None:
            print(f"\r{name}: {stage} {done}/{total}".ljust(70), end="", file=sys.stderr, flush=True)

        result, _ = evaluate(
            weights, args.data, settings=settings, tagger=tagger, unseen_dir=args.unseen_dir, progress=show
        )
        print(file=sys.stderr)
        print(format_report(result), end="\n\n")
        results.append(result)
    rows = summary_rows(results)
    width = max(len(label) for label, _ in rows) + 2
    cell = max(len(c) for _, cells in rows for c in cells) + 2
    for label, cells in rows:
        print(label.ljust(width) + "".join(c.rjust(cell) for c in cells))
    atomic_write_text(args.json, json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

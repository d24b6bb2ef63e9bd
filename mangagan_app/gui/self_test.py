"""``mangagan-studio --self-test``: prove that this installation (source or frozen build) works.

Starts Qt offscreen, loads the default weights (or ``--weights``), generates a face,
runs the animeface self-check in a spawned worker process (the way the Dataset tab
runs the detector, so a frozen build's multiprocessing is covered too), opens the
main window and waits for the Generate tab to show a face, then writes the face
and a picture of the window as PNGs. One line per step goes to stdout; the exit
status is 0 when every step passed and 1 otherwise (the failing line says why).
"""

from __future__ import annotations

import argparse
import io
import multiprocessing
import os
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

WINDOW_TIMEOUT_S = 180.0  # loading + first render; a frozen build on a busy 2-core machine needs ~10 s


class SelfTestFailure(Exception):
    """One step of the self-test failed; the message says which and why."""


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="mangagan-studio --self-test", description=__doc__.splitlines()[0])
    parser.add_argument("--self-test", action="store_true", required=True)
    parser.add_argument("--weights", type=Path, help="NAME.safetensors to test (default: the model in weights/)")
    parser.add_argument(
        "--output",
        type=Path,
        default=Path(tempfile.gettempdir()) / "mangagan-self-test.png",
        help="face PNG to write; the window picture goes beside it (default: in the temp folder)",
    )
    return parser.parse_args(argv)


def run_self_test(argv: list[str], out: Callable[[str], None] = print) -> int:
    """Run every step, reporting through ``out``; 0 when all passed, 1 at the first failure."""
    args = parse_args(argv)
    # Before the QApplication exists: the self-test must run without a screen.
    os.environ["QT_QPA_PLATFORM"] = "offscreen"
    from mangagan_app import __version__

    frozen = getattr(sys, "_MEIPASS", None)
    out(f"MangaGAN Studio {__version__} self-test ({'frozen build in ' + frozen if frozen else 'from source'})")
    try:
        _steps(args, out)
    except SelfTestFailure as exc:
        out(f"FAILED: {exc}")
        return 1
    out("self-test passed")
    return 0


def _steps(args: argparse.Namespace, out: Callable[[str], None]) -> None:
    from PySide6 import __version__ as pyside_version

    from mangagan_app.core.files import atomic_write_bytes
    from mangagan_app.gui.application import create_application

    app = create_application([sys.argv[0]])  # kept referenced until the steps are done
    out(f"Qt {pyside_version} started on the {app.platformName()} platform: ok")

    weights = _weights_to_test(args.weights)
    face_png = _generate_face(weights, out)
    message = _detector_check_in_worker()
    out(f"detector (animeface in a spawned process): {message}: ok")

    window_png = _show_in_window(weights, out)
    window_path = args.output.with_name(args.output.stem + "-window.png")
    try:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(args.output, face_png)
        atomic_write_bytes(window_path, window_png)
    except OSError as exc:
        raise SelfTestFailure(f"cannot write {args.output}: {exc.strerror or exc}") from None
    out(f"wrote {args.output} and {window_path}")


def _weights_to_test(explicit: Path | None) -> Path:
    from mangagan_app.config import WEIGHTS_DIR
    from mangagan_app.ml.generator_service import find_default_weights

    if explicit is not None:
        return explicit
    weights = find_default_weights(WEIGHTS_DIR) if WEIGHTS_DIR.is_dir() else None
    if weights is None:
        raise SelfTestFailure(f"no default weights: no .safetensors file in {WEIGHTS_DIR}")
    return weights


def _generate_face(weights: Path, out: Callable[[str], None]) -> bytes:
    """Load ``weights`` with the checkpoint loader, draw seed 0, return it as PNG bytes (enlarged to ≥256 px)."""
    import numpy as np
    import torch
    from PIL import Image

    from mangagan_app.core.attributes import Attributes
    from mangagan_app.ml.checkpoint import WeightsError, load_generator
    from mangagan_app.ml.sampling import generate

    start = time.perf_counter()
    try:
        generator, card = load_generator(weights)
    except WeightsError as exc:
        raise SelfTestFailure(f"cannot load the weights: {exc}") from None
    out(
        f"weights {weights} (sha256 {card['sha256'][:12]}…, {generator.arch.resolution} px, "
        f"torch {torch.__version__}): ok"
    )
    with torch.inference_mode():
        face = generate(generator, Attributes(), 1, seed=0)[0]  # (H, W, 3) uint8
    seconds = time.perf_counter() - start
    if face.ndim != 3 or face.shape[2] != 3 or np.ptp(face) == 0:
        raise SelfTestFailure(f"the generator drew a blank or misshapen image {face.shape}")
    out(f"face generated ({face.shape[1]}x{face.shape[0]}, {seconds:.2f} s including loading): ok")
    image = Image.fromarray(face)
    factor = max(1, 256 // image.width)
    buf = io.BytesIO()
    image.resize((image.width * factor, image.height * factor), Image.Resampling.NEAREST).save(buf, format="PNG")
    return buf.getvalue()


def _detector_check_in_worker() -> str:
    from mangagan_app.core.cropping.detector import detector_self_check

    context = multiprocessing.get_context("spawn")
    try:
        with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
            result = pool.submit(detector_self_check).result(timeout=120)
    except Exception as exc:  # noqa: BLE001 - a broken worker process is the finding
        raise SelfTestFailure(f"the detector worker process failed: {exc!r}") from None
    if not result.ok:
        raise SelfTestFailure(f"detector: {result.message}")
    return result.message


def _show_in_window(weights: Path, out: Callable[[str], None]) -> bytes:
    """Open the main window with throwaway settings, let the Generate tab draw ``weights``' first face,
    return a PNG of the window."""
    from PySide6.QtCore import QBuffer, QEventLoop, QIODevice, QSettings, QTimer

    from mangagan_app.gui.main_window import MainWindow

    with tempfile.TemporaryDirectory(prefix="mangagan-self-test-") as tmp:
        settings = QSettings(str(Path(tmp) / "settings.ini"), QSettings.Format.IniFormat)
        window = MainWindow(settings)
        window.tabs.setCurrentWidget(window.generate_tab)
        window.show()
        messages: list[str] = []
        loop = QEventLoop()
        window.generate_tab.status_message.connect(messages.append)
        window.generate_tab.face_shown.connect(loop.quit)
        timer = QTimer(singleShot=True)
        timer.timeout.connect(loop.quit)
        start = time.perf_counter()
        window.generate_tab.load_model(weights)
        timer.start(int(WINDOW_TIMEOUT_S * 1000))
        loop.exec()
        shown = window.generate_tab.canvas.image() is not None and timer.isActive()
        timer.stop()
        if not shown:
            window.close()
            last = messages[-1] if messages else "no message"
            raise SelfTestFailure(f"the Generate tab showed no face within {WINDOW_TIMEOUT_S:.0f} s ({last})")
        out(f"window: the Generate tab showed the face after {time.perf_counter() - start:.1f} s: ok")
        buf = QBuffer()
        buf.open(QIODevice.OpenModeFlag.WriteOnly)
        window.grab().save(buf, "PNG")
        window.close()
        return bytes(buf.data())

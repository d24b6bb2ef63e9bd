"""The Train tab: choose data and settings, start / stop / resume, watch losses and previews.

The run itself happens in :class:`TrainWorker` (a QThread around ``ml.trainer.train``);
this widget only turns its signals into a progress bar, plots of the losses and of how D
rates real and generated faces, a warning banner when the run fails, and a preview.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEvent, QObject, QSettings, Qt, Signal
from PySide6.QtGui import QDragEnterEvent, QDropEvent, QImage, QKeySequence, QPixmap, QShortcut
from PySide6.QtWidgets import (
    QButtonGroup,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QRadioButton,
    QSizePolicy,
    QSpinBox,
    QStyle,
    QVBoxLayout,
    QWidget,
)

from mangagan_app.config import LOSSES, TrainingConfig
from mangagan_app.gui.app import app_data_dir
from mangagan_app.gui.settings_values import setting
from mangagan_app.gui.train_worker import SketchbookSource, TrainWorker
from mangagan_app.ml.checkpoint import export_run
from mangagan_app.ml.device import choose_device
from mangagan_app.ml.health import ADVICE
from mangagan_app.ml.run_history import RATING_KEYS, RunHistory
from mangagan_app.ml.trainer import Preview, TrainProgress, TrainResult

# What each plotted statistic is called in the legends, and its colour.
CURVES = {"d_adv": ("D loss", "#d62728"), "g_adv": ("G loss", "#1f77b4"), "d_cls": ("D tag loss", "#ff7f0e"),
          "g_cls": ("G tag loss", "#2ca02c"), "gp": ("gradient penalty", "#9467bd"),
          "d_real": ("D on real faces", "#8c564b"), "d_fake": ("D on generated faces", "#e377c2")}
# The trainer's advice names command-line flags; the tab names its own controls. Every
# run started here uses adaptive augmentation (the TrainingConfig default), so the only
# way to get it from the tab is a new run.
TAB_ADVICE = ("Try more faces, or fine-tune a model that already draws faces: choose its run folder in "
              '"Start from" and press Start. New runs started here use adaptive augmentation.')
# Previews and progress ticks are cheap next to a step and are what people watch, so the tab
# asks for them more often than the command line does.
GUI_PREVIEW_STEPS = 100
GUI_TICK_STEPS = 10


def format_eta(seconds: float) -> str:
    seconds = int(max(0, seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


def banner_text(warning: str) -> str:
    """The trainer's ``warning`` as a sentence for the banner, with the tab's advice in place of the CLI's."""
    what, advised, _ = warning.partition("; " + ADVICE)
    text = what[:1].upper() + what[1:]
    return f"{text}. {TAB_ADVICE}" if advised else text


def preview_pixmap(image: np.ndarray) -> QPixmap:
    height, width, _ = image.shape
    data = np.ascontiguousarray(image)
    qimage = QImage(data.data, width, height, 3 * width, QImage.Format.Format_RGB888)
    return QPixmap.fromImage(qimage.copy())


class TrainTab(QWidget):
    """Emits ``model_exported(weights_path)`` when the user sends a run to the Generate tab."""

    model_exported = Signal(Path)
    status_message = Signal(str)

    def __init__(self, settings: QSettings, parent: QWidget | None = None):
        super().__init__(parent)
        self.settings = settings
        self.worker: TrainWorker | None = None
        self.last_progress: TrainProgress | None = None
        self.history = RunHistory()
        self.curves: dict[str, pg.PlotDataItem] = {}
        self.preview_image: QPixmap | None = None  # the latest preview, unscaled
        self.setAcceptDrops(True)
        defaults = TrainingConfig()

        layout = QHBoxLayout(self)
        controls = QVBoxLayout()
        layout.addLayout(controls, 0)
        controls.addWidget(self._build_data_box())
        controls.addWidget(self._build_settings_box(defaults))
        controls.addLayout(self._build_buttons())
        controls.addStretch(1)

        monitor = QVBoxLayout()
        layout.addLayout(monitor, 1)
        self.progress_bar = QProgressBar()
        self.progress_bar.setFormat("%p %")
        self.progress_label = QLabel("Not running. Pick data and press Start.")
        # A tick's statistics in one line are wider than the plots; wrapped, they never widen the window.
        self.progress_label.setWordWrap(True)
        monitor.addWidget(self.progress_bar)
        monitor.addWidget(self.progress_label)
        monitor.addWidget(self._build_warning_banner())
        monitor.addWidget(self._build_plots(), 1)
        self.preview_label = QLabel("Previews appear here during training: one row per hair colour.")
        self.preview_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.preview_label.setMinimumHeight(260)
        # The layout sizes the label and the preview is scaled to fit it, never the other way:
        # a preview scaled before the banner appeared would otherwise push into the plots.
        self.preview_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Ignored)
        self.preview_label.installEventFilter(self)
        monitor.addWidget(self.preview_label, 1)

        self._restore_choices()
        self.run_edit.textChanged.connect(self._update_buttons)
        self._update_buttons()

    # ---- building ---------------------------------------------------------------
    def _build_warning_banner(self) -> QFrame:
        self.warning_banner = QFrame()
        self.warning_banner.setObjectName("trainWarning")
        # Fixed colours for text and background alike, so it reads the same in dark themes.
        self.warning_banner.setStyleSheet(
            "QFrame#trainWarning { background: #fff4ce; border: 1px solid #d39e00; border-radius: 4px; }"
            "QFrame#trainWarning QLabel { color: #3d2b00; background: transparent; border: none; }")
        icon = QLabel()
        icon.setPixmap(self.style().standardIcon(QStyle.StandardPixmap.SP_MessageBoxWarning).pixmap(32, 32))
        icon.setAlignment(Qt.AlignmentFlag.AlignTop)
        title = QLabel("<b>This run has stopped improving</b>")
        self.warning_label = QLabel()
        self.warning_label.setWordWrap(True)
        self.warning_label.setTextFormat(Qt.TextFormat.PlainText)
        self.warning_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        text = QVBoxLayout()
        text.addWidget(title)
        text.addWidget(self.warning_label)
        row = QHBoxLayout(self.warning_banner)
        row.addWidget(icon, 0)
        row.addLayout(text, 1)
        self.warning_banner.hide()
        return self.warning_banner

    def _build_plots(self) -> pg.GraphicsLayoutWidget:
        """The losses above and D's ratings (0..1) below, sharing the step axis; each
        legend sits in a column of its own, so it never hides a curve."""
        plots = pg.GraphicsLayoutWidget()
        plots.setBackground("w")
        plots.setMinimumHeight(260)  # leaves the ratings plot room for its 0, 0.5 and 1 labels
        plots.setToolTip("D, the discriminator, rates faces as real (1) or generated (0); "
                         "G, the generator, draws faces and learns from D's ratings")
        self.loss_plot = plots.addPlot(row=0, col=0)
        self.loss_plot.setLabel("left", "loss")
        self.rating_plot = plots.addPlot(row=1, col=0)
        self.rating_plot.setLabel("left", "rated real")
        self.rating_plot.setLabel("bottom", "step")
        self.rating_plot.setXLink(self.loss_plot)
        self.rating_plot.setYRange(0.0, 1.0, padding=0.02)
        # 0 (surely generated) and 1 (surely real) are the ticks that matter. The axis drops
        # labels that reach past its ends unless told not to, which it ignores while it draws a grid.
        ratings_axis = self.rating_plot.getAxis("left")
        ratings_axis.setTicks([[(0.0, "0"), (0.5, "0.5"), (1.0, "1")]])
        ratings_axis.setStyle(hideOverlappingLabels=False)
        self.rating_plot.setMouseEnabled(x=True, y=False)
        self.legends: dict[pg.PlotItem, pg.LegendItem] = {}
        for row, plot in enumerate((self.loss_plot, self.rating_plot)):
            plot.showGrid(x=True, y=plot is self.loss_plot, alpha=0.3)
            plot.getAxis("left").setWidth(48)  # the same width for both, so their steps line up
            legend = pg.LegendItem(labelTextColor="k", frame=False)
            plots.addItem(legend, row=row, col=1)
            self.legends[plot] = legend
        plots.ci.layout.setRowStretchFactor(0, 3)
        plots.ci.layout.setRowStretchFactor(1, 2)
        return plots

    def _build_data_box(self) -> QGroupBox:
        box = QGroupBox("Training data")
        form = QVBoxLayout(box)
        self.use_sketchbook = QRadioButton("Sketchbook faces drawn by the app")
        self.use_folder = QRadioButton("Face images with .txt tags, or a reviewed dataset (its kept crops)")
        group = QButtonGroup(self)
        group.addButton(self.use_sketchbook)
        group.addButton(self.use_folder)
        self.sketchbook_count = QSpinBox()
        self.sketchbook_count.setRange(256, 200_000)
        self.sketchbook_count.setSingleStep(1000)
        self.sketchbook_count.setValue(4000)
        self.sketchbook_count.setSuffix(" faces")
        self.folder_edit = QLineEdit()
        self.folder_edit.setPlaceholderText("Drop a folder here or browse…")
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse_data)
        form.addWidget(self.use_sketchbook)
        form.addWidget(self.sketchbook_count)
        form.addWidget(self.use_folder)
        row = QHBoxLayout()
        row.addWidget(self.folder_edit, 1)
        row.addWidget(browse)
        form.addLayout(row)
        self.use_sketchbook.setChecked(True)
        return box

    def _build_settings_box(self, defaults: TrainingConfig) -> QGroupBox:
        box = QGroupBox("Settings")
        form = QFormLayout(box)
        self.resolution = QComboBox()
        self.resolution.addItems(["64", "128"])
        self.width_spin = QSpinBox()
        self.width_spin.setRange(8, 256)
        self.width_spin.setValue(defaults.width)
        self.width_spin.setToolTip("Channels of the networks' widest layer: wider is slower and better")
        self.batch_spin = QSpinBox()
        self.batch_spin.setRange(2, 1024)
        self.batch_spin.setValue(defaults.batch)
        self.epochs_spin = QSpinBox()
        self.epochs_spin.setRange(1, 10_000)
        self.epochs_spin.setValue(defaults.epochs)
        self.loss_combo = QComboBox()
        self.loss_combo.addItems(list(LOSSES))
        self.loss_combo.setToolTip("dcgan: non-saturating GAN loss; hinge: the hinge loss of SNGAN/BigGAN; "
                                   "dragan: dcgan plus DRAGAN's gradient penalty")
        self.g_conditioning_combo = QComboBox()
        self.g_conditioning_combo.addItem("At every block (FiLM)", "film")
        self.g_conditioning_combo.addItem("At the input only", "input")
        self.g_conditioning_combo.setCurrentIndex(self.g_conditioning_combo.findData(defaults.g_conditioning))
        self.g_conditioning_combo.setToolTip("Where the generator takes the ticked attributes: at every block "
                                             "reaches small details (hats, eye colour) better")
        self.init_edit = QLineEdit()
        self.init_edit.setPlaceholderText("Optional: an earlier run to fine-tune")
        self.init_edit.setToolTip("Start from the networks of an earlier run folder instead of random weights, "
                                  "e.g. to fine-tune it on your own reviewed faces")
        init_row = self._folder_row(self.init_edit, "Earlier run to start from",
                                    "Choose the earlier run folder to start from")
        self.run_edit = QLineEdit(str(app_data_dir() / "runs" / time.strftime("run-%Y%m%d-%H%M%S")))
        run_row = self._folder_row(self.run_edit, "Run folder",
                                   "Choose the run folder (an existing one can be resumed)")
        form.addRow("Resolution (px)", self.resolution)
        form.addRow("Network width", self.width_spin)
        form.addRow("Batch size", self.batch_spin)
        form.addRow("Epochs", self.epochs_spin)
        form.addRow("Loss", self.loss_combo)
        form.addRow("Attributes in G", self.g_conditioning_combo)
        form.addRow("Start from", init_row)
        form.addRow("Run folder", run_row)
        form.addRow("Device", QLabel(choose_device(leave_core_for_gui=True).description))
        return box

    def _build_buttons(self) -> QHBoxLayout:
        row = QHBoxLayout()
        self.start_button = QPushButton("Start")
        self.stop_button = QPushButton("Stop")
        self.resume_button = QPushButton("Resume")
        self.use_button = QPushButton("Use in Generate")
        shortcuts = {self.start_button: "Ctrl+Return", self.stop_button: "Ctrl+.",
                     self.resume_button: "Ctrl+Shift+Return"}
        tips = {self.start_button: "Start a new run in the run folder",
                self.stop_button: "Stop after the current step and save a checkpoint",
                self.resume_button: "Continue the run in the run folder from its last checkpoint"}
        for button, keys in shortcuts.items():
            shortcut = QShortcut(QKeySequence(keys), self)
            shortcut.activated.connect(button.click)
            button.setToolTip(f"{tips[button]} ({QKeySequence(keys).toString(QKeySequence.SequenceFormat.NativeText)})")
        self.use_button.setToolTip("Export the run's generator and open it in the Generate tab")
        self.start_button.clicked.connect(lambda: self.start(resume=False))
        self.resume_button.clicked.connect(lambda: self.start(resume=True))
        self.stop_button.clicked.connect(self.stop)
        self.use_button.clicked.connect(self.export_for_generate)
        for button in (self.start_button, self.stop_button, self.resume_button, self.use_button):
            row.addWidget(button)
        return row

    # ---- settings persistence -----------------------------------------------------
    def _restore_choices(self) -> None:
        s = self.settings
        self.use_folder.setChecked(setting(s, "train/use_folder", False))
        self.folder_edit.setText(setting(s, "train/folder", ""))
        self.sketchbook_count.setValue(setting(s, "train/sketchbook_count", self.sketchbook_count.value()))
        self.resolution.setCurrentText(setting(s, "train/resolution", "64"))
        self.width_spin.setValue(setting(s, "train/width", self.width_spin.value()))
        self.batch_spin.setValue(setting(s, "train/batch", self.batch_spin.value()))
        self.epochs_spin.setValue(setting(s, "train/epochs", self.epochs_spin.value()))
        self.loss_combo.setCurrentText(setting(s, "train/loss", "dcgan"))
        chosen = self.g_conditioning_combo.findData(setting(s, "train/g_conditioning", ""))
        if chosen >= 0:
            self.g_conditioning_combo.setCurrentIndex(chosen)
        self.init_edit.setText(setting(s, "train/init_from", ""))
        last_run = setting(s, "train/run_dir", "")
        if last_run:
            self.run_edit.setText(last_run)

    def _save_choices(self) -> None:
        s = self.settings
        s.setValue("train/use_folder", self.use_folder.isChecked())
        s.setValue("train/folder", self.folder_edit.text())
        s.setValue("train/sketchbook_count", self.sketchbook_count.value())
        s.setValue("train/resolution", self.resolution.currentText())
        s.setValue("train/width", self.width_spin.value())
        s.setValue("train/batch", self.batch_spin.value())
        s.setValue("train/epochs", self.epochs_spin.value())
        s.setValue("train/loss", self.loss_combo.currentText())
        s.setValue("train/g_conditioning", self.g_conditioning_combo.currentData())
        s.setValue("train/init_from", self.init_edit.text())
        s.setValue("train/run_dir", self.run_edit.text())

    # ---- actions ------------------------------------------------------------------
    def config(self) -> TrainingConfig:
        """The settings form as a training config (the data folder is filled in by ``start``)."""
        return TrainingConfig(
            resolution=int(self.resolution.currentText()), width=self.width_spin.value(),
            batch=self.batch_spin.value(), epochs=self.epochs_spin.value(),
            loss=self.loss_combo.currentText(), leave_core_for_gui=True, preview_steps=GUI_PREVIEW_STEPS,
            tick_steps=GUI_TICK_STEPS, g_conditioning=self.g_conditioning_combo.currentData(),
            init_from=str(Path(self.init_edit.text().strip()).expanduser()) if self.init_edit.text().strip() else "",
        )

    def _sketchbook_source(self, resolution: int) -> SketchbookSource:
        count = self.sketchbook_count.value()
        return SketchbookSource(app_data_dir() / "sketchbook" / f"{resolution}px-{count}", count)

    def start(self, *, resume: bool) -> None:
        if self.is_running():
            return
        run_dir = Path(self.run_edit.text()).expanduser()
        cfg = self.config()
        if resume:
            saved = self._saved_config(run_dir)
            if saved is None:
                self._report(f"Nothing to resume in {run_dir}: it has no config.json from an earlier run.")
                return
            cfg = TrainingConfig.from_dict({**saved, "epochs": cfg.epochs, "leave_core_for_gui": True})
        sketchbook = None
        if self.use_folder.isChecked():
            folder = Path(self.folder_edit.text()).expanduser()
            if not folder.is_dir():
                self._report(f"The data folder {folder} does not exist.")
                return
            cfg.data = str(folder)
        else:
            sketchbook = self._sketchbook_source(cfg.resolution)
            cfg.data = str(sketchbook.folder)
        self._save_choices()
        # A new run starts with empty plots and no warning; a resumed one shows its past.
        self.history = RunHistory.from_stats(run_dir / "stats.jsonl") if resume else RunHistory()
        self._show_history()
        self.worker = TrainWorker(cfg, run_dir, resume=resume, sketchbook=sketchbook, parent=self)
        self.worker.progress.connect(self._on_progress)
        self.worker.preview.connect(self._on_preview)
        self.worker.succeeded.connect(self._on_finished)
        self.worker.failed.connect(self._on_failed)
        self.worker.finished.connect(self._update_buttons)
        self.worker.start()
        self.progress_label.setText("Starting…")
        self._update_buttons()

    def stop(self) -> None:
        if self.is_running():
            self.worker.requestInterruption()
            self.progress_label.setText("Stopping after the current step and saving…")

    def is_running(self) -> bool:
        return self.worker is not None and self.worker.isRunning()

    def wait_for_worker(self, msecs: int = 60_000) -> bool:
        """Ask a running worker to stop and wait for it (used when the window closes)."""
        if not self.is_running():
            return True
        self.worker.requestInterruption()
        return self.worker.wait(msecs)

    def export_for_generate(self) -> None:
        run_dir = Path(self.run_edit.text()).expanduser()
        name = app_data_dir() / "models" / run_dir.name
        try:
            weights, _card = export_run(run_dir, name)
        except Exception as exc:  # noqa: BLE001 - shown to the user, details in the log
            self._report(f"Could not export {run_dir}: {exc}")
            return
        self.status_message.emit(f"Exported {weights.name}; it is open in the Generate tab")
        self.model_exported.emit(weights)

    # ---- worker signals -------------------------------------------------------------
    def _on_progress(self, p: TrainProgress) -> None:
        self.last_progress = p
        self.progress_bar.setMaximum(max(1, p.total_steps))
        self.progress_bar.setValue(p.step)
        if p.phase == "drawing":
            self.progress_label.setText(f"Drawing sketchbook faces {p.step}/{p.total_steps}")
        elif p.phase == "loading":
            self.progress_label.setText(f"Loading images {p.step}/{p.total_steps}")
        elif p.phase == "started":
            self.progress_label.setText(f"Training {p.detail}: step {p.step}/{p.total_steps}")
        elif p.phase == "first_step":
            self.progress_label.setText(f"Step {p.step}/{p.total_steps} done · ETA {format_eta(p.eta_seconds)}")
        else:
            losses = "  ".join(f"{k} {v:.3f}" for k, v in sorted(p.losses.items()))
            self.progress_label.setText(
                f"Epoch {p.epoch}/{p.epochs} · step {p.step}/{p.total_steps} · {p.images_per_sec:.0f} img/s · "
                f"ETA {format_eta(p.eta_seconds)}\n{losses}")
            self.history.add(p.step, p.losses, p.warning)
            self._show_history()

    def _show_history(self) -> None:
        """Bring the curves and the banner in line with ``self.history``."""
        for key in [k for k in self.curves if k not in self.history.series]:
            curve, plot = self.curves.pop(key), self._plot_for(key)
            self.legends[plot].removeItem(curve)
            plot.removeItem(curve)
        for key, points in self.history.series.items():
            curve = self.curves.get(key)
            if curve is None:
                plot = self._plot_for(key)
                name, colour = CURVES[key]
                curve = plot.plot(pen=pg.mkPen(colour, width=2))
                self.legends[plot].addItem(curve, name)
                self.curves[key] = curve
            xs, ys = zip(*points, strict=True)
            curve.setData(list(xs), list(ys))
        self.warning_label.setText(banner_text(self.history.warning))
        self.warning_banner.setVisible(bool(self.history.warning))

    def _plot_for(self, key: str) -> pg.PlotItem:
        return self.rating_plot if key in RATING_KEYS else self.loss_plot

    def _on_preview(self, preview: Preview) -> None:
        self.preview_image = preview_pixmap(preview.image)
        self._fit_preview()
        self.preview_label.setToolTip(f"Preview at step {preview.step}: {preview.path}")

    def _fit_preview(self) -> None:
        if self.preview_image is not None:
            self.preview_label.setPixmap(self.preview_image.scaled(
                self.preview_label.size(), Qt.AspectRatioMode.KeepAspectRatio,
                Qt.TransformationMode.FastTransformation))

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt's name
        if watched is self.preview_label and event.type() == QEvent.Type.Resize:
            self._fit_preview()
        return super().eventFilter(watched, event)

    def _on_finished(self, result: TrainResult) -> None:
        verb = "Stopped" if result.stopped else "Finished"
        self.progress_label.setText(f"{verb} at step {result.step}/{result.total_steps}. "
                                    f"Checkpoint saved; Resume continues from it.")
        self.status_message.emit(f"Training {verb.lower()} at step {result.step}")

    def _on_failed(self, message: str) -> None:
        self._report(f"Training stopped: {message}")

    def _report(self, message: str) -> None:
        self.progress_label.setText(message)
        self.status_message.emit(message)

    def _update_buttons(self) -> None:
        running = self.is_running()
        has_checkpoint = (Path(self.run_edit.text()).expanduser() / "checkpoint.pt").exists()
        self.start_button.setEnabled(not running)
        self.resume_button.setEnabled(not running)
        self.stop_button.setEnabled(running)
        self.use_button.setEnabled(not running and has_checkpoint)

    @staticmethod
    def _saved_config(run_dir: Path) -> dict | None:
        try:
            return json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    # ---- browsing and dropping --------------------------------------------------------
    def _browse_data(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Folder of face images", self.folder_edit.text())
        if folder:
            self.folder_edit.setText(folder)
            self.use_folder.setChecked(True)

    def _folder_row(self, edit: QLineEdit, title: str, tip: str) -> QHBoxLayout:
        """``edit`` with a "…" button beside it that picks a folder into it."""
        pick = QPushButton("…")
        pick.setToolTip(tip)

        def browse() -> None:
            folder = QFileDialog.getExistingDirectory(self, title, edit.text())
            if folder:
                edit.setText(folder)  # the run folder's textChanged updates the buttons

        pick.clicked.connect(browse)
        row = QHBoxLayout()
        row.addWidget(edit, 1)
        row.addWidget(pick)
        return row

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802 - Qt's name
        if any(Path(url.toLocalFile()).is_dir() for url in event.mimeData().urls()):
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802 - Qt's name
        for url in event.mimeData().urls():
            path = Path(url.toLocalFile())
            if path.is_dir():
                self.folder_edit.setText(str(path))
                self.use_folder.setChecked(True)
                return

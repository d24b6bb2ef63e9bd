"""The Train tab: choose data and settings, start / stop / resume, watch losses and previews.

Before Start the tab shows the run's :class:`~mangagan_app.ml.training_plan.TrainingPlan`
(how many faces, steps, about how long, what was fitted to the data). The run itself
happens on a function worker (``ml.trainer.train_drawing_first`` on its own thread); this
widget only turns its signals into a progress bar, plots of the losses and of how D rates real and
generated faces, a warning banner when the run fails, and a preview.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEvent, QObject, QSettings, Qt, Signal
from PySide6.QtGui import QDragEnterEvent, QDropEvent, QImage, QKeySequence, QPixmap, QShortcut
from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
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
    QScrollArea,
    QSizePolicy,
    QSpinBox,
    QStyle,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from mangagan_app.config import WEIGHTS_DIR, TrainingConfig
from mangagan_app.core.attributes import AUTO_MAX_TAGS, AUTO_MIN_FACES, VOCABULARY
from mangagan_app.gui.function_worker import FunctionWorker, create_worker
from mangagan_app.gui.path_fields import fit_for_paths, shown_path
from mangagan_app.gui.paths import app_data_dir
from mangagan_app.gui.settings_values import setting
from mangagan_app.ml.checkpoint import export_run, fine_tunable_models
from mangagan_app.ml.device import choose_device
from mangagan_app.ml.health import ADVICE
from mangagan_app.ml.run_history import RATING_KEYS, RunHistory
from mangagan_app.ml.sampling import preview_sheet
from mangagan_app.ml.trainer import (
    PREVIEW_COLUMNS,
    Preview,
    SketchbookSource,
    TrainProgress,
    TrainResult,
    train_drawing_first,
)
from mangagan_app.ml.training_plan import (
    FEW_FACES,
    FaceCount,
    TrainingPlan,
    count_training_faces,
    fit_note,
    fresh_run_folder,
    measured_images_per_second,
    new_run_folder,
    plan_training,
    runs_to_start_from,
    suggested_settings,
)

# What each plotted statistic is called in the legends and the progress line, and its colour.
# D, the discriminator, is called the judge: it is what tells real faces from drawn ones.
CURVES = {
    "d_adv": ("Judge (D)", "#d62728"),
    "g_adv": ("Generator (G)", "#1f77b4"),
    "d_cls": ("Judge: tags", "#ff7f0e"),
    "g_cls": ("Generator: tags", "#2ca02c"),
    "gp": ("Judge: penalty", "#9467bd"),
    "d_real": ("Real faces", "#8c564b"),
    "d_fake": ("Generated faces", "#e377c2"),
}
CURVE_TIPS = {
    "d_adv": "d_adv: the discriminator's loss at telling real faces from generated ones",
    "g_adv": "g_adv: the generator's loss at making the discriminator rate its faces real",
    "d_cls": "d_cls: the discriminator's loss at reading the tags of real faces",
    "g_cls": "g_cls: the generator's loss at drawing the tags it was asked for",
    "gp": "gp: DRAGAN's gradient penalty on the discriminator",
    "d_real": "d_real: the discriminator's mean rating of real faces (1 = surely real)",
    "d_fake": "d_fake: the discriminator's mean rating of generated faces (0 = surely generated)",
}
# The settings in plain words; the trainer's own names are in each control's tooltip.
RESOLUTIONS = ((64, "64 × 64 px"), (128, "128 × 128 px"))
LOSS_CHOICES = (
    ("dcgan", "Standard", "dcgan: the non-saturating GAN loss (the shipped model's)"),
    ("hinge", "Hinge", "hinge: the hinge loss of SNGAN and BigGAN"),
    ("dragan", "Standard + smoothing penalty", "dragan: dcgan plus DRAGAN's gradient penalty (about 1.6× slower)"),
)
CONDITIONING_CHOICES = (("film", "Throughout the drawing"), ("input", "At the start only"))
# The trainer's advice names command-line flags; the tab names its own controls. Every
# run started here uses adaptive augmentation (the TrainingConfig default), so the only
# way to get it from the tab is a new run.
TAB_ADVICE = (
    "Try more faces, or fine-tune a model that already draws faces: choose the shipped model or "
    'an earlier run in "Start from" and press Start. New runs started here use adaptive augmentation.'
)
# A fine-tune started here keeps the judge's first two blocks as the model learned them
# (FreezeD, Mo et al. 2020): with a few hundred faces they would otherwise be unlearned first.
FINE_TUNE_FROZEN_D_BLOCKS = 2
# Below FEW_FACES it learns at a tenth of the usual rate: Adam moves every weight by about the
# learning rate per step whatever its gradient, and at 2e-4 on 60 real faces the shipped model's
# faces washed out into ghosts where 2e-5 kept them (README, "Your own characters"). From a few
# hundred faces up the usual rate is the better one (312 and 1,005 real faces: Fréchet about half
# the scratch run's), and the slow rate the worst.
FINE_TUNE_LEARNING_RATE = 2e-5
NO_RUN_TO_START_FROM = (
    "No earlier run here draws faces with these settings yet: train one on sketchbook faces "
    '(Training data: Sketchbook), then choose it in "Start from" to fine-tune it on your faces.'
)
# Previews and progress ticks are cheap next to a step and are what people watch, so the tab
# asks for them more often than the command line does.
GUI_PREVIEW_STEPS = 100
GUI_TICK_STEPS = 10


def start_from_name(path: Path) -> str:
    """A run folder by its name, a model by its name without ``.safetensors``."""
    return path.stem if path.suffix == ".safetensors" else path.name


def format_eta(seconds: float) -> str:
    seconds = int(max(0, seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


def banner_text(warning: str) -> str:
    """The trainer's ``warning`` as a sentence for the banner, with the tab's advice in place of the CLI's."""
    what, advised, _ = warning.partition("; " + ADVICE)
    text = what[:1].upper() + what[1:]
    return f"{text}. {TAB_ADVICE}" if advised else text


def statistics_line(values: dict[str, float]) -> str:
    """The plotted statistics of one tick by their plain names, in the legends' order."""
    return " · ".join(f"{CURVES[k][0]} {values[k]:.2f}" for k in CURVES if k in values)


def wrappable(text: str) -> str:
    """``text`` with a break opportunity after each "/", so a long path wraps in a label instead of
    widening it (a word-wrapped label breaks only at spaces)."""
    return text.replace("/", "/\u200b")


def array_pixmap(image: np.ndarray) -> QPixmap:
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
        self.worker: FunctionWorker | None = None
        self.last_progress: TrainProgress | None = None
        self.history = RunHistory()
        self.curves: dict[str, pg.PlotDataItem] = {}
        self.preview: Preview | None = None  # the latest preview, drawn to fit the label
        self.plan: TrainingPlan | None = None  # the plan of the settings shown (None: no usable data)
        self.running_plan: TrainingPlan | None = None  # the plan the running (or last) run started with
        self.plan_error = ""  # why there is no plan, in words
        self._face_count: FaceCount | None = None
        self.suggested_start: Path | None = None  # the run the failed-run banner offers to start from
        self.start_suggested = False  # "Start from" holds the shipped model because the data has few faces
        self.start_left_to_tab = True  # until the person chooses what to start from
        self.setAcceptDrops(True)
        defaults = TrainingConfig()

        layout = QHBoxLayout(self)
        controls_panel = QWidget()
        controls = QVBoxLayout(controls_panel)
        controls.setContentsMargins(0, 0, 0, 0)
        controls.addWidget(self._build_data_box())
        controls.addWidget(self._build_settings_box(defaults))
        controls.addWidget(self._build_advanced_box(defaults))
        controls.addStretch(1)
        # With Advanced open and the data notes shown the settings are taller than a laptop
        # screen; squeezed, their fields cut their own text, so the column scrolls instead.
        self.controls_scroll = QScrollArea()
        self.controls_scroll.setWidget(controls_panel)
        self.controls_scroll.setWidgetResizable(True)
        self.controls_scroll.setFrameShape(QFrame.Shape.NoFrame)
        self.controls_scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.controls_scroll.setMinimumWidth(
            controls_panel.minimumSizeHint().width() + self.style().pixelMetric(QStyle.PixelMetric.PM_ScrollBarExtent)
        )
        # Start and Stop stay in sight however far the settings scroll.
        column = QVBoxLayout()
        column.addWidget(self.controls_scroll, 1)
        column.addLayout(self._build_buttons())
        layout.addLayout(column, 0)

        monitor = QVBoxLayout()
        layout.addLayout(monitor, 1)
        self.progress_bar = QProgressBar()
        self.progress_bar.setFormat("%p %")
        self.progress_bar.setValue(0)
        self.progress_label = QLabel("Not running. Pick data and press Start.")
        # A tick's statistics in one line are wider than the plots; wrapped, they never widen the window.
        self.progress_label.setWordWrap(True)
        monitor.addWidget(self.progress_bar)
        monitor.addWidget(self.progress_label)
        monitor.addWidget(self._build_warning_banner())
        monitor.addWidget(self._build_plots(), 1)
        self.preview_label = QLabel(
            "Previews appear here during training: one column per hair colour, "
            "the same faces each time so you can watch them improve."
        )
        self.preview_label.setWordWrap(True)
        self.preview_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.preview_label.setMinimumHeight(300)
        # The layout sizes the label and the preview is drawn to fit it, never the other way:
        # a preview drawn before the banner appeared would otherwise push into the plots.
        self.preview_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Ignored)
        self.preview_label.installEventFilter(self)
        monitor.addWidget(self.preview_label, 1)

        self._restore_choices()
        self._face_count = self._counted_faces()
        if self._face_count is not None:  # the data may have grown or shrunk since the last session
            self._suggest_start_from(self._face_count.faces)
        self.run_edit.textChanged.connect(self._update_buttons)
        # What the plan depends on; a change of data also fits the batch and length to it.
        self.folder_edit.textChanged.connect(self._data_changed)
        # Typing a folder means training on it; changing the count means the sketchbook.
        self.folder_edit.textEdited.connect(lambda: self.use_folder.setChecked(True))
        self.sketchbook_count.valueChanged.connect(lambda: self.use_sketchbook.setChecked(True))
        self.use_folder.toggled.connect(self._data_changed)
        self.sketchbook_count.valueChanged.connect(self._data_changed)
        for spin in (self.batch_spin, self.epochs_spin, self.width_spin):
            spin.valueChanged.connect(self._update_plan)
        for combo in (self.resolution, self.loss_combo, self.g_conditioning_combo):
            combo.currentIndexChanged.connect(self._update_plan)
        self.init_edit.textChanged.connect(self._update_plan)
        self._update_plan()
        self._update_buttons()

    # ---- building ---------------------------------------------------------------
    def _build_warning_banner(self) -> QFrame:
        self.warning_banner = QFrame()
        self.warning_banner.setObjectName("trainWarning")
        # Fixed colours for text and background alike, so it reads the same in dark themes.
        self.warning_banner.setStyleSheet(
            "QFrame#trainWarning { background: #fff4ce; border: 1px solid #d39e00; border-radius: 4px; }"
            "QFrame#trainWarning QLabel { color: #3d2b00; background: transparent; border: none; }"
        )
        icon = QLabel()
        icon.setPixmap(self.style().standardIcon(QStyle.StandardPixmap.SP_MessageBoxWarning).pixmap(32, 32))
        icon.setAlignment(Qt.AlignmentFlag.AlignTop)
        title = QLabel("<b>This run has failed: it has stopped learning to draw faces</b>")
        self.warning_label = QLabel()
        self.warning_label.setWordWrap(True)
        self.warning_label.setTextFormat(Qt.TextFormat.PlainText)
        self.warning_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.start_from_button = QPushButton()
        self.start_from_button.clicked.connect(self._use_suggested_start)
        self.start_from_button.hide()
        text = QVBoxLayout()
        text.addWidget(title)
        text.addWidget(self.warning_label)
        text.addWidget(self.start_from_button, 0, Qt.AlignmentFlag.AlignLeft)
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
        plots.setToolTip(
            "<p>The judge (D, the discriminator) rates faces as real (1) or generated (0); "
            "the generator (G) draws faces and learns from the judge's ratings. In a healthy run "
            "neither wins: the ratings of real and generated faces stay apart but off 0 and 1.</p>"
            + "<br>".join(f"{CURVES[k][0]} — {tip}" for k, tip in CURVE_TIPS.items())
        )
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
        self.use_folder = QRadioButton("Your faces: a reviewed dataset, or face images with .txt tags")
        self.use_folder.setToolTip(
            "A dataset folder from the Dataset tab gives its kept crops; any other folder "
            "gives its images, tagged by the kohya .txt file beside each"
        )
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
        row.addWidget(fit_for_paths(self.folder_edit), 1)
        row.addWidget(browse)
        form.addLayout(row)
        self.plan_label = QLabel()
        self.plan_label.setWordWrap(True)
        self.plan_notes = QLabel()
        self.plan_notes.setWordWrap(True)
        self.plan_notes.setStyleSheet("QLabel { color: #8a5a00; }")
        form.addWidget(self.plan_label)
        form.addWidget(self.plan_notes)
        self.use_sketchbook.setChecked(True)
        return box

    def _build_settings_box(self, defaults: TrainingConfig) -> QGroupBox:
        box = QGroupBox("Settings")
        form = QFormLayout(box)
        # Labels above their fields: a whole path fits without widening the column, and the
        # previews and plots beside it keep their room.
        form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapAllRows)
        self.resolution = QComboBox()
        for pixels, label in RESOLUTIONS:
            self.resolution.addItem(label, pixels)
        self.resolution.setToolTip(
            "Resolution: the size of the faces the model draws; 128 px takes about four times as long as 64 px"
        )
        self.epochs_spin = QSpinBox()
        self.epochs_spin.setRange(1, 10_000)
        self.epochs_spin.setValue(defaults.epochs)
        self.epochs_spin.setSuffix(" passes")
        self.epochs_spin.setToolTip(
            "Epochs: how many times the run goes through all the faces. Choosing data "
            "sets it so that small datasets still get enough steps"
        )
        self.init_edit = QLineEdit()
        self.init_edit.setPlaceholderText("Optional: an earlier run or a model to fine-tune")
        self.init_edit.setToolTip(
            "Fine-tune (init from): start from the networks of the shipped model or an earlier "
            "run folder instead of random weights, to fine-tune it on your own reviewed faces "
            f"(the judge's first {FINE_TUNE_FROZEN_D_BLOCKS} blocks are kept: --freeze-d {FINE_TUNE_FROZEN_D_BLOCKS}; "
            f"below {FEW_FACES} faces learning rate {FINE_TUNE_LEARNING_RATE:g}: --lr {FINE_TUNE_LEARNING_RATE:g})"
        )
        init_row = self._folder_row(
            self.init_edit, "Earlier run to start from", "Choose the earlier run folder to start from"
        )
        self.start_from_combo = QComboBox()
        self.start_from_combo.addItem("Nothing: learn from scratch", "")
        for model in fine_tunable_models(WEIGHTS_DIR):
            self.start_from_combo.addItem(f"The shipped model ({model.stem})", shown_path(model))
        self.start_from_combo.addItem("An earlier run or model (below)", None)
        self.start_from_combo.setToolTip(
            "What the new run starts from. The shipped model already draws faces, so a few hundred "
            "of your own are enough to fine-tune it; from scratch needs thousands. With a face size "
            "larger than the model's, the model is grown to it (its drawing layers kept, a new finest "
            "layer and a new judge)"
        )
        self.start_from_combo.activated.connect(self._start_from_chosen)
        self.init_edit.textChanged.connect(self._show_start_from)
        # A start the person chose is theirs; one the tab chose for few faces follows the data.
        self.start_from_combo.activated.connect(self._start_chosen_by_person)
        self.init_edit.textEdited.connect(self._start_chosen_by_person)
        self.own_tags_check = QCheckBox("Learn the data's own tags (characters, costumes…)")
        self.own_tags_check.setChecked(True)
        self.own_tags_check.setToolTip(
            f"Vocabulary auto: tags on at least {AUTO_MIN_FACES} faces that the app does not know "
            f"(at most {AUTO_MAX_TAGS}, meta tags like 1girl left out) become checkboxes in Generate. "
            "Off: only the app's own tags (--vocabulary default)"
        )
        self.run_edit = QLineEdit(shown_path(new_run_folder(app_data_dir() / "runs")))
        self.run_edit.setToolTip(
            "Where this run keeps its checkpoint, statistics and previews. Start always "
            "makes a new run (in a new folder if this one holds a run); Resume continues "
            "the run in this folder"
        )
        run_row = self._folder_row(
            self.run_edit, "Run folder", "Choose the run folder (an existing one can be resumed)"
        )
        form.addRow("Face size", self.resolution)
        form.addRow("Training length", self.epochs_spin)
        form.addRow("Start from", self.start_from_combo)
        form.addRow("", init_row)
        form.addRow("Tags", self.own_tags_check)
        form.addRow("Run folder", run_row)
        device = QLabel(choose_device(leave_core_for_gui=True).description)
        device.setToolTip(
            "The compute device: a GPU when there is one, otherwise the CPU (one core is left for the window)"
        )
        form.addRow("Runs on", device)
        return box

    def _build_advanced_box(self, defaults: TrainingConfig) -> QWidget:
        """Settings most runs leave alone, folded away under an "Advanced" toggle."""
        holder = QWidget()
        outer = QVBoxLayout(holder)
        outer.setContentsMargins(0, 0, 0, 0)
        self.advanced_toggle = QToolButton()
        self.advanced_toggle.setText("Advanced")
        self.advanced_toggle.setCheckable(True)
        self.advanced_toggle.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.advanced_toggle.setAutoRaise(True)
        self.advanced_box = QGroupBox()
        form = QFormLayout(self.advanced_box)
        form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapAllRows)
        self.batch_spin = QSpinBox()
        self.batch_spin.setRange(2, 1024)
        self.batch_spin.setValue(defaults.batch)
        self.batch_spin.setToolTip(
            "Batch size: how many faces each training step looks at. It is lowered to fit "
            "when the data holds fewer faces"
        )
        self.width_spin = QSpinBox()
        self.width_spin.setRange(8, 256)
        self.width_spin.setValue(defaults.width)
        self.width_spin.setToolTip(
            "Network width: channels of the widest layer of both networks. Wider draws finer "
            "detail and trains slower (32 takes about three times as long as 16)"
        )
        self.loss_combo = QComboBox()
        for key, label, tip in LOSS_CHOICES:
            self.loss_combo.addItem(label, key)
            self.loss_combo.setItemData(self.loss_combo.count() - 1, tip, Qt.ItemDataRole.ToolTipRole)
        self.loss_combo.setToolTip(
            "Loss: how the generator and the judge score each other. " + "; ".join(tip for _, _, tip in LOSS_CHOICES)
        )
        self.g_conditioning_combo = QComboBox()
        for key, label in CONDITIONING_CHOICES:
            self.g_conditioning_combo.addItem(label, key)
        self.g_conditioning_combo.setCurrentIndex(self.g_conditioning_combo.findData(defaults.g_conditioning))
        self.g_conditioning_combo.setToolTip(
            "Generator conditioning: where the generator takes the ticked "
            "attributes. Throughout (film: FiLM at every block) reaches small "
            "details such as hats and eye colour better than at the start only "
            "(input)"
        )
        form.addRow("Faces per step", self.batch_spin)
        form.addRow("Network size", self.width_spin)
        form.addRow("Learning rule", self.loss_combo)
        form.addRow("Attributes steer", self.g_conditioning_combo)
        self.advanced_toggle.toggled.connect(self._show_advanced)
        self.advanced_toggle.toggled.connect(lambda on: self.settings.setValue("train/advanced", on))
        outer.addWidget(self.advanced_toggle, 0, Qt.AlignmentFlag.AlignLeft)
        outer.addWidget(self.advanced_box)
        self._show_advanced(False)
        return holder

    def _show_advanced(self, on: bool) -> None:
        self.advanced_box.setVisible(on)
        self.advanced_toggle.setArrowType(Qt.ArrowType.DownArrow if on else Qt.ArrowType.RightArrow)

    def _build_buttons(self) -> QHBoxLayout:
        row = QHBoxLayout()
        self.start_button = QPushButton("Start")
        self.stop_button = QPushButton("Stop")
        self.resume_button = QPushButton("Resume")
        self.use_button = QPushButton("Use in Generate")
        shortcuts = {
            self.start_button: "Ctrl+Return",
            self.stop_button: "Ctrl+.",
            self.resume_button: "Ctrl+Shift+Return",
        }
        tips = {
            self.start_button: "Start a new run (in a new folder if the run folder already holds one)",
            self.stop_button: "Stop after the current step and save a checkpoint",
            self.resume_button: "Continue the run in the run folder from its last checkpoint",
        }
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
        resolution = setting(s, "train/resolution", "64")
        self._choose(self.resolution, int(resolution) if resolution.isdigit() else 64)
        self.width_spin.setValue(setting(s, "train/width", self.width_spin.value()))
        self.batch_spin.setValue(setting(s, "train/batch", self.batch_spin.value()))
        self.epochs_spin.setValue(setting(s, "train/epochs", self.epochs_spin.value()))
        self._choose(self.loss_combo, setting(s, "train/loss", "dcgan"))
        self._choose(self.g_conditioning_combo, setting(s, "train/g_conditioning", ""))
        self.init_edit.setText(setting(s, "train/init_from", ""))
        # A start the tab chose for few faces stays the tab's to take back when the data grows.
        self.start_suggested = setting(s, "train/start_suggested", False) and bool(self.init_edit.text())
        self.start_left_to_tab = self.start_suggested or not self.init_edit.text()
        self.own_tags_check.setChecked(setting(s, "train/own_tags", True))
        last_run = setting(s, "train/run_dir", "")
        if last_run:
            self.run_edit.setText(last_run)
        self.advanced_toggle.setChecked(setting(s, "train/advanced", False))

    @staticmethod
    def _choose(combo: QComboBox, data) -> None:
        index = combo.findData(data)
        if index >= 0:
            combo.setCurrentIndex(index)

    def _save_choices(self) -> None:
        s = self.settings
        s.setValue("train/use_folder", self.use_folder.isChecked())
        s.setValue("train/folder", self.folder_edit.text())
        s.setValue("train/sketchbook_count", self.sketchbook_count.value())
        s.setValue("train/resolution", str(self.resolution.currentData()))
        s.setValue("train/width", self.width_spin.value())
        s.setValue("train/batch", self.batch_spin.value())
        s.setValue("train/epochs", self.epochs_spin.value())
        s.setValue("train/loss", self.loss_combo.currentData())
        s.setValue("train/g_conditioning", self.g_conditioning_combo.currentData())
        s.setValue("train/init_from", self.init_edit.text())
        s.setValue("train/start_suggested", self.start_suggested)
        s.setValue("train/own_tags", self.own_tags_check.isChecked())
        s.setValue("train/run_dir", self.run_edit.text())

    # ---- the plan ---------------------------------------------------------------------
    def config(self) -> TrainingConfig:
        """The settings form as a training config (the data folder is filled in by ``start``)."""
        init_from = str(Path(self.init_edit.text().strip()).expanduser()) if self.init_edit.text().strip() else ""
        return TrainingConfig(
            resolution=self.resolution.currentData(),
            width=self.width_spin.value(),
            batch=self.batch_spin.value(),
            epochs=self.epochs_spin.value(),
            loss=self.loss_combo.currentData(),
            leave_core_for_gui=True,
            preview_steps=GUI_PREVIEW_STEPS,
            tick_steps=GUI_TICK_STEPS,
            g_conditioning=self.g_conditioning_combo.currentData(),
            init_from=init_from,
            freeze_d=FINE_TUNE_FROZEN_D_BLOCKS if init_from else 0,
            **(
                {"lr_g": FINE_TUNE_LEARNING_RATE, "lr_d": FINE_TUNE_LEARNING_RATE}
                if self._fine_tunes_slowly(init_from)
                else {}
            ),
            vocabulary="auto" if self.own_tags_check.isChecked() else "default",
        )

    def _fine_tunes_slowly(self, init_from: str) -> bool:
        """A fine-tune of data not known to hold FEW_FACES or more takes the slow rate."""
        return bool(init_from) and (self._face_count is None or self._face_count.faces < FEW_FACES)

    def _start_from_chosen(self, index: int) -> None:
        choice = self.start_from_combo.itemData(index)
        if choice is None:
            self.init_edit.setFocus()
            return
        self.init_edit.setText(choice)

    def _show_start_from(self, text: str) -> None:
        """The combo names what the field holds: nothing, the shipped model, or something else."""
        index = self.start_from_combo.findData(text.strip())
        self.start_from_combo.setCurrentIndex(index if index >= 0 else self.start_from_combo.count() - 1)

    def face_count(self) -> FaceCount:
        """The faces the chosen data holds; raises ``OSError`` / ``ValueError`` when it holds none we can count."""
        if not self.use_folder.isChecked():
            return FaceCount(self.sketchbook_count.value(), "sketchbook faces")
        text = self.folder_edit.text().strip()
        if not text:
            raise FileNotFoundError("Choose a folder of faces (or drop one here).")
        return count_training_faces(Path(text).expanduser())

    def _counted_faces(self) -> FaceCount | None:
        try:
            return self.face_count()
        except (OSError, ValueError):
            return None

    def _data_changed(self) -> None:
        """New data: fit the batch and the training length to it, then show the plan."""
        count = self._counted_faces()
        if count is not None and count.faces >= 2 and count != self._face_count:
            batch, epochs = suggested_settings(count.faces, TrainingConfig())
            for spin, value in ((self.batch_spin, batch), (self.epochs_spin, epochs)):
                spin.blockSignals(True)
                spin.setValue(value)
                spin.blockSignals(False)
        if count is not None and count != self._face_count:
            self._suggest_start_from(count.faces)
        self._face_count = count
        self._update_plan()

    def _suggest_start_from(self, faces: int) -> None:
        """Few faces start from the shipped model unless the person chose what to start from."""
        if not self.start_left_to_tab:
            return
        shipped = self.start_from_combo.itemData(1) if self.start_from_combo.count() > 2 else None
        chosen = self.init_edit.text().strip()
        if faces < FEW_FACES and shipped and not chosen:
            self.init_edit.setText(shipped)
            self.start_suggested = True
        elif faces >= FEW_FACES and self.start_suggested and chosen == shipped:
            self.init_edit.setText("")
            self.start_suggested = False

    def _start_chosen_by_person(self) -> None:
        self.start_suggested = self.start_left_to_tab = False

    def _update_plan(self) -> None:
        """Show what Start would do: faces, steps and time, and what was fitted or is risky."""
        self.plan, count = None, None
        try:
            count = self.face_count()
            cfg = self.config()
            self.plan = plan_training(
                cfg, count, images_per_second=measured_images_per_second(self._runs_folder(), cfg)
            )
        except (OSError, ValueError) as exc:
            self.plan_error = str(exc)
            self.plan_label.setText(wrappable(self.plan_error))
            self.plan_notes.setText(count.note if count is not None else "")
            self.plan_notes.setVisible(bool(self.plan_notes.text()))
            return
        self.plan_error = ""
        self.plan_label.setText(self.plan.summary())
        notes = list(self.plan.notes)
        if self.start_suggested and cfg.init_from:
            notes.append(
                f"Starts from the shipped model: fewer than {FEW_FACES} faces are too few to learn "
                'from scratch (such runs draw noise). Choose "Nothing" in Start from to learn from scratch.'
            )
        if (cfg.batch, cfg.epochs) == suggested_settings(count.faces, TrainingConfig()):
            notes.insert(0, fit_note(count.faces, TrainingConfig()))  # why the length jumped when the data changed
        self.plan_notes.setText("\n".join(n for n in notes if n))
        self.plan_notes.setVisible(bool(self.plan_notes.text()))

    def _runs_folder(self) -> Path:
        """Where earlier runs are looked for (speed, runs to start from): beside the run folder."""
        return Path(self.run_edit.text()).expanduser().parent

    # ---- actions ------------------------------------------------------------------
    def _sketchbook_source(self, resolution: int) -> SketchbookSource:
        count = self.sketchbook_count.value()
        return SketchbookSource(app_data_dir() / "sketchbook" / f"{resolution}px-{count}", count)

    def start(self, *, resume: bool) -> None:
        if self.is_running():
            return
        run_dir = Path(self.run_edit.text()).expanduser()
        cfg = self.config()
        notes: list[str] = []
        if resume:
            saved = self._saved_config(run_dir)
            if saved is None:
                self._report(f"Nothing to resume in {run_dir.name}: it has no config.json from an earlier run.")
                return
            cfg = TrainingConfig.from_dict({**saved, "epochs": cfg.epochs, "leave_core_for_gui": True})
        else:
            self._update_plan()
            if self.plan is None:
                self._report(f"Cannot start: {self.plan_error}")
                return
            if self.plan.batch_lowered:  # what was lowered is also what the form shows
                notes.append(self.plan.batch_note())
                cfg.batch = self.plan.batch
                self.batch_spin.setValue(self.plan.batch)
            fresh = fresh_run_folder(run_dir)
            if fresh != run_dir:
                notes.append(
                    f"{run_dir.name} already holds a run, so this one goes into {fresh.name} "
                    "(choose the earlier folder and press Resume to continue that one)."
                )
                run_dir = fresh
                self.run_edit.setText(shown_path(run_dir))
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
        # A new run starts with empty plots, bar and preview, and no warning; a resumed one shows its past.
        self.history = RunHistory.from_stats(run_dir / "stats.jsonl") if resume else RunHistory()
        self.running_plan = None if resume else self.plan
        self.last_progress = None
        self.progress_bar.setMaximum(100)
        self.progress_bar.setValue(0)
        if not resume:
            self.preview = None
            self.preview_label.clear()
            self.preview_label.setText(f"The first preview appears at step {GUI_PREVIEW_STEPS}.")
        self._show_history()
        self.worker = create_worker(
            train_drawing_first,
            cfg,
            run_dir,
            resume=resume,
            sketchbook=sketchbook,
            callbacks=("progress", "on_preview"),
            stoppable=True,
            connect={
                "reported": self._on_report,
                "returned": self._on_finished,
                "errored": self._on_failed,
                "finished": self._update_buttons,
            },
        )
        started = f"{'Resuming' if resume else 'Starting'} {run_dir.name}…"
        self.progress_label.setText(wrappable(" ".join([started, *notes])))
        self.status_message.emit(" ".join([started, *notes]))
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
            self._report(f"Could not export {run_dir.name}: {exc}")
            return
        self.status_message.emit(f"Exported {weights.name}; opening it in the Generate tab…")
        self.model_exported.emit(weights)

    # ---- worker signals -------------------------------------------------------------
    def _on_progress(self, p: TrainProgress) -> None:
        self.last_progress = p
        self.progress_bar.setMaximum(max(1, p.total_steps))
        self.progress_bar.setValue(p.step)
        # A bar full of loaded faces must not read as a finished run.
        self.progress_bar.setFormat(
            {"drawing": "drawing faces %v/%m", "loading": "loading faces %v/%m"}.get(p.phase, "%p %")
        )
        if p.phase == "drawing":
            self.progress_label.setText(f"Drawing sketchbook faces {p.step}/{p.total_steps}")
        elif p.phase == "loading":
            self.progress_label.setText(f"Loading faces {p.step}/{p.total_steps}")
        elif p.phase == "started":
            self.progress_label.setText(f"Training {p.detail}: step {p.step}/{p.total_steps}")
            # The status bar still said "Starting …" for the whole run.
            self.status_message.emit(f"Training {p.detail}")
        elif p.phase == "first_step":
            self.progress_label.setText(f"Step {p.step}/{p.total_steps} done · {format_eta(p.eta_seconds)} left")
        else:
            self.progress_label.setText(
                f"Pass {p.epoch}/{p.epochs} · step {p.step}/{p.total_steps} · {p.images_per_sec:.0f} faces/s · "
                f"{format_eta(p.eta_seconds)} left\n{statistics_line(p.losses)}"
            )
            self.progress_label.setToolTip("  ".join(f"{k} {v:.4f}" for k, v in sorted(p.losses.items())))
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
        self.start_from_button.hide()  # offered once a failed run has ended

    def _offer_start_from(self) -> None:
        """On a failed run's banner, a button that fine-tunes the longest healthy earlier run instead."""
        self.start_from_button.hide()
        if not self.history.warning:
            return
        run_dir = Path(self.run_edit.text()).expanduser()
        saved = self._saved_config(run_dir)  # the failed run's own networks, which the form may not show
        cfg = TrainingConfig.from_dict(saved) if saved else self.config()
        runs = [
            run for run, _ in runs_to_start_from({self._runs_folder(), app_data_dir() / "runs"}, cfg) if run != run_dir
        ] + fine_tunable_models(WEIGHTS_DIR)
        if not runs:
            self.warning_label.setText(f"{self.warning_label.text()}\n{NO_RUN_TO_START_FROM}")
            return
        self.suggested_start = runs[0]
        self.start_from_button.setText(f"Start from {start_from_name(runs[0])} instead")
        self.start_from_button.setToolTip(
            f'Put {runs[0]} in "Start from", ready for Start: a new run that fine-tunes it on these faces'
        )
        self.start_from_button.show()

    def _use_suggested_start(self) -> None:
        self._start_chosen_by_person()
        self.init_edit.setText(shown_path(self.suggested_start))
        self._report(
            f"Start from {start_from_name(self.suggested_start)}: press Start for a new run that fine-tunes it "
            "on these faces."
        )

    def _plot_for(self, key: str) -> pg.PlotItem:
        return self.rating_plot if key in RATING_KEYS else self.loss_plot

    def _on_preview(self, preview: Preview) -> None:
        self.preview = preview
        self._fit_preview()
        hair = ", ".join(VOCABULARY.group("hair_colour").values)
        self.preview_label.setToolTip(
            f"Preview at step {preview.step}, one column per hair colour ({hair}); "
            f"the same noise every time, so the same faces improve. Full sheet: "
            f"{preview.path}"
        )

    def _fit_preview(self) -> None:
        if self.preview is not None:
            size = self.preview_label.size()
            sheet = preview_sheet(self.preview.faces, PREVIEW_COLUMNS, size.width(), size.height())
            self.preview_label.setPixmap(array_pixmap(sheet))

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt's name
        if watched is self.preview_label and event.type() == QEvent.Type.Resize:
            self._fit_preview()
        return super().eventFilter(watched, event)

    def _on_finished(self, result: TrainResult) -> None:
        where = f"step {result.step}/{result.total_steps}"
        if self.history.warning:
            # A failed run has run to its end like a good one; it must not read like one.
            self.progress_label.setText(
                f"{'Stopped' if result.stopped else 'Ended'} at {where}, but the run has "
                "failed (see above): its faces will not improve. The checkpoint is saved."
            )
            self.status_message.emit(f"Training ended at {where}: the run has failed")
            self._offer_start_from()
            return
        verb = "Stopped" if result.stopped else "Finished"
        text = f"{verb} at {where}. Checkpoint saved; Resume continues from it."
        if self.running_plan is not None and self.running_plan.risky and not result.stopped:
            text += (
                f" With {self.running_plan.faces} faces from scratch, look at the preview: if it shows noise "
                'rather than faces, fine-tune a run that draws faces ("Start from").'
            )
        self.progress_label.setText(text)
        self.status_message.emit(f"Training {verb.lower()} at step {result.step}")

    def _on_report(self, callback: str, values: tuple) -> None:
        (self._on_progress if callback == "progress" else self._on_preview)(*values)

    def _on_failed(self, exc: Exception) -> None:
        message = str(exc) or exc.__class__.__name__
        self.progress_bar.setValue(0)  # nothing was trained: a full bar would say otherwise
        self.progress_bar.setFormat("%p %")
        self._report(f"Training stopped: {message}")

    def _report(self, message: str) -> None:
        self.progress_label.setText(wrappable(message))
        self.status_message.emit(message)

    def _update_buttons(self) -> None:
        running = self.is_running()
        has_checkpoint = (Path(self.run_edit.text()).expanduser() / "checkpoint.pt").exists()
        self.start_button.setEnabled(not running)
        self.resume_button.setEnabled(not running and has_checkpoint)
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
        folder = QFileDialog.getExistingDirectory(
            self, "Folder of face images", str(Path(self.folder_edit.text()).expanduser())
        )
        if folder:
            self.folder_edit.setText(shown_path(folder))
            self.use_folder.setChecked(True)

    def _folder_row(self, edit: QLineEdit, title: str, tip: str) -> QHBoxLayout:
        """``edit`` with a "Browse…" button beside it that picks a folder into it."""
        pick = QPushButton("Browse…")
        pick.setToolTip(tip)

        def browse() -> None:
            folder = QFileDialog.getExistingDirectory(self, title, str(Path(edit.text()).expanduser()))
            if folder:
                edit.setText(shown_path(folder))  # the run folder's textChanged updates the buttons

        pick.clicked.connect(browse)
        row = QHBoxLayout()
        row.addWidget(fit_for_paths(edit), 1)
        row.addWidget(pick)
        return row

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802 - Qt's name
        if any(Path(url.toLocalFile()).is_dir() for url in event.mimeData().urls()):
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802 - Qt's name
        for url in event.mimeData().urls():
            path = Path(url.toLocalFile())
            if path.is_dir():
                self.folder_edit.setText(shown_path(path))
                self.use_folder.setChecked(True)
                return

"""The Generate tab: the face large, a 4×4 grid of variations, attribute controls,
latent sliders, morphing, history with undo, favourites and export.

All state is the current :class:`FaceRecipe` in an :class:`EditHistory`; every
control edits a copy and pushes it. A face that renders in a few ms is drawn
right away; slower ones (a big model, a busy CPU) go to a :class:`RenderWorker`
thread and the canvas shows the newest finished render.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
from PIL import Image
from PySide6.QtCore import QSettings, QSize, Qt, Signal
from PySide6.QtGui import QAction, QDragEnterEvent, QDropEvent, QIcon, QImage, QKeySequence, QPixmap
from PySide6.QtWidgets import (
    QApplication,
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QFileDialog,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMenu,
    QPushButton,
    QScrollArea,
    QSlider,
    QSpinBox,
    QSplitter,
    QTabWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from mangagan_app.config import WEIGHTS_DIR
from mangagan_app.core.attributes import Attributes
from mangagan_app.core.face_history import EditHistory, FavouritesStore
from mangagan_app.core.face_recipe import (
    MAX_SEED,
    Enlargement,
    FaceRecipe,
    RecipeError,
    read_png_recipe,
)
from mangagan_app.gui.face_canvas import FaceCanvas, qimage_from_array
from mangagan_app.gui.function_worker import FunctionWorker, create_worker
from mangagan_app.gui.generate_worker import RenderWorker
from mangagan_app.gui.originality_dialog import OriginalityDialog
from mangagan_app.gui.paths import app_data_dir
from mangagan_app.gui.settings_values import setting
from mangagan_app.gui.wheel_guard import take_wheel_only_when_focused
from mangagan_app.ml.generate_session import (
    GRID_FACES,
    VARIATION_MODES,
    GenerateSession,
    face_png,
    morph_file,
    save,
    sheet_png,
)
from mangagan_app.ml.generator_service import GeneratorService, upscale, weights_by_preference

log = logging.getLogger(__name__)

GRID = 4  # GRID × GRID = GRID_FACES cells
SLIDER_STEPS = 100  # slider ticks per σ
SLIDER_RANGE = 3  # ±3σ
STRIP_LENGTH = 40
CHOOSE_MORPH_ENDS = "Choose A and B first (the buttons, or right-click a history face)"
SYNC_RENDER_MS = 8.0  # faces that render faster than this are drawn on the GUI thread

# Swatch colours for the hair and eye colour values (anime palettes, not physics).
SWATCHES = {
    "blonde": "#f3d573",
    "brown": "#8a5a36",
    "black": "#26232a",
    "blue": "#3f6fd8",
    "pink": "#f08cb8",
    "purple": "#8a55c9",
    "green": "#3e9b52",
    "red": "#d23b3b",
    "silver": "#c9ccd6",
    "white": "#f4f4f4",
    "orange": "#f08a2e",
    "aqua": "#3cc9d0",
    "grey": "#8c8c8c",
    "yellow": "#f2d93a",
}


def _icon(image: QImage) -> QIcon:
    """A face thumbnail that stays untinted when selected (the selection tint hid the face)."""
    pixmap = QPixmap.fromImage(image)
    icon = QIcon(pixmap)
    icon.addPixmap(pixmap, QIcon.Mode.Selected)
    return icon


def _attribute_tip(tag: str, share: float | None) -> str:
    """An attribute's tooltip: its name and, when the model card has it, how often the model obeys it."""
    name = tag.replace("_", " ")
    if share is None:
        return name
    return (
        f"{name}: the model draws it in {100 * share:.0f} % of the faces asked for it "
        "(measured by the independent tagger, see the model card)"
    )


def _metrics_summary(card: dict) -> str:
    """One paragraph of a model card's measured quality for the model label's tooltip."""
    metrics = card.get("metrics")
    if not metrics:
        return "Not evaluated yet (mangagan evaluate writes the measurements into the model card)."
    groups = ", ".join(
        f"{g.replace('_', ' ')} {100 * v['mean']:.0f} %" for g, v in metrics.get("attributes", {}).items()
    )
    detect = metrics.get("detectability", {}).get("ratio")
    lines = [
        f"Attributes obeyed (mean): {groups}",
        f"Memorisation: {100 * metrics.get('memorisation_rate', float('nan')):.1f} % of faces nearer "
        "a training face than unseen real faces come",
    ]
    if detect is not None:
        lines.append(f"Face detector finds generated faces {detect:.2f}× as often as real ones")
    return "<br>".join(lines)


def _shortcut_tip(text: str, shortcut: str) -> str:
    return f"{text} ({shortcut})"


class AttributeGroupBox(QGroupBox):
    """One vocabulary group: swatches / radio-like buttons (exclusive) or checkboxes (free),
    with a "Random" box that lets Randomize redraw this group."""

    changed = Signal(str)  # label of the edit, e.g. "Blue hair"

    def __init__(self, group, reliability: dict[str, float] | None = None, parent: QWidget | None = None):
        super().__init__(group.label, parent)
        self.group = group
        reliability = reliability or {}
        self.random_box = QCheckBox("Random")
        self.random_box.setToolTip(
            f"When ticked, Randomize (R) draws a new {group.label.lower()}; otherwise it stays fixed"
        )
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 4, 6, 6)
        layout.addWidget(self.random_box, alignment=Qt.AlignmentFlag.AlignRight)
        grid = QGridLayout()
        grid.setSpacing(3)
        layout.addLayout(grid)
        self.buttons: dict[str, QToolButton | QCheckBox] = {}
        self.button_group = QButtonGroup(self)
        self.button_group.setExclusive(group.exclusive)
        swatches = group.exclusive and all(v in SWATCHES for v in group.values)
        columns = 7 if swatches else 3 if group.exclusive else 2
        for i, value in enumerate(group.values):
            tag = group.tag(value)
            if not group.exclusive:
                button = QCheckBox(value.replace("_", " "))
            elif swatches:
                button = QToolButton()
                button.setFixedSize(26, 26)
                button.setStyleSheet(
                    f"QToolButton {{ background: {SWATCHES[value]}; border: 1px solid #555; border-radius: 4px; }}"
                    "QToolButton:checked { border: 3px solid #ffb000; }"
                )
            else:
                button = QToolButton()
                button.setText(value)
                button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
                button.setStyleSheet(
                    "QToolButton:checked { border: 2px solid #ffb000; border-radius: 3px; font-weight: bold; }"
                )
                button.setMinimumWidth(70)
            button.setCheckable(True)
            button.setToolTip(_attribute_tip(tag, reliability.get(tag)))
            button.setObjectName(tag)
            self.button_group.addButton(button, i)
            self.buttons[value] = button
            grid.addWidget(button, i // columns, i % columns)
        self.button_group.idClicked.connect(self._clicked)

    def _clicked(self, index: int) -> None:
        value = self.group.values[index]
        # Choosing a value by hand means "keep this": the group stops being random.
        if self.group.exclusive:
            self.random_box.setChecked(False)
        self.changed.emit(self.group.tag(value).replace("_", " ").capitalize())

    def show_attributes(self, attrs: Attributes) -> None:
        for value, button in self.buttons.items():
            button.blockSignals(True)
            button.setChecked(
                attrs.choices.get(self.group.name) == value if self.group.exclusive else value in attrs.tags
            )
            button.blockSignals(False)

    def read_into(self, attrs: Attributes) -> None:
        checked = [v for v, b in self.buttons.items() if b.isChecked()]
        if self.group.exclusive:
            if checked:
                attrs.choices[self.group.name] = checked[0]
        else:
            attrs.tags.update(checked)


class DirectionSlider(QWidget):
    """One latent direction: an editable name, a ±3σ slider and its value."""

    def __init__(self, index: int, name: str, parent: QWidget | None = None):
        super().__init__(parent)
        self.index = index
        self.name_edit = QLineEdit(name)
        self.name_edit.setFrame(False)
        self.name_edit.setStyleSheet("QLineEdit { background: transparent; } QLineEdit:focus { background: white; }")
        self.name_edit.setFixedWidth(96)
        self.name_edit.setToolTip("Click to rename this direction (kept for this model)")
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(-SLIDER_RANGE * SLIDER_STEPS, SLIDER_RANGE * SLIDER_STEPS)
        self.slider.setToolTip(f"Move the face along {name} (±{SLIDER_RANGE}σ); double-click the value to reset")
        self.value_label = QLabel("+0.00")
        self.value_label.setFixedWidth(40)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.name_edit)
        layout.addWidget(self.slider, 1)
        layout.addWidget(self.value_label)

    def sigma(self) -> float:
        return self.slider.value() / SLIDER_STEPS

    def show_sigma(self, value: float) -> None:
        self.slider.blockSignals(True)
        self.slider.setValue(round(value * SLIDER_STEPS))
        self.slider.blockSignals(False)
        self.value_label.setText(f"{value:+.2f}")


class FaceStrip(QListWidget):
    """A horizontal strip of face thumbnails (history or favourites)."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setViewMode(QListWidget.ViewMode.IconMode)
        self.setFlow(QListWidget.Flow.LeftToRight)
        self.setWrapping(False)
        self.setMovement(QListWidget.Movement.Static)
        self.setIconSize(QSize(64, 64))
        self.setFixedHeight(96)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        self.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)


class GenerateTab(QWidget):
    """Draw, tweak, morph and export faces with the loaded generator.

    ``weights_dir`` is searched for the default model; ``data_dir`` holds favourites
    and the slider-direction cache (the app data folder by default).
    """

    status_message = Signal(str)
    face_shown = Signal()  # the canvas got a newly rendered current face
    saved = Signal(object)  # the path of a file an export has written

    def __init__(
        self,
        settings: QSettings,
        *,
        weights_dir: Path | None = None,
        data_dir: Path | None = None,
        parent: QWidget | None = None,
    ):
        super().__init__(parent)
        self.settings = settings
        self.weights_dir = Path(weights_dir) if weights_dir else WEIGHTS_DIR
        if data_dir is None:
            data_dir = app_data_dir()
        self.data_dir = Path(data_dir)
        self.session = GenerateSession(FavouritesStore(self.data_dir / "favourites.json"))
        self.worker: RenderWorker | None = None
        self._loader: FunctionWorker | None = None
        self._loading: Path | None = None  # the model asked for last
        # A loader superseded by a newer request keeps running until its thread ends; closing
        # the tab waits for them all.
        self._running_loaders: set[FunctionWorker] = set()
        self._fallbacks: list[Path] = []  # further models to try when the default one is refused
        self._refused: list[str] = []
        self._token = 0
        self._shown_token = 0
        self._render_ms = float(SYNC_RENDER_MS)  # until measured: the worker thread
        self._face_pixels: np.ndarray | None = None  # what the canvas shows, (H, W, 3)
        self._preview: FaceRecipe | None = None  # a dragged slider / morph position not yet an edit
        self._grid_token = 0
        self._favourites_token = 0
        self._favourites_shown: list[tuple[str, FaceRecipe, str]] = []
        self._saving: dict[Path, str] = {}  # exports being written: path → what it is, for the status bar
        self._grid_pixels: np.ndarray | None = None
        self._thumbs: dict[int, QIcon] = {}
        self.setAcceptDrops(True)
        self._build()
        self._build_actions()
        self._set_enabled(False)
        self.load_default_model()

    @property
    def service(self) -> GeneratorService | None:
        return self.session.service

    @property
    def history(self) -> EditHistory:
        """The loaded model's undo history."""
        return self.session.history

    # ---- layout ------------------------------------------------------------------------------
    def _build(self) -> None:
        self.canvas = FaceCanvas()
        self.canvas.set_smooth(setting(self.settings, "generate/smooth", False))

        top = QHBoxLayout()
        self.randomize_button = QPushButton("Randomize")
        self.seed_box = QSpinBox()
        self.seed_box.setRange(-1, MAX_SEED)
        self.seed_box.setPrefix("Seed ")
        self.seed_box.setSpecialValueText("Seed —")
        self.seed_box.setToolTip(
            "Seed of the noise; the same seed and attributes give the same face "
            "(— after morphing or picking a variation)"
        )
        # Wide enough for the largest seed with its prefix, however narrow the window gets.
        self.seed_box.setMinimumWidth(self.seed_box.sizeHint().width())
        self.lock_noise = QCheckBox("Lock")
        self.lock_noise.setChecked(setting(self.settings, "generate/lock_noise", False))
        self.lock_noise.setToolTip(
            "Lock noise: Randomize keeps this face's noise and only redraws the random attributes"
        )
        self.smooth_box = QCheckBox("Smooth")
        self.smooth_box.setChecked(self.canvas.smooth)
        self.star_button = QToolButton()
        self.star_button.setCheckable(True)
        self.star_button.setText("☆")
        self.star_button.setStyleSheet("QToolButton { font-size: 18px; } QToolButton:checked { color: #ffb000; }")
        self.undo_button = QToolButton()
        self.undo_button.setText("↶")
        self.redo_button = QToolButton()
        self.redo_button.setText("↷")
        for w in (
            self.randomize_button,
            self.seed_box,
            self.lock_noise,
            self.undo_button,
            self.redo_button,
            self.star_button,
        ):
            top.addWidget(w)
        top.addStretch(1)
        top.addWidget(self.smooth_box)

        # The 4×4 variation grid beside the big face (Waifu Labs' "pick one").
        grid_box = QWidget()
        grid_layout = QVBoxLayout(grid_box)
        grid_layout.setContentsMargins(0, 0, 0, 0)
        grid_head = QHBoxLayout()
        self.variation_mode = QComboBox()
        for label, _ in VARIATION_MODES:
            self.variation_mode.addItem(label)
        self.variation_mode.setCurrentIndex(setting(self.settings, "generate/variation_mode", 0))
        self.new_grid_button = QPushButton("New grid")
        grid_head.addWidget(QLabel("Variations"))
        grid_head.addWidget(self.variation_mode, 1)
        grid_head.addWidget(self.new_grid_button)
        grid_layout.addLayout(grid_head)
        cells = QGridLayout()
        cells.setSpacing(4)
        self.grid_buttons: list[QToolButton] = []
        for i in range(GRID_FACES):
            cell = QToolButton()
            cell.setIconSize(QSize(68, 68))
            cell.setFixedSize(76, 76)
            cell.setToolTip("Click to make this face the current one")
            cell.clicked.connect(lambda _=False, i=i: self.pick_variation(i))
            self.grid_buttons.append(cell)
            cells.addWidget(cell, i // GRID, i % GRID)
        grid_layout.addLayout(cells)
        grid_layout.addStretch(1)

        faces = QSplitter(Qt.Orientation.Horizontal)
        faces.addWidget(self.canvas)
        faces.addWidget(grid_box)
        faces.setStretchFactor(0, 3)
        faces.setStretchFactor(1, 0)
        faces.setChildrenCollapsible(False)

        self.history_strip = FaceStrip()
        self.favourites_strip = FaceStrip()
        self.strips = QTabWidget()
        self.strips.addTab(self.history_strip, "History")
        self.strips.setTabToolTip(
            0,
            "The faces made with this model; each model keeps its own history, "
            "so switching to another model and back finds it again",
        )
        self.strips.addTab(self.favourites_strip, "Favourites ★")
        self.strips.setFixedHeight(130)

        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(6, 6, 6, 6)
        left_layout.addLayout(top)
        left_layout.addWidget(faces, 1)
        left_layout.addWidget(self.strips)

        self.panel = QWidget()
        self.panel_layout = QVBoxLayout(self.panel)
        self.panel_layout.setContentsMargins(6, 6, 6, 6)
        self.attributes_box = QGroupBox("Attributes")
        self.attributes_layout = QVBoxLayout(self.attributes_box)
        self.sliders_box = QGroupBox("Sliders")
        self.sliders_layout = QVBoxLayout(self.sliders_box)
        model_row = QHBoxLayout()
        self.model_label = QLabel("No model")
        self.model_label.setWordWrap(True)
        self.model_button = QPushButton("Model…")
        self.model_button.setToolTip(
            "Open another model: the shipped one, one sent here from the Train tab, "
            "or any exported model file (.safetensors with its .json card)"
        )
        self.model_menu = QMenu(self)
        self.model_menu.setToolTipsVisible(True)
        self.model_menu.aboutToShow.connect(self._fill_model_menu)
        self.model_button.setMenu(self.model_menu)
        model_row.addWidget(self.model_label, 1)
        model_row.addWidget(self.model_button)
        self.panel_layout.addLayout(model_row)
        self.panel_layout.addWidget(self.attributes_box)
        self.panel_layout.addWidget(self.sliders_box)
        self.panel_layout.addWidget(self._build_morph_box())
        self.panel_layout.addWidget(self._build_export_box())
        # Open / Copy / Export are what an artist reaches for most: in the top bar, not
        # below the fold of the panel.
        for widget in (self.open_button, self.copy_button, self.export_button):
            top.insertWidget(top.count() - 1, widget)
        self.panel_layout.addWidget(self._build_originality_box())
        self.panel_layout.addStretch(1)
        self.scroll = scroll = QScrollArea()
        scroll.setWidget(self.panel)
        scroll.setWidgetResizable(True)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self._fit_panel_width()

        self.variety = QSlider(Qt.Orientation.Horizontal)
        self.variety.setRange(0, 150)
        self.variety.setValue(100)
        self.variety.setToolTip("Variety (truncation): lower gives safer, more average faces; higher gives wilder ones")
        self.variety_label = QLabel("1.00")
        self.reset_sliders_button = QPushButton("Reset sliders")
        self.direction_sliders: list[DirectionSlider] = []
        self.slider_headings: list[QLabel] = []
        # The variety row and the reset button stay for the tab's life; a model brings only
        # its own direction rows (rebuilding the whole box deleted the shared widgets).
        variety_row = QHBoxLayout()
        variety_row.addWidget(QLabel("Variety"))
        variety_row.addWidget(self.variety, 1)
        variety_row.addWidget(self.variety_label)
        self.directions_layout = QVBoxLayout()
        self.directions_layout.setContentsMargins(0, 0, 0, 0)
        self.sliders_layout.addLayout(variety_row)
        self.sliders_layout.addLayout(self.directions_layout)
        self.sliders_layout.addWidget(self.reset_sliders_button)

        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(left)
        splitter.addWidget(scroll)
        splitter.setStretchFactor(0, 1)
        splitter.setStretchFactor(1, 0)
        splitter.setChildrenCollapsible(False)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(splitter)
        take_wheel_only_when_focused(self.panel)  # the wheel scrolls the panel, not the slider under it

        self.randomize_button.clicked.connect(self.randomize)
        self.seed_box.editingFinished.connect(self._seed_edited)
        self.lock_noise.toggled.connect(lambda on: self.settings.setValue("generate/lock_noise", on))
        self.smooth_box.toggled.connect(self._set_smooth)
        self.star_button.clicked.connect(self.toggle_favourite)
        self.undo_button.clicked.connect(self.undo)
        self.redo_button.clicked.connect(self.redo)
        self.new_grid_button.clicked.connect(self.new_grid)
        self.variation_mode.currentIndexChanged.connect(self._variation_mode_changed)
        self.variety.valueChanged.connect(self._variety_moved)
        self.variety.sliderReleased.connect(self._commit_sliders)
        self.reset_sliders_button.clicked.connect(self.reset_sliders)
        self.history_strip.itemClicked.connect(self._history_clicked)
        self.favourites_strip.itemClicked.connect(self._favourite_clicked)
        self.history_strip.customContextMenuRequested.connect(lambda pos: self._strip_menu(self.history_strip, pos))
        self.favourites_strip.customContextMenuRequested.connect(
            lambda pos: self._strip_menu(self.favourites_strip, pos)
        )

    def _build_morph_box(self) -> QGroupBox:
        self.morph_box = box = QGroupBox("Morph A ↔ B")
        layout = QGridLayout(box)
        self.morph_a_label, self.morph_b_label = QLabel("A"), QLabel("B")
        for label in (self.morph_a_label, self.morph_b_label):
            label.setFixedSize(72, 72)
            label.setAlignment(Qt.AlignmentFlag.AlignCenter)
            label.setStyleSheet("QLabel { border: 1px dashed #888; }")
        self.set_a_button = QPushButton("A = current")
        self.set_b_button = QPushButton("B = current")
        self.set_a_button.setToolTip("Use the current face as A (or right-click a history/favourite face)")
        self.set_b_button.setToolTip("Use the current face as B (or right-click a history/favourite face)")
        self.morph_slider = QSlider(Qt.Orientation.Horizontal)
        self.morph_slider.setRange(0, 100)
        self.morph_slider.setToolTip("t: 0 is A, 1 is B (slerp on the noise, linear on attributes and sliders)")
        self.keep_morph_button = QPushButton("Keep this face")
        self.keep_morph_button.setToolTip("Make the morph frame shown the current face")
        self.frames_box = QSpinBox()
        self.frames_box.setRange(2, 120)
        self.frames_box.setValue(setting(self.settings, "generate/morph_frames", 24))
        self.frames_box.setSuffix(" frames")
        self.gif_button = QPushButton("Export GIF…")
        self.strip_button = QPushButton("Export strip PNG…")
        layout.addWidget(self.morph_a_label, 0, 0)
        layout.addWidget(self.morph_slider, 0, 1)
        layout.addWidget(self.morph_b_label, 0, 2)
        layout.addWidget(self.set_a_button, 1, 0)
        layout.addWidget(self.keep_morph_button, 1, 1)
        layout.addWidget(self.set_b_button, 1, 2)
        row = QHBoxLayout()
        row.addWidget(self.frames_box)
        row.addWidget(self.gif_button)
        row.addWidget(self.strip_button)
        layout.addLayout(row, 2, 0, 1, 3)
        self.set_a_button.clicked.connect(lambda: self.set_morph_end("a", self.current_recipe()))
        self.set_b_button.clicked.connect(lambda: self.set_morph_end("b", self.current_recipe()))
        self.morph_slider.valueChanged.connect(self._morph_moved)
        self.keep_morph_button.clicked.connect(self.keep_morph_frame)
        self.gif_button.clicked.connect(
            lambda: self._ask_path_then("Export morph GIF", "morph.gif", "GIF (*.gif)", self.export_morph_gif)
        )
        self.strip_button.clicked.connect(
            lambda: self._ask_path_then("Export morph strip", "morph-strip.png", "PNG (*.png)", self.export_morph_strip)
        )
        self.frames_box.valueChanged.connect(lambda n: self.settings.setValue("generate/morph_frames", n))
        return box

    def _build_export_box(self) -> QGroupBox:
        self.export_box = box = QGroupBox("Export")
        layout = QGridLayout(box)
        self.scale_box = QSpinBox()
        self.scale_box.setRange(1, 8)
        self.scale_box.setSuffix("×")
        self.scale_box.setValue(setting(self.settings, "generate/export_scale", 4))
        self.scale_box.setToolTip("Export size: 1× to 8× the model's resolution")
        self.method_box = QComboBox()
        self.method_box.addItems(["Nearest (crisp pixels)", "Lanczos (smooth)"])
        self.method_box.setCurrentIndex(setting(self.settings, "generate/export_smooth", 0))
        self.export_button = QPushButton("Export…")
        self.copy_button = QPushButton("Copy")
        self.open_button = QPushButton("Open…")
        self.sheet_button = QPushButton("Export grid sheet…")
        layout.addWidget(QLabel("Size"), 0, 0)
        layout.addWidget(self.scale_box, 0, 1)
        layout.addWidget(self.method_box, 0, 2)
        layout.addWidget(self.sheet_button, 1, 0, 1, 3)
        self.scale_box.valueChanged.connect(lambda v: self.settings.setValue("generate/export_scale", v))
        self.method_box.currentIndexChanged.connect(lambda i: self.settings.setValue("generate/export_smooth", i))
        self.export_button.clicked.connect(
            lambda: self._ask_path_then("Export face", "face.png", "PNG (*.png)", self.export_png)
        )
        self.sheet_button.clicked.connect(
            lambda: self._ask_path_then(
                "Export variation grid", "variations.png", "PNG (*.png)", self.export_grid_sheet
            )
        )
        self.copy_button.clicked.connect(self.copy_to_clipboard)
        self.open_button.clicked.connect(self._open_dialog)
        return box

    def _build_originality_box(self) -> QGroupBox:
        # The closest training faces to the current face, with a verdict (originality_dialog).
        box = QGroupBox("Originality")
        layout = QVBoxLayout(box)
        self.originality_button = QPushButton("Check originality")
        self.originality_button.setEnabled(False)
        self.originality_button.clicked.connect(self.check_originality)
        layout.addWidget(self.originality_button)
        return box

    def _build_actions(self) -> None:
        def action(text: str, shortcut: QKeySequence | str, slot) -> QAction:
            act = QAction(text, self)
            act.setShortcut(QKeySequence(shortcut))
            act.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
            act.triggered.connect(slot)
            self.addAction(act)
            return act

        self.randomize_action = action("Randomize", "R", self.randomize)
        self.undo_action = action("Undo", QKeySequence.StandardKey.Undo, self.undo)
        self.redo_action = action("Redo", "Ctrl+Shift+Z", self.redo)
        self.star_action = action("Star", "Ctrl+D", self._star_shortcut)
        self.export_action = action("Export PNG", QKeySequence.StandardKey.Save, self.export_button.click)
        self.copy_action = action("Copy", QKeySequence.StandardKey.Copy, self.copy_to_clipboard)
        self.open_action = action("Open PNG", QKeySequence.StandardKey.Open, self._open_dialog)
        self.grid_action = action("New grid", "G", self.new_grid)
        self.originality_action = action("Check originality", "O", self.check_originality)
        self.smooth_action = action("Smooth", "S", self.smooth_box.toggle)
        for widget, act, text in (
            (self.randomize_button, self.randomize_action, "New random face"),
            (self.undo_button, self.undo_action, "Undo the last edit"),
            (self.redo_button, self.redo_action, "Redo"),
            (self.star_button, self.star_action, "Star this face: keep it in Favourites"),
            (self.export_button, self.export_action, "Export the face as PNG with its parameters"),
            (self.copy_button, self.copy_action, "Copy the face (at the export size) to the clipboard"),
            (self.open_button, self.open_action, "Open an exported PNG to get its face back (or drop it here)"),
            (self.new_grid_button, self.grid_action, "Draw a new grid of variations"),
            (
                self.originality_button,
                self.originality_action,
                "Show the training faces closest to this one, with a verdict: original, close, or near copy",
            ),
            (self.smooth_box, self.smooth_action, "Smooth scaling of the big face instead of crisp pixels"),
        ):
            widget.setToolTip(_shortcut_tip(text, act.shortcut().toString(QKeySequence.SequenceFormat.NativeText)))

    # ---- model -----------------------------------------------------------------------------------
    def load_default_model(self) -> None:
        """Load the default model of the weights folder; if it is refused (damaged, another
        vocabulary), the next one, saying which was skipped and why."""
        candidates = weights_by_preference(self.weights_dir) if self.weights_dir.is_dir() else []
        if not candidates:
            self.canvas.set_message(
                f"No model yet: no .safetensors file in\n{self.weights_dir}\n\n"
                "Train one in the Train tab and press “Use in Generate”, "
                "or open an exported model with Model…"
            )
            self.status_message.emit(f"No model found in {self.weights_dir}")
            return
        self.load_model(candidates[0])
        self._fallbacks = candidates[1:]

    def load_model(self, weights: Path) -> None:
        """Load ``weights`` on a worker thread; the tab fills in when it is ready."""
        self._fallbacks, self._refused = [], []
        self._start_loader(weights)

    def _start_loader(self, weights: Path) -> None:
        self.canvas.set_message(
            f"Loading {Path(weights).name}…\n(the first time a model without slider "
            "directions is opened they are computed: a few seconds)"
        )
        self._loading = Path(weights)
        loader = create_worker(
            GeneratorService.load,
            self._loading,
            cache_dir=self.data_dir / "cache",
            connect={"returned": self._model_loaded, "errored": self._model_errored},
        )
        self._running_loaders.add(loader)
        loader.finished.connect(lambda: self._running_loaders.discard(loader))
        self._loader = loader

    def model_choices(self) -> list[Path]:
        """The models the Model… menu offers: those of the weights folder (the shipped model), then
        those the Train tab exported ("Use in Generate"), newest first."""
        folders = (self.weights_dir, self.data_dir / "models")
        return [path for folder in folders if folder.is_dir() for path in weights_by_preference(folder)]

    def _fill_model_menu(self) -> None:
        self.model_menu.clear()
        loaded = self._loading.resolve() if self._loading is not None else None
        for path in self.model_choices():
            action = self.model_menu.addAction(path.stem, lambda path=path: self.load_model(path))
            action.setCheckable(True)
            action.setChecked(path.resolve() == loaded)
            action.setToolTip(str(path))
        self.model_menu.addSeparator()
        self.model_menu.addAction("Other model file…", self._choose_model)

    def _choose_model(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Load a model", str(self.weights_dir), "Model weights (*.safetensors)"
        )
        if path:
            self.load_model(Path(path))

    def _model_errored(self, exc: Exception) -> None:
        loader = self.sender()
        if loader is not self._loader:
            return  # a model asked for earlier failed after a newer request
        self._model_failed(f"Could not load the model {Path(loader.args[0]).name}: {exc}")

    def _model_failed(self, message: str) -> None:
        if self._fallbacks:
            self._refused.append(message)
            self._start_loader(self._fallbacks.pop(0))
            return
        if self._refused:
            message = f"No usable model in {self.weights_dir}:\n" + "\n".join([*self._refused, message])
        self.canvas.set_message(message)
        self.status_message.emit(message)

    def _model_loaded(self, service: GeneratorService) -> None:
        if self.sender() is not self._loader:
            return  # a model asked for earlier finished after a newer request
        self.set_service(service)
        if self._refused:
            self.status_message.emit(f"Opened {service.name} instead: " + " · ".join(self._refused))

    def set_service(self, service: GeneratorService) -> None:
        """Use an already loaded model (the loader thread and the benchmark call this)."""
        self.shutdown()
        first_seed = setting(self.settings, "generate/last_seed", 0)
        self.session.use_model(service, first_seed=first_seed, truncation=self.variety.value() / 100)
        self.worker = RenderWorker(service)
        self.worker.rendered.connect(self._rendered)
        self.worker.failed.connect(self.status_message.emit)
        self.worker.start()
        self._build_attribute_controls()
        self._build_slider_controls()
        self._set_enabled(True)
        self._clear_morph_labels()  # the session dropped the ends: the previous model drew them
        self._show_recipe(self.current_recipe())
        self._refresh_history()
        self.new_grid()
        self._refresh_favourites()
        self._fit_panel_width()
        named = sum(1 for i in range(len(service.directions)) if service.directions.name(i))
        unnamed = len(service.directions) - named
        plural = "" if named == 1 else "s"
        sliders = f"{named} named slider{plural} and {unnamed} more" if named else f"{unnamed} slider directions"
        summary = f"{service.resolution} px, {sliders}"
        self.model_label.setText(f"<b>{service.name}</b><br>{summary}")
        self.model_label.setToolTip(f"{_metrics_summary(service.card)}<br>sha256 {service.sha256}")
        self.status_message.emit(f"Model {service.name}: {summary}")

    def _clear_morph_labels(self) -> None:
        self.morph_a_label.setText("A")
        self.morph_b_label.setText("B")

    def shutdown(self) -> None:
        """Stop the render thread (the window calls this when closing)."""
        for loader in list(self._running_loaders):
            loader.wait()
        if self.worker is not None:
            self.worker.stop()
            self.worker = None

    def _fit_panel_width(self) -> None:
        """Widen the right panel to its contents so nothing is cut off at the right edge."""
        needed = self.panel.minimumSizeHint().width() + self.scroll.verticalScrollBar().sizeHint().width() + 4
        self.scroll.setMinimumWidth(max(340, needed))

    def _set_enabled(self, on: bool) -> None:
        for w in (
            self.randomize_button,
            self.seed_box,
            self.lock_noise,
            self.star_button,
            self.undo_button,
            self.redo_button,
            self.new_grid_button,
            self.variation_mode,
            self.attributes_box,
            self.sliders_box,
            self.morph_box,
            self.export_box,
            self.open_button,
            self.copy_button,
            self.export_button,
        ):
            w.setEnabled(on)
        self.originality_button.setEnabled(on)

    def _build_attribute_controls(self) -> None:
        while self.attributes_layout.count():
            item = self.attributes_layout.takeAt(0)
            if item.widget():
                item.widget().deleteLater()
        self.group_boxes: list[AttributeGroupBox] = []
        reliability = (self.service.card.get("metrics") or {}).get("attribute_values", {})
        for group in self.service.vocabulary.groups:
            box = AttributeGroupBox(group, reliability)
            key = f"generate/random/{group.name}"
            box.random_box.setChecked(setting(self.settings, key, not group.exclusive or group.name != "hair_colour"))
            box.random_box.toggled.connect(lambda on, key=key: self.settings.setValue(key, on))
            box.changed.connect(self._attributes_edited)
            self.group_boxes.append(box)
            self.attributes_layout.addWidget(box)

    def _build_slider_controls(self) -> None:
        for widget in [*self.direction_sliders, *self.slider_headings]:
            self.directions_layout.removeWidget(widget)
            widget.deleteLater()
        self.direction_sliders, self.slider_headings = [], []
        directions = self.service.directions
        named = [i for i in range(len(directions)) if directions.name(i)]
        unnamed = [i for i in range(len(directions)) if not directions.name(i)]
        # Named sliders first: each moves one thing an artist can name; the unsupervised ones
        # (GANSpace) follow for exploring, numbered as they always were.
        for heading, indices in (("Named", named), ("Found by exploring the model", unnamed)):
            if named and indices:
                label = QLabel(heading)
                label.setStyleSheet("QLabel { color: palette(mid); }")
                self.slider_headings.append(label)
                self.directions_layout.addWidget(label)
            for i in indices:
                self._add_direction_row(i, directions.name(i) or f"Direction {i + 1}")
        # Every name whole, and the sliders lined up: one width for all the name fields.
        width = max(
            [96]
            + [r.name_edit.fontMetrics().horizontalAdvance(r.name_edit.text()) + 10 for r in self.direction_sliders]
        )
        for row in self.direction_sliders:
            row.name_edit.setFixedWidth(width)

    def _add_direction_row(self, index: int, default_name: str) -> None:
        row = DirectionSlider(index, str(setting(self.settings, self._direction_key(index), default_name)))
        row.slider.valueChanged.connect(lambda _v, row=row: self._direction_moved(row))
        row.slider.sliderReleased.connect(self._commit_sliders)
        row.name_edit.editingFinished.connect(lambda row=row: self._rename_direction(row, default_name))
        self.direction_sliders.append(row)
        self.directions_layout.addWidget(row)
        take_wheel_only_when_focused(row)

    def _direction_key(self, index: int) -> str:
        return f"generate/direction_names/{self.service.sha256[:16]}/{index}"

    def _rename_direction(self, row: DirectionSlider, default_name: str) -> None:
        name = row.name_edit.text().strip() or default_name
        row.name_edit.setText(name)
        self.settings.setValue(self._direction_key(row.index), name)

    def check_originality(self) -> OriginalityDialog | None:
        """Open the originality check for the face on the canvas (the search runs on a thread)."""
        pixels = self.current_pixels()
        if self.service is None or pixels is None:
            return None
        weights = self._loading if self._loading is not None else self.weights_dir / f"{self.service.name}.safetensors"
        dialog = OriginalityDialog(pixels, weights, self.service.card, cache_dir=self.data_dir / "cache", parent=self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.show()
        return dialog

    # ---- state -------------------------------------------------------------------------------
    def current_recipe(self) -> FaceRecipe | None:
        return self.session.current

    def current_pixels(self) -> np.ndarray | None:
        """The pixels the canvas shows now ((H, W, 3) uint8), None before the first render."""
        return self._face_pixels

    def _with_controls(self, recipe: FaceRecipe) -> FaceRecipe:
        """``recipe`` with the variety and slider values the controls show."""
        sliders = [0.0] * len(self.direction_sliders)
        for row in self.direction_sliders:
            sliders[row.index] = row.sigma()
        return recipe.with_(truncation=self.variety.value() / 100, sliders=tuple(sliders))

    def _push(self, recipe: FaceRecipe, label: str) -> None:
        self._after_edit(self.session.push(recipe, label))

    def _after_edit(self, changed: bool) -> None:
        """Show the session's current face; when an edit made a new one, refresh the grid and history."""
        self._preview = None
        if self.current_recipe() is None:
            return
        self._show_recipe(self.current_recipe())
        if changed:
            self._refresh_grid()
            self._refresh_history()

    def _show_recipe(self, recipe: FaceRecipe) -> None:
        """Bring every control in line with ``recipe`` and ask for its render."""
        self.canvas.set_caption("")
        attrs = recipe.attributes(self.service.vocabulary)
        for box in self.group_boxes:
            box.show_attributes(attrs)
        self.seed_box.blockSignals(True)
        # A PNG made before seeds were capped may carry one the box cannot hold: it shows "—".
        self.seed_box.setValue(-1 if recipe.seed is None or recipe.seed > MAX_SEED else recipe.seed)
        self.seed_box.blockSignals(False)
        self.variety.blockSignals(True)
        self.variety.setValue(round(recipe.truncation * 100))
        self.variety.blockSignals(False)
        self.variety_label.setText(f"{recipe.truncation:.2f}")
        for row in self.direction_sliders:
            row.show_sigma(recipe.slider(row.index))
        self.star_button.setChecked(self.session.is_starred(recipe))
        self.star_button.setText("★" if self.star_button.isChecked() else "☆")
        self.undo_button.setEnabled(self.history.can_undo())
        self.redo_button.setEnabled(self.history.can_redo())
        self.undo_action.setText(f"Undo {self.history.undo_label()}".strip())
        self.redo_action.setText(f"Redo {self.history.redo_label()}".strip())
        self._request_face(recipe)

    def _request_face(self, recipe: FaceRecipe) -> None:
        """Draw ``recipe`` on the canvas: right here while renders are quick, otherwise on
        the worker thread, where stale requests are dropped."""
        self._token += 1
        if self._render_ms < SYNC_RENDER_MS:
            # A thread hop costs a scheduler wake-up on each side (ms on a busy machine);
            # a face that renders in a few ms is drawn sooner without one.
            start = time.perf_counter()
            images = self.service.render([recipe])
            self._rendered("face", self._token, images, time.perf_counter() - start)
        else:
            self.worker.request("face", self._token, [recipe])

    def _rendered(self, kind: str, token: int, images: np.ndarray, seconds: float = 0.0) -> None:
        if kind == "face":
            # A running average so one slow render (a busy moment) does not flip the mode.
            self._render_ms = 0.7 * self._render_ms + 0.3 * seconds * 1000
            if token < self._shown_token:
                return  # an older position arrived late: a newer one is already shown
            self._shown_token = token
            self._face_pixels = images[0]
            self.canvas.set_image(qimage_from_array(images[0]))
            current = self.history.current
            if (
                current is not None
                and token == self._token
                and self._preview is None
                and id(current) not in self._thumbs
            ):
                self._thumbs[id(current)] = _icon(self.canvas.image())
                self._refresh_history()
            self.face_shown.emit()
        elif kind == "favourites" and token == self._favourites_token:
            self._show_favourites(images)
        elif kind == "grid" and token == self._grid_token:
            self._grid_pixels = images
            for button, pixels in zip(self.grid_buttons, images, strict=False):
                button.setIcon(_icon(qimage_from_array(pixels)))

    # ---- edits -------------------------------------------------------------------------------
    def randomize(self) -> None:
        """New face: fresh noise (unless locked) and the groups marked Random redrawn."""
        if self.service is None:
            return
        seed = int(np.random.default_rng().integers(MAX_SEED))
        keep, random_groups = Attributes(), []
        for box in self.group_boxes:
            if box.random_box.isChecked():
                random_groups.append(box.group)
            else:
                box.read_into(keep)
        locked = self.lock_noise.isChecked() and self.current_recipe() is not None
        if not locked:
            self.settings.setValue("generate/last_seed", seed)
        self._after_edit(self.session.randomize(seed, keep=keep, random_groups=random_groups, lock_noise=locked))
        self.new_grid()

    def _seed_edited(self) -> None:
        seed = self.seed_box.value()
        current = self.current_recipe()
        if self.service is None or current is None or seed < 0 or seed == current.seed:
            return
        self.settings.setValue("generate/last_seed", seed)
        self._after_edit(self.session.set_seed(seed))

    def set_seed(self, seed: int) -> None:
        """Type ``seed`` into the seed box (same as the user doing it)."""
        self.seed_box.setValue(seed)
        self._seed_edited()

    def _attributes_edited(self, label: str) -> None:
        attrs = Attributes()
        for box in self.group_boxes:
            box.read_into(attrs)
        self._after_edit(self.session.set_attributes(attrs, label))

    def _direction_moved(self, row: DirectionSlider) -> None:
        row.value_label.setText(f"{row.sigma():+.2f}")
        current = self.current_recipe()
        if current is None:
            return
        recipe = self._with_controls(current)
        if row.slider.isSliderDown():
            self._preview = recipe
            self._request_face(recipe)
        else:  # keyboard, wheel or a programmatic move: each step is an edit
            self._push(recipe, f"{row.name_edit.text()} {row.sigma():+.2f}")

    def _variety_moved(self, value: int) -> None:
        self.variety_label.setText(f"{value / 100:.2f}")
        current = self.current_recipe()
        if current is None:
            return
        recipe = self._with_controls(current)
        if self.variety.isSliderDown():
            self._preview = recipe
            self._request_face(recipe)
        else:
            self._push(recipe, f"Variety {value / 100:.2f}")

    def _commit_sliders(self) -> None:
        current = self.current_recipe()
        if current is not None:
            self._push(self._with_controls(current), "Sliders")

    def reset_sliders(self) -> None:
        self._after_edit(self.session.reset_sliders())

    def undo(self) -> None:
        if self.session.undo():
            self._after_edit(True)

    def redo(self) -> None:
        if self.session.redo():
            self._after_edit(True)

    def _set_smooth(self, on: bool) -> None:
        self.canvas.set_smooth(on)
        self.settings.setValue("generate/smooth", on)

    # ---- variation grid --------------------------------------------------------------------------
    def _variation_mode_changed(self, index: int) -> None:
        self.settings.setValue("generate/variation_mode", index)
        self.new_grid()

    def new_grid(self) -> None:
        """Sixteen new relatives of the current face (how related: the mode box)."""
        self.session.new_grid(VARIATION_MODES[self.variation_mode.currentIndex()][1])
        self._refresh_grid()

    def _refresh_grid(self) -> None:
        recipes = self.session.grid_recipes()
        if recipes:
            self._grid_token += 1
            self.worker.request("grid", self._grid_token, recipes)

    def pick_variation(self, index: int) -> None:
        """Make grid face ``index`` the current face."""
        if index < len(self.session.grid):
            self._after_edit(self.session.pick(index))

    # ---- history & favourites -----------------------------------------------------------------
    def _thumbnail(self, entry_id: int, recipe: FaceRecipe, *, current: bool) -> QIcon:
        icon = self._thumbs.get(entry_id)
        if icon is None:
            if current:
                return QIcon()  # its render is on the way; _rendered fills it in
            # Left before its render arrived (fast undo/redo): one small render here.
            icon = _icon(qimage_from_array(self.service.render([recipe])[0]))
            self._thumbs[entry_id] = icon
        return icon

    def _refresh_history(self) -> None:
        self.history_strip.clear()
        entries = self.history.entries
        first = max(0, len(entries) - STRIP_LENGTH)
        for i in range(first, len(entries)):
            entry = entries[i]
            item = QListWidgetItem(self._thumbnail(id(entry), entry.recipe, current=i == self.history.index), "")
            item.setToolTip(entry.label + (" (current)" if i == self.history.index else ""))
            item.setData(Qt.ItemDataRole.UserRole, i)
            self.history_strip.addItem(item)
            if i == self.history.index:
                item.setSelected(True)
        self.history_strip.scrollToBottom()
        live = {
            id(e) for e in self.session.histories.all_entries()
        }  # other models' thumbnails are kept for their return
        for key in [k for k in self._thumbs if k not in live]:
            del self._thumbs[key]

    def _refresh_favourites(self) -> None:
        """Ask the render worker for the favourites' faces (many favourites take a while)."""
        self._favourites_shown = self.session.favourite_recipes()
        self._favourites_token += 1
        if self._favourites_shown:
            self.worker.request("favourites", self._favourites_token, [r for _, r, _ in self._favourites_shown])
        else:
            self.favourites_strip.clear()

    def _show_favourites(self, images: np.ndarray) -> None:
        self.favourites_strip.clear()
        for (fav_id, _, name), pixels in zip(self._favourites_shown, images, strict=True):
            item = QListWidgetItem(_icon(qimage_from_array(pixels)), "")
            item.setToolTip(name or "Favourite")
            item.setData(Qt.ItemDataRole.UserRole, fav_id)
            self.favourites_strip.addItem(item)

    def _history_clicked(self, item: QListWidgetItem) -> None:
        if self.session.back_to(item.data(Qt.ItemDataRole.UserRole)):
            self._after_edit(True)

    def _favourite_clicked(self, item: QListWidgetItem) -> None:
        recipe = self.session.favourite(item.data(Qt.ItemDataRole.UserRole))
        if recipe is not None:
            self._push(recipe, "Favourite")

    def _strip_menu(self, strip: FaceStrip, pos) -> None:
        item = strip.itemAt(pos)
        if item is None:
            return
        key = item.data(Qt.ItemDataRole.UserRole)
        recipe = self.history.entries[key].recipe if strip is self.history_strip else self.session.favourite(key)
        if recipe is None:
            return
        menu = QMenu(self)
        menu.addAction("Use as morph A", lambda: self.set_morph_end("a", recipe))
        menu.addAction("Use as morph B", lambda: self.set_morph_end("b", recipe))
        if strip is self.favourites_strip:
            menu.addAction("Remove from favourites", lambda: self._unstar(recipe))
        menu.exec(strip.viewport().mapToGlobal(pos))

    def _star_shortcut(self) -> None:
        self.star_button.setChecked(not self.star_button.isChecked())
        self.toggle_favourite()

    def toggle_favourite(self) -> None:
        """Star or unstar the current face (favourites are kept between runs)."""
        if self.current_recipe() is None:
            return
        if self.session.toggle_favourite():
            self.status_message.emit("Starred: the face is in Favourites")
        self._unstarred_refresh(self.current_recipe())

    def _unstar(self, recipe: FaceRecipe) -> None:
        self.session.favourites.remove(recipe)
        self._unstarred_refresh(self.current_recipe())

    def _unstarred_refresh(self, current: FaceRecipe | None) -> None:
        starred = self.session.is_starred(current)
        self.star_button.setChecked(starred)
        self.star_button.setText("★" if starred else "☆")
        self._refresh_favourites()

    # ---- morph -------------------------------------------------------------------------------
    def set_morph_end(self, end: str, recipe: FaceRecipe | None) -> None:
        if recipe is None or self.service is None:
            return
        self.session.set_morph_end(end, recipe)
        label = self.morph_a_label if end == "a" else self.morph_b_label
        pixmap = QPixmap.fromImage(qimage_from_array(self.service.render([recipe])[0]))
        label.setPixmap(
            pixmap.scaled(68, 68, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.FastTransformation)
        )

    def set_morph_t(self, t: float) -> None:
        self.morph_slider.setValue(round(t * 100))
        self._morph_moved(self.morph_slider.value())

    def _morph_moved(self, value: int) -> None:
        frame = self.session.morph_at(value / 100)
        if frame is None:
            self.status_message.emit(CHOOSE_MORPH_ENDS)
            return
        self._preview = frame
        self._request_face(frame)
        self.canvas.set_caption(f"Morph A → B   t = {value / 100:.2f}   (Keep this face to edit it)")

    def keep_morph_frame(self) -> None:
        if self._preview is not None and self.session.morph_at(0.0) is not None:
            self._push(self._preview, f"Morph t={self.morph_slider.value() / 100:.2f}")

    def export_morph_gif(self, path: Path) -> None:
        self._export_morph(path, gif=True, enlargement=self._enlargement())

    def export_morph_strip(self, path: Path) -> None:
        self._export_morph(path, gif=False, enlargement=Enlargement())

    def _export_morph(self, path: Path, *, gif: bool, enlargement: Enlargement) -> None:
        a, b, frames = self.session.morph_a, self.session.morph_b, self.frames_box.value()
        if a is None or b is None:
            self.status_message.emit(CHOOSE_MORPH_ENDS)
            return
        what = f"the morph ({frames} frames)" if gif else "the morph strip"
        self._save(path, what, morph_file, self.service, a, b, frames, gif=gif, enlargement=enlargement)

    def _save(self, path: Path, what: str, make, *args, **kwargs) -> None:
        """Write ``make(*args, **kwargs)`` to ``path`` on a worker: a long morph or a big
        enlargement takes seconds. ``saved(path)`` and the status bar say when it is done."""
        self._saving[Path(path)] = what
        create_worker(
            save, Path(path), make, *args, connect={"returned": self._saved, "errored": self._not_saved}, **kwargs
        )

    def _saved(self, path: Path) -> None:
        what = self._saving.pop(path, "the file")
        hint = " (open or drop it here to get this face back)" if what == "the face" else ""
        self.status_message.emit(f"Saved {what} to {path}{hint}")
        self.saved.emit(path)

    def _not_saved(self, exc: Exception) -> None:
        path = self.sender().args[0]
        self._saving.pop(path, None)
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        self.status_message.emit(f"Could not save {path.name}: {reason}")

    # ---- export / open ---------------------------------------------------------------------------
    def _ask_path_then(self, title: str, default_name: str, filter_: str, export) -> None:
        if self.service is None:
            return
        folder = setting(self.settings, "generate/export_dir", str(Path.home()))
        path, _ = QFileDialog.getSaveFileName(self, title, str(Path(folder) / default_name), filter_)
        if path:
            self.settings.setValue("generate/export_dir", str(Path(path).parent))
            export(Path(path))

    def _enlargement(self) -> Enlargement:
        return Enlargement(self.scale_box.value(), self.method_box.currentIndex() == 1)

    def _export_image(self) -> Image.Image:
        recipe, enlargement = self.current_recipe(), self._enlargement()
        return upscale(self.service.render_image(recipe), enlargement.scale, smooth=enlargement.smooth)

    def export_png(self, path: Path) -> None:
        """Write the current face at the chosen size with its parameters (and that size) in the PNG."""
        self._save(path, "the face", face_png, self.service, self.current_recipe(), self._enlargement())

    def export_grid_sheet(self, path: Path) -> None:
        self._save(
            path, "the variation grid", sheet_png, self.service, self.session.grid_recipes(), GRID, self._enlargement()
        )

    def copy_to_clipboard(self) -> None:
        if self.service is None or self.current_recipe() is None:
            return
        image = self._export_image()
        QApplication.clipboard().setImage(qimage_from_array(np.asarray(image.convert("RGB"))))
        self.status_message.emit("Copied the face to the clipboard")

    def _open_dialog(self) -> None:
        folder = setting(self.settings, "generate/export_dir", str(Path.home()))
        path, _ = QFileDialog.getOpenFileName(self, "Open a face PNG", folder, "PNG (*.png)")
        if path:
            self.open_png(Path(path))

    def open_png(self, path: Path) -> bool:
        """Restore the face stored in an exported PNG; a plain sentence in the status bar
        (and False) when the file holds no parameters or comes from another model."""
        if self.service is None:
            self.status_message.emit("Load a model before opening a face PNG")
            return False
        try:
            recipe = read_png_recipe(path)
            warnings = self.service.check(recipe, Path(path).name)
        except RecipeError as exc:
            self.status_message.emit(str(exc))
            return False
        self._push(recipe, f"Opened {Path(path).name}")
        self.status_message.emit(
            f"Restored the face from {Path(path).name}" + (f" ({'; '.join(warnings)})" if warnings else "")
        )
        return True

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802 - Qt's name
        urls = event.mimeData().urls()
        if urls and urls[0].isLocalFile() and urls[0].toLocalFile().lower().endswith(".png"):
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802 - Qt's name
        self.open_png(Path(event.mimeData().urls()[0].toLocalFile()))
        event.acceptProposedAction()

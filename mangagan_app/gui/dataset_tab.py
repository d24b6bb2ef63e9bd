"""The Dataset tab: crop faces out of the user's illustrations, then review every crop.

Left: the sources (folders or images, added by button or drag and drop), the
dataset folder, Start / Cancel and the errors of the last runs. Right: the review
grid with keep / reject by click and keyboard, filters, sorting, "reject below a
score", undo / redo, counts and a preview of the selected crop beside its source.
Every decision is written to the catalogue as it is made.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

from PIL import Image, ImageDraw
from PySide6.QtCore import QItemSelectionModel, QModelIndex, QSettings, QSize, Qt
from PySide6.QtGui import (
    QKeyEvent,
    QKeySequence,
    QPixmap,
    QShortcut,
    QUndoCommand,
    QUndoStack,
)
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListView,
    QListWidget,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QSplitter,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from mangagan_app.config import CropConfig
from mangagan_app.core.catalogue import DB_NAME, Catalogue
from mangagan_app.core.cropping import to_detector_rgb
from mangagan_app.core.cropping.pipeline import IMAGE_SUFFIXES, CropSummary, crop_sources, default_workers
from mangagan_app.gui.function_worker import FunctionWorker, create_worker
from mangagan_app.gui.path_fields import fit_for_paths, read_path
from mangagan_app.gui.review_model import THUMB, FaceListModel, pil_to_pixmap
from mangagan_app.gui.settings_values import setting

log = logging.getLogger(__name__)

FILTERS = (("All faces", None), ("Unreviewed", "unreviewed"), ("Kept", "keep"), ("Rejected", "reject"))
ORDERS = (("Lowest likelihood first", "likelihood"), ("Source order", "source"))


class SourceList(QListWidget):
    """The source folders and images; accepts files and folders dropped from a file manager."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setAcceptDrops(True)
        self.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.setToolTip(
            "Folders are searched recursively. Drop folders or images here. Source images are only read, never changed."
        )

    def paths(self) -> list[str]:
        return [self.item(i).text() for i in range(self.count())]

    def add_paths(self, paths: list[str]) -> None:
        known = set(self.paths())
        for path in paths:
            if path and path not in known:
                self.addItem(path)
                known.add(path)

    def dragEnterEvent(self, event) -> None:  # noqa: N802 - Qt's name
        if event.mimeData().hasUrls():
            event.acceptProposedAction()
        else:
            super().dragEnterEvent(event)

    def dragMoveEvent(self, event) -> None:  # noqa: N802 - Qt's name
        if event.mimeData().hasUrls():
            event.acceptProposedAction()
        else:
            super().dragMoveEvent(event)

    def dropEvent(self, event) -> None:  # noqa: N802 - Qt's name
        urls = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        if urls:
            self.add_paths(urls)
            event.acceptProposedAction()
        else:
            super().dropEvent(event)


class ReviewGrid(QListView):
    """The thumbnail grid; review keys act on the selection, arrows move as usual.

    Keys are handled here rather than by window shortcuts so that they work
    exactly when the grid has focus and never steal letters from text fields.
    """

    def __init__(self, parent=None):
        super().__init__(parent)
        self.key_actions: dict[int, Callable[[], None]] = {}
        self.undo: Callable[[], None] = lambda: None
        self.redo: Callable[[], None] = lambda: None

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802 - Qt's name
        if event.matches(QKeySequence.StandardKey.Redo) or (
            event.key() == Qt.Key.Key_Z
            and event.modifiers() == (Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
        ):
            self.redo()
        elif event.matches(QKeySequence.StandardKey.Undo):
            self.undo()
        elif (
            event.modifiers() in (Qt.KeyboardModifier.NoModifier, Qt.KeyboardModifier.KeypadModifier)
            and event.key() in self.key_actions
        ):
            self.key_actions[event.key()]()
        else:
            super().keyPressEvent(event)


class _DecisionCommand(QUndoCommand):
    """One review action (on one or many faces) that Ctrl+Z can take back."""

    def __init__(self, tab: DatasetTab, new: dict[int, str], old: dict[int, str], text: str):
        super().__init__(text)
        self._tab, self._new, self._old = tab, new, old

    def redo(self) -> None:
        self._tab.apply_decisions(self._new)

    def undo(self) -> None:
        self._tab.apply_decisions(self._old)


class DatasetTab(QWidget):
    """Crop and review; choices are remembered in ``settings`` under ``dataset/``."""

    def __init__(self, settings: QSettings, parent: QWidget | None = None):
        super().__init__(parent)
        self.settings = settings
        self.catalogue: Catalogue | None = None
        self.worker: FunctionWorker | None = None
        self.undo_stack = QUndoStack(self)
        self.model = FaceListModel(self)

        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(self._build_crop_panel())
        splitter.addWidget(self._build_review_panel())
        splitter.setStretchFactor(1, 3)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addWidget(splitter)
        self._build_shortcuts()
        self._restore_settings()

    # ---- building ------------------------------------------------------------------
    def _build_crop_panel(self) -> QWidget:
        panel = QWidget()
        layout = QVBoxLayout(panel)
        layout.setContentsMargins(0, 0, 0, 0)

        sources_box = QGroupBox("Illustrations to crop")
        sources_layout = QVBoxLayout(sources_box)
        self.sources = SourceList()
        sources_layout.addWidget(self.sources)
        buttons = QHBoxLayout()
        add_folder = QPushButton("Add folder…")
        add_folder.clicked.connect(self.choose_source_folder)
        add_images = QPushButton("Add images…")
        add_images.clicked.connect(self.choose_source_images)
        remove = QPushButton("Remove")
        remove.setToolTip("Remove the selected sources from the list (the files are not touched)")
        remove.clicked.connect(self.remove_selected_sources)
        for button in (add_folder, add_images, remove):
            buttons.addWidget(button)
        sources_layout.addLayout(buttons)
        layout.addWidget(sources_box)

        options = QGroupBox("Dataset")
        form = QFormLayout(options)
        folder_row = QHBoxLayout()
        self.dataset_edit = QLineEdit()
        self.dataset_edit.setPlaceholderText("folder for the crops and catalogue.sqlite")
        self.dataset_edit.editingFinished.connect(lambda: self.open_dataset(self.dataset_edit.text()))
        browse = QPushButton("Browse…")
        browse.clicked.connect(self.choose_dataset_folder)
        # The review grid needs the room more than the folder field: a shorter dataset path fits.
        folder_row.addWidget(fit_for_paths(self.dataset_edit, 36), 1)
        folder_row.addWidget(browse)
        form.addRow("Folder", folder_row)
        self.size_combo = QComboBox()
        self.size_combo.addItems(["64", "128"])
        self.size_combo.setToolTip("Crop size in pixels: the size the generator trains at")
        form.addRow("Crop size", self.size_combo)
        self.workers_spin = QSpinBox()
        self.workers_spin.setRange(1, 64)
        self.workers_spin.setValue(default_workers())
        self.workers_spin.setToolTip("Detector processes; one per CPU core is fastest")
        form.addRow("Processes", self.workers_spin)
        layout.addWidget(options)

        run_row = QHBoxLayout()
        self.start_button = QPushButton("Start cropping")
        self.start_button.setToolTip("Crop every face in the sources; images already done are skipped")
        self.start_button.clicked.connect(self.start_cropping)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop after the images being read now (Esc)")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel_cropping)
        run_row.addWidget(self.start_button)
        run_row.addWidget(self.cancel_button)
        layout.addLayout(run_row)
        self.progress_bar = QProgressBar()
        self.progress_bar.setFormat("%v / %m images")
        self.progress_bar.setTextVisible(False)
        layout.addWidget(self.progress_bar)
        self.run_status = QLabel("")
        self.run_status.setWordWrap(True)
        layout.addWidget(self.run_status)

        errors_box = QGroupBox("Images that could not be cropped")
        errors_layout = QVBoxLayout(errors_box)
        self.errors_tree = QTreeWidget()
        self.errors_tree.setHeaderLabels(["File", "Reason"])
        self.errors_tree.setRootIsDecorated(False)
        errors_layout.addWidget(self.errors_tree)
        layout.addWidget(errors_box, 1)
        return panel

    def _build_review_panel(self) -> QWidget:
        panel = QWidget()
        layout = QVBoxLayout(panel)
        layout.setContentsMargins(0, 0, 0, 0)

        bar = QHBoxLayout()
        self.filter_combo = QComboBox()
        for label, _ in FILTERS:
            self.filter_combo.addItem(label)
        self.filter_combo.setToolTip("Which faces the grid shows")
        self.filter_combo.currentIndexChanged.connect(self.reload_faces)
        self.order_combo = QComboBox()
        for label, _ in ORDERS:
            self.order_combo.addItem(label)
        self.order_combo.setToolTip("Lowest likelihood first puts the detector's mistakes at the top")
        self.order_combo.currentIndexChanged.connect(self.reload_faces)
        self.keep_button = QPushButton("Keep (K)")
        self.keep_button.setToolTip("Keep the selected faces for training (K)")
        self.keep_button.clicked.connect(lambda: self.decide_selected("keep"))
        self.reject_button = QPushButton("Reject (X)")
        self.reject_button.setToolTip("Reject the selected faces (X or Delete); Space toggles keep/reject")
        self.reject_button.clicked.connect(lambda: self.decide_selected("reject"))
        self.threshold_spin = QDoubleSpinBox()
        self.threshold_spin.setRange(0.0, 1.0)
        self.threshold_spin.setSingleStep(0.05)
        self.threshold_spin.setDecimals(2)
        self.threshold_spin.setValue(0.5)
        self.threshold_spin.setToolTip("Detector likelihood under which unreviewed faces are rejected")
        reject_below = QPushButton("Reject unreviewed below")
        reject_below.setToolTip("Reject every unreviewed face whose likelihood is under the score (undo: Ctrl+Z)")
        reject_below.clicked.connect(self.reject_below_threshold)
        for widget in (
            self.filter_combo,
            self.order_combo,
            self.keep_button,
            self.reject_button,
            reject_below,
            self.threshold_spin,
        ):
            bar.addWidget(widget)
        bar.addStretch(1)
        layout.addLayout(bar)

        self.counts_label = QLabel("No dataset open.")
        layout.addWidget(self.counts_label)

        review = QSplitter(Qt.Orientation.Horizontal)
        self.grid = ReviewGrid()
        self.grid.setViewMode(QListView.ViewMode.IconMode)
        self.grid.setResizeMode(QListView.ResizeMode.Adjust)
        self.grid.setMovement(QListView.Movement.Static)
        self.grid.setUniformItemSizes(True)
        self.grid.setLayoutMode(QListView.LayoutMode.Batched)
        self.grid.setBatchSize(500)
        self.grid.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.grid.setIconSize(QSize(THUMB, THUMB))
        self.grid.setGridSize(QSize(THUMB + 8, THUMB + 8))
        self.grid.setSpacing(2)
        self.grid.setModel(self.model)
        self.grid.setToolTip(
            "K keep · X/Delete reject · Space toggle · arrows move · Shift/Ctrl+click select "
            "several · Ctrl+Z undo · Ctrl+Shift+Z redo"
        )
        self.grid.selectionModel().currentChanged.connect(self._show_preview)
        review.addWidget(self.grid)

        preview = QWidget()
        preview_layout = QVBoxLayout(preview)
        self.crop_preview = QLabel()
        self.crop_preview.setFixedSize(256, 256)
        self.crop_preview.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.source_preview = QLabel()
        self.source_preview.setFixedSize(256, 256)
        self.source_preview.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.preview_text = QLabel()
        self.preview_text.setWordWrap(True)
        self.preview_text.setFixedWidth(256)
        self.preview_text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        preview_layout.addWidget(self.crop_preview)
        preview_layout.addWidget(self.source_preview)
        preview_layout.addWidget(self.preview_text)
        preview_layout.addStretch(1)
        review.addWidget(preview)
        review.setStretchFactor(0, 1)
        layout.addWidget(review, 1)
        return panel

    def _build_shortcuts(self) -> None:
        self.grid.key_actions = {
            Qt.Key.Key_K: lambda: self.decide_selected("keep"),
            Qt.Key.Key_X: lambda: self.decide_selected("reject"),
            Qt.Key.Key_R: lambda: self.decide_selected("reject"),
            Qt.Key.Key_Delete: lambda: self.decide_selected("reject"),
            Qt.Key.Key_U: lambda: self.decide_selected("unreviewed"),
            Qt.Key.Key_Space: self.toggle_selected,
        }
        self.grid.undo = self.undo_stack.undo
        self.grid.redo = self.undo_stack.redo
        escape = QShortcut(QKeySequence(Qt.Key.Key_Escape), self, context=Qt.ShortcutContext.WidgetWithChildrenShortcut)
        escape.activated.connect(self.cancel_cropping)

    # ---- settings ------------------------------------------------------------------
    def _restore_settings(self) -> None:
        sources = setting(self.settings, "dataset/sources", [])
        self.sources.add_paths([str(s) for s in sources])
        self.size_combo.setCurrentText(str(setting(self.settings, "dataset/size", 64)))
        workers = setting(self.settings, "dataset/workers", 0)
        if workers:
            self.workers_spin.setValue(workers)
        folder = setting(self.settings, "dataset/folder", "")
        if folder:
            self.dataset_edit.setText(folder)
            if (Path(folder).expanduser() / DB_NAME).is_file():
                self.open_dataset(folder)

    def save_settings(self) -> None:
        self.settings.setValue("dataset/sources", self.sources.paths())
        self.settings.setValue("dataset/folder", self.dataset_edit.text())
        self.settings.setValue("dataset/size", int(self.size_combo.currentText()))
        self.settings.setValue("dataset/workers", self.workers_spin.value())

    # ---- choosing files ------------------------------------------------------------
    def choose_source_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Add a folder of illustrations")
        if folder:
            self.sources.add_paths([folder])
            self.save_settings()

    def choose_source_images(self) -> None:
        patterns = " ".join(f"*{s}" for s in sorted(IMAGE_SUFFIXES))
        files, _ = QFileDialog.getOpenFileNames(self, "Add illustrations", "", f"Images ({patterns})")
        if files:
            self.sources.add_paths(files)
            self.save_settings()

    def remove_selected_sources(self) -> None:
        for item in self.sources.selectedItems():
            self.sources.takeItem(self.sources.row(item))
        self.save_settings()

    def choose_dataset_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Choose the dataset folder", self.dataset_edit.text())
        if folder:
            self.dataset_edit.setText(folder)
            self.open_dataset(folder)

    def open_dataset(self, folder: str) -> None:
        """Show the catalogue in ``folder`` (created when the folder is new)."""
        if self.catalogue is not None:
            self.catalogue.close()
            self.catalogue = None
        self.undo_stack.clear()
        folder = str(Path(folder.strip()).expanduser()) if folder.strip() else ""  # "~/faces", not ./~/faces
        if folder:
            try:
                self.catalogue = Catalogue(folder)
                used = self.catalogue.get_meta("crop_config")
            except (OSError, sqlite3.Error) as exc:
                self.run_status.setText(f"Cannot open the dataset folder {folder}: {exc}")
            else:
                if used:  # keep one crop size per dataset
                    self.size_combo.setCurrentText(str(json.loads(used).get("size", 64)))
        self.save_settings()
        self.reload_faces()

    # ---- cropping ------------------------------------------------------------------
    def start_cropping(self) -> None:
        if self.worker is not None:
            return
        sources, folder = self.sources.paths(), str(read_path(self.dataset_edit) or "")
        if not sources or not folder:
            self.run_status.setText("Add illustrations and choose a dataset folder first.")
            return
        if self.catalogue is None or self.catalogue.dataset_dir != Path(folder):
            self.open_dataset(folder)
        self.save_settings()
        cfg = CropConfig(size=int(self.size_combo.currentText()), workers=self.workers_spin.value())
        self.start_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.progress_bar.setRange(0, 0)  # busy until the images are counted
        self.progress_bar.setTextVisible(True)
        self.run_status.setText("Looking for images…")
        # The detector runs in the crop run's worker processes; this thread only feeds them
        # and writes the catalogue, so the window stays responsive.
        self.worker = create_worker(
            crop_sources,
            sources,
            folder,
            cfg,
            callbacks=("progress",),
            stoppable=True,
            connect={
                "reported": self._on_progress,
                "returned": self._on_finished,
                "errored": self._on_failed,
                "finished": self._on_thread_done,
            },
        )

    def cancel_cropping(self) -> None:
        if self.worker is not None:
            self.worker.requestInterruption()
            self.cancel_button.setEnabled(False)
            self.run_status.setText("Stopping after the images being read now…")

    def _on_progress(self, _callback: str, values: tuple) -> None:
        done, total, path = values
        self.progress_bar.setRange(0, max(total, 1))
        self.progress_bar.setValue(done)
        self.run_status.setText(f"Cropping {Path(path).name}")
        if done % 20 == 0:
            self._update_counts()

    def _on_finished(self, summary: CropSummary) -> None:
        self.progress_bar.setRange(0, max(summary.found - summary.skipped, 1))
        self.progress_bar.setValue(summary.processed)
        self.run_status.setText("\n".join(summary.lines()))
        self.reload_faces()

    def _on_failed(self, exc: Exception) -> None:
        self.run_status.setText(f"Cropping stopped: {exc}")
        self.reload_faces()

    def _on_thread_done(self) -> None:
        if self.worker is not None:
            self.worker.deleteLater()
        self.worker = None
        self.start_button.setEnabled(True)
        self.cancel_button.setEnabled(False)

    # ---- review --------------------------------------------------------------------
    def reload_faces(self) -> None:
        """Re-read the grid, the counts and the errors from the catalogue."""
        decision = FILTERS[self.filter_combo.currentIndex()][1]
        order = ORDERS[self.order_combo.currentIndex()][1]
        if self.catalogue is None:
            self.model.set_faces(None, [])
        else:
            ids = self.catalogue.face_ids(decision, order=order)
            self.model.set_faces(self.catalogue, ids)
        self._update_counts()
        self._update_errors()
        if self.model.rowCount():
            self.grid.setCurrentIndex(self.model.index(0))

    def _update_counts(self) -> None:
        if self.catalogue is None:
            self.counts_label.setText("No dataset open.")
            return
        c = self.catalogue.decision_counts()
        s = self.catalogue.source_status()
        total = sum(c.values())
        self.counts_label.setText(
            f"{total} faces from {s['done']} images: {c['keep']} kept · {c['reject']} rejected · "
            f"{c['unreviewed']} unreviewed · {s['error']} images with errors · showing {self.model.rowCount()}"
        )

    def _update_errors(self) -> None:
        self.errors_tree.clear()
        if self.catalogue is None:
            return
        for path, reason in self.catalogue.errors():
            item = QTreeWidgetItem([Path(path).name, reason])
            item.setToolTip(0, path)
            item.setToolTip(1, reason)
            self.errors_tree.addTopLevelItem(item)
        self.errors_tree.resizeColumnToContents(0)

    def selected_ids(self) -> list[int]:
        rows = sorted(i.row() for i in self.grid.selectionModel().selectedIndexes())
        if not rows and self.grid.currentIndex().isValid():
            rows = [self.grid.currentIndex().row()]
        return [self.model.face_id(r) for r in rows]

    def decide_selected(self, decision: str) -> None:
        """Save ``decision`` for the selected faces (undoable), then move to the next face."""
        ids = self.selected_ids()
        if not ids or self.catalogue is None:
            return
        self._push({i: decision for i in ids}, f"{decision} {len(ids)} face(s)")
        if len(ids) == 1:
            self._move_current(1)

    def toggle_selected(self) -> None:
        """Space: kept faces become rejected, all others kept."""
        ids = self.selected_ids()
        if not ids or self.catalogue is None:
            return
        current = {i: f.decision for i, f in self.catalogue.faces(ids).items()}
        self._push({i: "reject" if current.get(i) == "keep" else "keep" for i in ids}, "toggle")

    def reject_below_threshold(self) -> None:
        if self.catalogue is None:
            return
        ids = self.catalogue.ids_below(self.threshold_spin.value())
        if ids:
            self._push(dict.fromkeys(ids, "reject"), f"reject {len(ids)} below {self.threshold_spin.value():.2f}")

    def _push(self, new: dict[int, str], text: str) -> None:
        assert self.catalogue is not None
        old = {i: f.decision for i, f in self.catalogue.faces(new).items()}
        self.undo_stack.push(_DecisionCommand(self, new, old, text))

    def apply_decisions(self, decisions: dict[int, str]) -> None:
        """Write ``decisions`` to the catalogue now and repaint (used by do, undo and redo)."""
        if self.catalogue is None:
            return
        self.catalogue.set_decisions(decisions)
        self.model.decisions_changed(decisions)
        self._update_counts()
        current = self.grid.currentIndex()
        if current.isValid():
            self._show_preview(current, QModelIndex())

    def _move_current(self, step: int) -> None:
        row = self.grid.currentIndex().row() + step
        if 0 <= row < self.model.rowCount():
            self.grid.selectionModel().setCurrentIndex(
                self.model.index(row), QItemSelectionModel.SelectionFlag.ClearAndSelect
            )

    def _show_preview(self, current: QModelIndex, previous: QModelIndex) -> None:
        if not current.isValid():
            self.crop_preview.clear()
            self.source_preview.clear()
            self.preview_text.clear()
            return
        record = self.model.record(current.row())
        if record is None:
            return
        crop = self.model.crop_image(record)
        if crop is None:
            self.crop_preview.setText("crop file missing")
        else:
            self.crop_preview.setPixmap(pil_to_pixmap(crop.resize((256, 256), Image.Resampling.BICUBIC)))
        self.source_preview.setPixmap(_source_with_box(record.source_path, record.box, record.square, 256))
        self.preview_text.setText(
            f"<b>{Path(record.source_path).name}</b><br>likelihood {record.likelihood:.3f} · "
            f"{record.decision}<br>tags ({record.tags_source}): {', '.join(record.tags) or 'none'}"
            f"<br>face {record.id}"
        )

    def shutdown(self) -> None:
        """Stop a running crop and close the catalogue (the window is closing)."""
        if self.worker is not None:
            self.worker.requestInterruption()
            self.worker.wait()
        if self.catalogue is not None:
            self.catalogue.close()
            self.catalogue = None


@lru_cache(maxsize=8)
def _shrunk_source(path: str, size: int, mtime_ns: int) -> tuple[Image.Image, float] | None:
    """``path`` shrunk to fit ``size`` and its scale, or None when unreadable.

    Cached because neighbouring faces in the grid often share a source, and
    decoding a large PNG takes longer than a key press should.
    """
    try:
        with Image.open(path) as image:
            full_width = image.width
            image.draft("RGB", (size, size))
            # draft() may decode a JPEG at 1/2 .. 1/8; boxes are in full-size pixels.
            pre = image.width / full_width
            rgb = to_detector_rgb(image)
    except (OSError, ValueError, Image.DecompressionBombError):
        return None
    factor = min(size / rgb.width, size / rgb.height, 1.0)
    return rgb.resize((max(1, round(rgb.width * factor)), max(1, round(rgb.height * factor)))), pre * factor


def _source_with_box(
    path: str, box: tuple[int, int, int, int], square: tuple[int, int, int, int], size: int
) -> QPixmap:
    """The source image shrunk to fit ``size``, the face box (magenta) and crop square (cyan) drawn.

    Read as the detector read it (EXIF-upright, alpha over white) so the boxes
    line up. A source that can no longer be read gives an empty pixmap.
    """
    try:
        mtime = os.stat(path).st_mtime_ns
    except OSError:
        return QPixmap()
    shrunk = _shrunk_source(path, size, mtime)
    if shrunk is None:
        return QPixmap()
    preview, scale = shrunk[0].copy(), shrunk[1]
    draw = ImageDraw.Draw(preview)
    for (x, y, w, h), colour in ((square, (0, 200, 255)), (box, (255, 0, 200))):
        draw.rectangle((x * scale, y * scale, (x + w) * scale, (y + h) * scale), outline=colour, width=2)
    return pil_to_pixmap(preview)

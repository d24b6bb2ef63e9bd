"""Scrolling a panel must not change the sliders under the pointer on its way.

A slider, spin box or combo box takes the mouse wheel by default whenever the pointer
is over it, so scrolling a long panel of them moves whichever passes under the
pointer. :func:`take_wheel_only_when_focused` makes such widgets take the wheel only
once they have the keyboard focus (a click or Tab gives it); before that the wheel
scrolls what holds them, as in browsers and most design tools.
"""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtWidgets import (
    QAbstractScrollArea,
    QAbstractSlider,
    QAbstractSpinBox,
    QApplication,
    QComboBox,
    QWidget,
)

WHEEL_TAKERS = (QAbstractSlider, QAbstractSpinBox, QComboBox)


class _WheelOnlyWhenFocused(QObject):
    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt's name
        if event.type() != QEvent.Type.Wheel or not isinstance(watched, QWidget) or watched.hasFocus():
            return False
        # Handed to the scroll area that holds the widget: Qt passes a wheel event on to the
        # parents only when it came from the window system, so ignoring it is not enough.
        area = watched.parentWidget()
        while area is not None and not isinstance(area, QAbstractScrollArea):
            area = area.parentWidget()
        if area is not None:
            QApplication.sendEvent(area.viewport(), event)
        else:
            event.ignore()
        return True


_guard: _WheelOnlyWhenFocused | None = None


def take_wheel_only_when_focused(root: QWidget) -> None:
    """Make ``root`` (if it is one) and every slider, spin box and combo box inside it take
    the wheel only when focused. Call it again for widgets added later; it is idempotent."""
    global _guard
    if _guard is None:
        _guard = _WheelOnlyWhenFocused()  # one filter for the whole app, never deleted before it
    widgets = [root] if isinstance(root, WHEEL_TAKERS) else []
    for kind in WHEEL_TAKERS:
        widgets.extend(root.findChildren(kind))
    for widget in widgets:
        # A click or Tab focuses it; the wheel alone does not (WheelFocus would).
        widget.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        widget.removeEventFilter(_guard)
        widget.installEventFilter(_guard)

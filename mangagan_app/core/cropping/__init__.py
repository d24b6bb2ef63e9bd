"""Cutting anime faces out of illustrations: the detector, box geometry, tags, the run.

``detector`` wraps animeface; ``geometry`` holds the pure box maths (detection
scales, merging, the crop square); ``tags`` carries sidecar tags or detector colours
to the crops; ``pipeline`` is the per-image work done in worker processes and the
run that feeds them and records the results in the catalogue.
"""

from mangagan_app.core.cropping.detector import (
    DetectedFace,
    SelfCheckResult,
    detect_faces,
    detect_faces_multiscale,
    detector_self_check,
    draw_reference_face,
    to_detector_rgb,
)

__all__ = [
    "DetectedFace",
    "SelfCheckResult",
    "detect_faces",
    "detect_faces_multiscale",
    "detector_self_check",
    "draw_reference_face",
    "to_detector_rgb",
]

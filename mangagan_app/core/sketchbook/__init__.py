"""The sketchbook: procedural anime faces whose attributes are known exactly.

``sample_attributes`` draws tags from realistic priors, ``render_face`` draws a face
with exactly those tags (everything else from the random stream). It is the app's
shipped training data and the ground truth every test and benchmark measures against.
"""

from mangagan_app.core.sketchbook.face import render_face
from mangagan_app.core.sketchbook.priors import sample_attributes

__all__ = ["render_face", "sample_attributes"]

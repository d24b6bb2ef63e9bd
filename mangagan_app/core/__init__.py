"""Pure Python + numpy + Pillow: no torch, no Qt."""

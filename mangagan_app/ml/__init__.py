"""Torch code, never Qt: networks, dataset, trainer, checkpoints, generator service."""

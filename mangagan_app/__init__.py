"""MangaGAN Studio: a character-design studio around a conditional anime-face GAN."""

__version__ = "0.1.0"

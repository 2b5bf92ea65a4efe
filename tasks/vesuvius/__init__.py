"""Vesuvius track: 3D scroll-surface segmentation.

Modules, one concept each: data (reading, decode-once cache, dataset check, split, patch
datasets), synth (synthetic scrolls, ``python -m tasks.vesuvius.synth``), features (on-device
filter features and their scipy reference), model (UNet3D), losses, metrics (Surface Dice,
VOI), inference (sliding window), predict (``python -m tasks.vesuvius.predict``), task (the
engine's task object and its config).
"""

"""Batches of fixed-shape columns (images, features, labels), gathered and normalised in the workers."""

from fastload.arrays.dataset import ArrayDataset
from fastload.arrays.transforms import NormalizeImage, Standardize

__all__ = ["ArrayDataset", "NormalizeImage", "Standardize"]

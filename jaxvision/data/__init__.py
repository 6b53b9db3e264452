"""Input pipelines over tensorflow-datasets and image folders (imports TensorFlow, so it is loaded only when used)."""

import os

# TensorFlow's C++ info lines and TFDS's failed cloud-credential probes are noise on an offline machine.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from jaxvision.data.image_folder import (
    IMAGE_EXTENSIONS,
    RESIZE_MODES,
    FolderScan,
    ImageFolderData,
    decode_image,
    load_image_folder,
    scan_image_folder,
)
from jaxvision.data.pipeline import COMMON_DATASETS, DatasetMeta, Splits, builder, channel_statistics, load, load_splits, resolve_data_dir

__all__ = [
    "COMMON_DATASETS", "DatasetMeta", "FolderScan", "IMAGE_EXTENSIONS", "ImageFolderData", "RESIZE_MODES", "Splits",
    "builder", "channel_statistics", "decode_image", "load", "load_image_folder", "load_splits", "resolve_data_dir",
    "scan_image_folder",
]

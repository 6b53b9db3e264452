"""Pictures of training and of what a network learned.

- history, confusion: ``plot_history`` (``jaxvision train``'s history.png), ``confusion_matrix`` and its plot;
- curves: learning curves of a run folder from its logs;
- filters: the first layer's kernels, or a dense model's class templates;
- feature_maps: every convolution's output for one image;
- saliency: input-gradient saliency and Grad-CAM;
- misclassified: a titled grid of wrongly classified images;
- overlays: segmentation masks over images (truth | prediction) and detection boxes with class and score;
- grids: the image grids and PNG writing they share.

Each computing function returns NumPy arrays; each ``plot_*`` writes a PNG atomically.
"""

from jaxvision.visualize.confusion import confusion_matrix, plot_confusion_matrix
from jaxvision.visualize.curves import learning_curves, plot_learning_curves
from jaxvision.visualize.feature_maps import conv_layer_names, feature_maps, plot_feature_maps
from jaxvision.visualize.filters import first_layer_filters, plot_filters
from jaxvision.visualize.grids import plot_grid, tile
from jaxvision.visualize.history import plot_history
from jaxvision.visualize.misclassified import plot_misclassified
from jaxvision.visualize.overlays import PALETTE, blend_mask, class_colors, draw_detections, draw_segmentations
from jaxvision.visualize.saliency import grad_cam, plot_saliency, saliency

__all__ = [
    "PALETTE", "blend_mask", "class_colors", "draw_detections", "draw_segmentations",
    "confusion_matrix", "conv_layer_names", "feature_maps", "first_layer_filters", "grad_cam", "learning_curves",
    "plot_confusion_matrix", "plot_feature_maps", "plot_filters", "plot_grid", "plot_history", "plot_learning_curves",
    "plot_misclassified", "plot_saliency", "saliency", "tile",
]

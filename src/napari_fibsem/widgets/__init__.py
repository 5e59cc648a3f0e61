"""napari dock widgets: thin Qt views over :mod:`napari_fibsem.core`, one module per widget."""

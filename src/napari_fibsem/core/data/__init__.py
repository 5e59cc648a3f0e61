"""Datasets built from those files: folders of images and labels, labelling state, imports, object tables."""

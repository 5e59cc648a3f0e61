"""Comparing checkpoints on labelled keypoints: the run, its plots and its report."""

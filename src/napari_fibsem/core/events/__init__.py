"""Event pipeline: annotated movies -> Gaussian ground truth -> event crops -> (catalogue, training).

Headless and free of databases by default; see DESIGN.md's ``core/events/`` row.
"""

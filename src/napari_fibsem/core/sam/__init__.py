"""Segment Anything: model loading, the embedding cache, the fast decoder and the prompt service."""

"""Headless core: model, inference, geometry. Imports neither napari nor Qt."""

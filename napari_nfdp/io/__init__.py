"""Reading and writing images and annotations. Imports neither napari nor Qt."""

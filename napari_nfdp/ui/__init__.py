"""napari and Qt live only here."""

"""Built-in gis plugin (skeleton; filled in by its owner)."""

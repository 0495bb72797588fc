"""The thin napari layer: reader, writer, sample data and widgets over the core."""

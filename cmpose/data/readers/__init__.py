"""Annotation readers. Each returns a ``cmpose.data.records.Dataset``."""

from cmpose.data.readers.auto import find_annotation_files, read_annotations

__all__ = ["find_annotation_files", "read_annotations"]

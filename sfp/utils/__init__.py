"""Small helpers shared by the library and the tools."""
from .io import atomic_write, atomic_write_bytes, atomic_write_png, atomic_write_text

__all__ = ['atomic_write', 'atomic_write_bytes', 'atomic_write_png', 'atomic_write_text']

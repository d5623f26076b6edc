"""The ``joulie-tasks`` command (docs/ARCHITECTURE.md, top layer)."""

"""The package's version, written here and nowhere else: pyproject.toml reads it (``dynamic``),
``scanner --version`` and every report print it. A ``.devN`` suffix marks a version not released
yet, whose CHANGELOG section says ``unreleased``; the release procedure is in docs/releases.md."""

__version__ = "0.3.0.dev0"

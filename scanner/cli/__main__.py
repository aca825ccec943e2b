"""``python -m scanner.cli``: the same command line as ``scanner`` (``python -m scanner`` is the documented form)."""

from .app import main

if __name__ == "__main__":
    main()

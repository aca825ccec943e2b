"""``python -m scanner``: the same command line as ``scanner``."""

from .cli import main

if __name__ == "__main__":
    main()

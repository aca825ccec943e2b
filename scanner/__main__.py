"""``python -m scanner``: the same command line as ``scanner``."""

from .cli.app import main

if __name__ == "__main__":
    main()

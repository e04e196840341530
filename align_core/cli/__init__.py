"""Command-line programs of the library: ``align-import-ab`` and ``align-annotate``.

Each module has a ``main``; import the one you need.
"""

__all__: list[str] = []

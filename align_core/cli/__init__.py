"""Command-line programs of the library: ``align-import-ab``, ``align-annotate`` and ``align-pretest``.

Each module has a ``main``; import the one you need.
"""

__all__: list[str] = []

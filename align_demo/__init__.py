"""The demo: corpus, A/B simulation, the demo profile's Definitions and the ``align-demo`` CLI; never imported by production code."""

__all__: list[str] = []

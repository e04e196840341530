"""Demo corpus and A/B simulation: never imported by production code."""

__all__: list[str] = []

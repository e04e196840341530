"""Asset modules, one per pipeline stage."""

__all__: list[str] = []

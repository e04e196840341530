"""Column mappings shipped with the platform (YAML files beside this module)."""

__all__: list[str] = []

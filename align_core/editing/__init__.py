"""Editing: turn a variant plan into edited frames (keyframe editors + temporal propagation)."""

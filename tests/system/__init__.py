"""Tests that need system programs (chromium, postgresql) and start real servers."""

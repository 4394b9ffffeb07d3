"""Test-only references (never imported by the package itself)."""

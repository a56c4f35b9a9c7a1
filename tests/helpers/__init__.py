"""Test helpers shared by unit and integration tests (importable as `helpers`: pytest puts
`tests/` on sys.path for the root conftest.py)."""

"""The JSON API under `/api/v1` for other software (API keys)."""

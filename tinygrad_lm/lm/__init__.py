"""Language models (being written)."""

"""spec package (placeholder)."""

"""runtime package (placeholder)."""

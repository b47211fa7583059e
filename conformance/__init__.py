"""conformance package (placeholder)."""

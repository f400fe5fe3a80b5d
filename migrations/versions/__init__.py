"""Migration scripts, oldest first; each one small and backward compatible."""

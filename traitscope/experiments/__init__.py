"""The experiments: one module (or small package) each, registered once in :data:`REGISTRY`."""

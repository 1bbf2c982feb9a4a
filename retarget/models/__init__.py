"""Models: weights-free ModelSpec, the open-model registry, and loaders (HF folder, GGUF, bundled default)."""

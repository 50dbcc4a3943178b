"""Shared core of the unified world models: tokenizers, sequences, MoE backbone, training, generation."""

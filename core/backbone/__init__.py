"""The shared decoder-only transformer with DeepSpeed Mixture-of-Experts feed-forward layers."""

from .model import Backbone, BackboneOutput, KVCache, ModelConfig, lm_loss

__all__ = ["Backbone", "BackboneOutput", "KVCache", "ModelConfig", "lm_loss"]

"""Robotics: an action-conditioned video world model for MuJoCo robots (Meta-World, gymnasium MuJoCo)."""

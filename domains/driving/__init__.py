"""Driving: joint future-frame and ego-trajectory prediction on nuScenes-format data."""

"""Medical: bidirectional chest X-ray report <-> image generation, built on MONAI."""

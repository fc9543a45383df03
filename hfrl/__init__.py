"""hfrl: fine-tune image generators from human feedback, treated as reinforcement learning."""

__version__ = "0.1.0"

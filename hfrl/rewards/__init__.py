"""Reward models learned from human feedback."""

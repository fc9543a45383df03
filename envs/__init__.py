"""Gymnasium environments for hfrl (installed as ``hfrl.envs``)."""

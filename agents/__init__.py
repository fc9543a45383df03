"""Fine-tuning agents for hfrl (installed as ``hfrl.agents``)."""

"""Human feedback: the SQLite feedback store, the labelling page, the online queue."""

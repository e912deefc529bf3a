"""The tuning side of Caviar: spaces, search algorithms, trial stores and the master loop."""

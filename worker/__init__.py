"""Workers: claim trials from a store, run the objective, write results back."""

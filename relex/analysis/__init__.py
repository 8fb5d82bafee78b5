"""What a sweep concluded: analysis of results, ensembles and fitted decisions (the top layer)."""

"""Real screens: held-out perturbations, few-shot transfer, graph stability, pathways."""

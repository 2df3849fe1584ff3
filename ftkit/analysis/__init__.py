"""Layer 4: looking inside networks: cached features and classifiers on them, weight drift."""

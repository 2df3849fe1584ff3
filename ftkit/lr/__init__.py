"""Layer 4: learning rates: parameter-group policies, the LR range test, its suggestion rules and result."""

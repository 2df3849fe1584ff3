"""Layer 5: experiments: strategies, matched-compute races, cross-validation, run folders."""

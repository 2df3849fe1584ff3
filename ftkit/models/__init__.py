"""Layer 2: pretrained backbones, heads, weight surgery, layer groups, freezing and BatchNorm policy."""

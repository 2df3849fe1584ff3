"""Layer 6: matplotlib plots (data in, Axes out), ipywidgets panels and notebook helpers. Nothing below imports it."""

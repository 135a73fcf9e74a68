"""Report: what a landscape looks like to a reader, as figures and text (no gradio).

Owns the Plotly figures (figures, evaluation_figure), the one text summary of a landscape that the page,
the CLI and the model card share (summary), and restore modes side by side (modes). It may import the
foundation, models, crc, slr, engine and downstream; export and serve build on it.
"""

"""Serve: the app's state and work in plain Python, so app.py is layout and wiring only.

Owns pairs shared by requests under a memory budget (registry), one visitor's view of a pair (session),
one side-by-side comparison (compare), model work taken in turns on the device (workbench) and the launch
flags and default pair (launch). It may import every package below it; only app.py and cli.py import it,
and it never imports gradio.
"""

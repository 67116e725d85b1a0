"""The staff dashboard (/dashboard), which grows into the workspace, and its plots (SVG)."""

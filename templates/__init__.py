"""Optout's built-in email and web templates and stylesheets, shipped inside the wheel as the
package data `mailer.templates` and found through importlib.resources (mailer/resources.py)."""

"""Optout's SQL (migrations, named queries, admin DDL), shipped inside the wheel as the package data
`mailer.sql` and found through importlib.resources (mailer/resources.py)."""

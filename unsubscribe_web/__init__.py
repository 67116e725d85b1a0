"""Optout's HTTP face: one-click unsubscribe, preference centre, subscribe, admin API."""

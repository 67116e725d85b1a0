"""Optout core: consent, sending, inbound mail and privacy; everything that is not HTTP."""

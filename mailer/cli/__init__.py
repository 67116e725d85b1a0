"""Every `optout` command, `serve` (web, inbound and worker in one process) and `demo`: the one
place that wires the parts together. Nothing imports this package."""

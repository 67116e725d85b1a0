"""Rights: privacy-policy versions and their notices, data requests and their deadlines, the
subject-access export, rectification, erasure, partner-sharing exports, and re-applying the
consent journal after a restore from a backup."""

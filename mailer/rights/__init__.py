"""Rights: privacy-policy versions and their notices, data requests and their deadlines, the
subject-access export, rectification, erasure, and partner-sharing exports."""

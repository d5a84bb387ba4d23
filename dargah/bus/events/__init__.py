"""Events for proactive services (protocol §7): publishing, webhook delivery and pulling."""

"""Service health checks: status, response time, uptime, transitions and notifications."""

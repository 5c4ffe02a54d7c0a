"""Monitoring: drift reports, the monitoring database and alerts."""

"""Durable delivery of tickets to the service platform: payload mapping, queue, sender."""

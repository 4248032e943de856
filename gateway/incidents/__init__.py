"""Fault episodes: one incident per (rule, device) episode, and the ticket it opens."""

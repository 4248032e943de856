"""The service timeline: what happens to a ticket after it is opened, each step with its time and actor."""

"""Raw messages to canonical Readings and DeviceEvents; the registry of who is out there."""

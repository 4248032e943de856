"""The simulated world: appliance models, fault injection, MQTT peers, fleets and the service-platform stand-in."""

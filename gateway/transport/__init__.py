"""The only code that touches paho, amqtt, pyserial and sockets."""

"""The station's MQTT link: publishing, the outbox, and parsing what comes in."""

"""Where scored samples go: JSON Lines events, the status line, MQTT, recordings, saved anomalies, the web view.

Every sink follows `edgeanom.runtime.types.Sink` (write, write_event, close). Sinks with heavy
dependencies are imported only when their option is used.
"""

"""The streaming runtime behind `edgeanom run`: sources -> preprocess -> backend -> scorer -> alarms -> sinks."""

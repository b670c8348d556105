"""Pure parsers: text the host printed -> plain structures. No I/O; malformed input never raises."""

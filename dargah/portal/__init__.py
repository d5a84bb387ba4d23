"""The citizens' portal: Persian, right to left; it reaches agencies only through the bus."""

"""What the process needs to behave as a service: logging now; sd_notify and the watchdog later."""
